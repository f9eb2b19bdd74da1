"""What a node did with one request: a closed set, mapped to responses once.

The same ``Outcome`` feeds ``Cache-Status`` (RFC 9211), the access log and
metric labels.
"""

from __future__ import annotations

import enum

__all__ = ["Fwd", "Outcome", "cache_status_member"]


class Outcome(enum.Enum):
    HIT = "hit"  # fresh stored response
    STALE = "stale"  # stale stored response served (stale-while-revalidate / -if-error)
    MISS = "miss"  # this request led the fill from upstream
    COALESCED = "coalesced"  # joined a fill another request started
    REVALIDATED = "revalidated"  # stored response confirmed by a 304
    BYPASS = "bypass"  # not served from or stored in cache (method, no-store, private)
    SHED = "shed"  # refused by load shedding
    ERROR = "error"  # upstream failure answered with 5xx

    # Counted in dicts on every request: hash by identity (a C slot), not Enum's
    # ``hash(self._name_)`` (a Python call); members are singletons, so equal is identical.
    __hash__ = object.__hash__


class Fwd(enum.Enum):
    """RFC 9211 §2.2 ``fwd`` values: why the request went forward."""

    URI_MISS = "uri-miss"
    VARY_MISS = "vary-miss"
    STALE = "stale"
    REQUEST = "request"
    BYPASS = "bypass"
    METHOD = "method"


def cache_status_member(
    name: str,
    outcome: Outcome,
    *,
    fwd: Fwd | None = None,
    fwd_status: int | None = None,
    ttl: float | None = None,
    stored: bool = False,
    detail: str | None = None,
) -> str:
    """One ``Cache-Status`` list member, e.g. ``edge-1; hit; ttl=29``."""
    if outcome is Outcome.HIT and ttl is not None and not (fwd or fwd_status or stored or detail):
        return f"{name}; hit; ttl={int(ttl)}"  # the hit path: one format, no list
    parts = [name]
    if outcome in (Outcome.HIT, Outcome.STALE):
        parts.append("hit")
    if fwd is not None:
        parts.append(f"fwd={fwd.value}")
    if fwd_status is not None:
        parts.append(f"fwd-status={fwd_status}")
    if ttl is not None:
        parts.append(f"ttl={int(ttl)}")
    if stored:
        parts.append("stored")
    if outcome is Outcome.COALESCED:
        parts.append("collapsed")
    if detail:
        parts.append(f"detail={detail}")
    return "; ".join(parts)
