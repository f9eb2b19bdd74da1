"""Freshness (RFC 9111 §4.2): how long a stored response stays fresh, and how old it is.

Pure: no I/O and no clock. Times are epoch seconds passed in (``now``,
``request_time``, ``response_time``).

Invariants:
- Invalid freshness information errs toward stale (RFC 9111 §4.2.1): a malformed
  max-age, an unparsable Expires or a missing Date gives lifetime 0.
- The heuristic (§4.2.2) is 10 % of Date - Last-Modified, capped at
  ``heuristic_max_age``, and only for a heuristically cacheable status or ``public``.
- A missing or invalid Age counts as 0, a missing Date as no clock skew (§4.2.3).
"""

from __future__ import annotations

from shared.http.dates import parse_http_date
from shared.http.fields import Directives, Headers, _delta, delta_seconds, parse_cache_control

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

    RFC 9111 §4.2.3 exactly; a missing or invalid Age counts as 0, a missing Date as no skew.
    """
    age_value = _delta(response_headers.get("Age")) or 0
    date = parse_http_date(response_headers.get("Date"))
    apparent_age = max(0.0, response_time - date) if date is not None else 0.0
    corrected_age_value = age_value + (response_time - request_time)
    return max(apparent_age, corrected_age_value) + (now - response_time)


def _lifetime(status: int, headers: Headers, cc: Directives, heuristic_max_age: float) -> float:
    for name in ("s-maxage", "max-age"):  # RFC 9111 §4.2.1 order; an invalid value is stale
        if name in cc:
            return float(delta_seconds(cc, name) or 0)
    date = parse_http_date(headers.get("Date"))
    if "expires" in headers:  # an invalid Expires ("0") means already expired (§5.3)
        expires = parse_http_date(headers.get("Expires"))
        return max(0.0, expires - date) if expires is not None and date is not None else 0.0
    modified = parse_http_date(headers.get("Last-Modified"))
    if date is None or modified is None:
        return 0.0
    if status not in HEURISTIC_STATUSES and "public" not in cc:  # §4.2.2
        return 0.0
    return min(max(0.0, (date - modified) / 10), heuristic_max_age)
