"""Freshness (RFC 9111 §4.2): how long a stored response stays fresh, and how old it is.

Pure: no I/O and no clock. Times are epoch seconds passed in (``now``,
``request_time``, ``response_time``).

Invariants:
- Invalid freshness information errs toward stale (RFC 9111 §4.2.1): a malformed
  max-age, an invalid Expires (§5.3) or a missing Date gives lifetime 0.
- Every date goes through ``field_date``: strict RFC 9110 §5.6.7, one field line.
- The heuristic (§4.2.2) is 10 % of Date - Last-Modified, capped at
  ``heuristic_max_age``, and only for a heuristically cacheable status or ``public``.
- Age is its first list member (§5.1: ``Age: 7200, 0`` is 7200); a missing or invalid
  one counts as 0, a missing Date as no clock skew (§4.2.3).
"""

from __future__ import annotations

from shared.http.dates import field_date
from shared.http.fields import (
    Directives,
    Headers,
    _delta,
    _members,
    delta_seconds,
    parse_cache_control,
)

__all__ = ["HEURISTIC_STATUSES", "current_age", "freshness_lifetime"]

# Heuristically cacheable by default (RFC 9110 §15.1).
HEURISTIC_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})


def freshness_lifetime(
    status: int, response_headers: Headers, *, heuristic_max_age: float
) -> float:
    """Seconds a shared cache may treat the response as fresh (RFC 9111 §4.2.1), else 0.

    Expires and the heuristic are measured from the response's Date. The caller adds a
    Date to a response that lacks one (RFC 9110 §6.6.1), so without a Date both give 0.
    """
    cc = parse_cache_control(response_headers)
    return _lifetime(status, response_headers, cc, heuristic_max_age)


def current_age(
    response_headers: Headers, request_time: float, response_time: float, now: float
) -> float:
    """Age at ``now`` of a response requested at ``request_time`` and received at ``response_time``.

    RFC 9111 §4.2.3 exactly; Age is its first member (§5.1), 0 if missing or invalid; a
    missing or invalid Date means no skew.
    """
    ages = _members(",".join(response_headers.getall("Age", [])))
    age_value = (_delta(ages[0]) if ages else None) or 0  # §5.1: the first member only
    date = field_date(response_headers, "Date", response_time)
    apparent_age = max(0.0, response_time - date) if date is not None else 0.0
    corrected_age_value = age_value + (response_time - request_time)
    return max(apparent_age, corrected_age_value) + (now - response_time)


def _lifetime(status: int, headers: Headers, cc: Directives, heuristic_max_age: float) -> float:
    for name in ("s-maxage", "max-age"):  # RFC 9111 §4.2.1 order; an invalid value is stale
        if name in cc:
            return float(delta_seconds(cc, name) or 0)
    date = field_date(headers, "Date")
    if "expires" in headers:  # an invalid Expires ("0", two lines) is already expired (§5.3)
        expires = field_date(headers, "Expires", date)
        return max(0.0, expires - date) if expires is not None and date is not None else 0.0
    modified = field_date(headers, "Last-Modified", date)  # invalid: no heuristic
    if date is None or modified is None:
        return 0.0
    if status not in HEURISTIC_STATUSES and "public" not in cc:  # §4.2.2
        return 0.0
    return min(max(0.0, (date - modified) / 10), heuristic_max_age)
