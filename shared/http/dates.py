"""HTTP-date (RFC 9110 §5.6.7): parse exactly its three formats, format IMF-fixdate.

Pure: no clock. Times are epoch seconds, passed in and returned.

Invariants:
- Only IMF-fixdate, rfc850-date and asctime-date parse, character for character: any
  other zone than GMT (RFC 9111 §4.2), a missing comma, doubled spaces, a 1-digit hour,
  a 2-digit year outside rfc850, or an impossible date (31 Feb) is ``None``, never ``now``.
- Names (weekday, month, ``GMT``) match case-insensitively (RFC 9111 §4.2); the weekday
  is checked for spelling only, not against the date.
- A field is one date: several field lines or a list of dates is ``None`` (RFC 9110 §5.3
  combines lines with commas, and no HTTP-date contains one after its weekday).
- An rfc850 year more than 50 years after ``now`` is in the previous century (§5.6.7).
- ``format_http_date`` always writes IMF-fixdate in GMT, and it parses back.
"""

from __future__ import annotations

import calendar
import datetime
import re
from email.utils import formatdate

from shared.http.fields import Headers

__all__ = ["field_date", "format_http_date", "parse_http_date"]

_DAY = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_WEEKDAY = "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MONTH = "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = "([0-9]{2}):([0-9]{2}):([0-9]{2})"
_IMF = re.compile(rf"{_DAY}, ([0-9]{{2}}) {_MONTH} ([0-9]{{4}}) {_TIME} GMT", re.IGNORECASE)
_RFC850 = re.compile(rf"{_WEEKDAY}, ([0-9]{{2}})-{_MONTH}-([0-9]{{2}}) {_TIME} GMT", re.IGNORECASE)
_ASCTIME = re.compile(rf"{_DAY} {_MONTH} ([0-9]{{2}}| [0-9]) {_TIME} ([0-9]{{4}})", re.IGNORECASE)
_MONTHS = {m: i for i, m in enumerate(_MONTH.strip("()").lower().split("|"), 1)}  # not locale
# Resolves rfc850's 2-digit year when the caller has no clock to pass: good to 2075.
_DEFAULT_NOW = 1_767_225_600.0  # 2026-01-01


def parse_http_date(value: str | None, now: float | None = None) -> float | None:
    """Epoch seconds of an HTTP-date in one of the three RFC 9110 §5.6.7 formats, else None.

    ``now`` (epoch seconds) places an rfc850 2-digit year (§5.6.7); by default 2026.
    """
    if not value:
        return None
    value = value.strip(" \t")
    if m := _IMF.fullmatch(value):
        day, month, year, hh, mm, ss = m.groups()
    elif m := _ASCTIME.fullmatch(value):
        month, day, hh, mm, ss, year = m.groups()
    elif m := _RFC850.fullmatch(value):
        day, month, yy, hh, mm, ss = m.groups()
        year = str(_full_year(int(yy), _DEFAULT_NOW if now is None else now))
    else:
        return None
    return _timestamp(int(year), _MONTHS[month.lower()], int(day), int(hh), int(mm), int(ss))


def field_date(headers: Headers, name: str, now: float | None = None) -> float | None:
    """The HTTP-date of field ``name``; None when absent, invalid or on several lines."""
    return parse_http_date(",".join(headers.getall(name, [])), now)


def format_http_date(ts: float) -> str:
    """IMF-fixdate (RFC 9110 §5.6.7), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return formatdate(ts, usegmt=True)


def _full_year(yy: int, now: float) -> int:
    """The year ending in ``yy`` at most 50 years after ``now`` (RFC 9110 §5.6.7)."""
    limit = datetime.datetime.fromtimestamp(now, datetime.UTC).year + 50
    return limit - (limit - yy) % 100


def _timestamp(year: int, month: int, day: int, hh: int, mm: int, ss: int) -> float | None:
    if year < 1 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    if hh > 23 or mm > 59 or ss > 60:  # second 60 is a leap second (§5.6.7)
        return None
    return float(calendar.timegm((year, month, day, hh, mm, ss)))
