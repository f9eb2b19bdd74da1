"""HTTP-date (RFC 9110 §5.6.7): parse any of its three formats, format IMF-fixdate.

Pure: no clock. Times are epoch seconds, passed in and returned.

Invariants:
- A date that fails to parse (``"0"``, ``"-1"``, 31 Feb, junk) is ``None``; it never
  defaults to ``now``. A missing zone is GMT; a numeric offset is applied.
- ``format_http_date`` always writes IMF-fixdate in GMT, and it parses back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import formatdate, parsedate_tz

__all__ = ["format_http_date", "parse_http_date"]


def parse_http_date(value: str | None) -> float | None:
    """Epoch seconds of an HTTP-date in any RFC 9110 §5.6.7 format (IMF-fixdate or obsolete)."""
    parts = parsedate_tz(value) if value else None
    if parts is None:
        return None
    try:
        moment = datetime(*parts[:6], tzinfo=UTC)
    except ValueError:  # e.g. 31 Feb or second 60
        return None
    return moment.timestamp() - (parts[9] or 0)


def format_http_date(ts: float) -> str:
    """IMF-fixdate (RFC 9110 §5.6.7), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return formatdate(ts, usegmt=True)
