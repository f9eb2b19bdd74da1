"""HTTP caching decisions for a shared cache (RFC 9111): store, reuse, stale, 304, invalidate.

Pure policy: no I/O and no clock. Times are epoch seconds passed in (``now``,
``request_time``, ``response_time``); headers are case-insensitive multidicts that
are never mutated (functions that change headers return a new ``CIMultiDict``).
Fields are parsed in ``shared.http.fields``; freshness and age come from
``shared.http.freshness``. ``response_headers`` here are the cache's view of a
response (``shared.http.targeted.cache_headers``): a targeted field such as
CDN-Cache-Control already stands in for Cache-Control (RFC 9213 §2.2).

Invariants:
- Every decision is a closed ``Enum``, a ``StaleRules`` or a ``bool``.
- A response is stored only if it could ever be reused: fresh for a while, or with
  a validator (RFC 9111 §3); ``no-cache`` is stored and validated on every use.
- Any final status but 206 and 304 is stored with explicit freshness (max-age,
  s-maxage, Expires), unknown ones too (§3); heuristic freshness only for the
  heuristically cacheable ones (§4.2.2); ``negative_ttl`` gives statuses without
  explicit freshness a lifetime of their own (nginx ``proxy_cache_valid``).
- must-understand (§5.2.2.3): stored only if the status is one RFC 9110 defines,
  and then no-store is ignored. Qualified ``no-cache="F"`` and ``private="F"`` act
  as their unqualified forms (§5.2.2.4, §5.2.2.7 allow it): validated on every use,
  never stored. Unknown directives are ignored.
- A field that fails to parse counts as absent; it never defaults to ``now``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from multidict import CIMultiDict

from shared.http.fields import (
    Directives,
    Headers,
    _tokens,
    delta_seconds,
    end_to_end,
    parse_cache_control,
    vary_names,
)
from shared.http.freshness import HEURISTIC_STATUSES, current_age, freshness_lifetime

__all__ = [
    "Lookup",
    "StaleRules",
    "Storable",
    "classify",
    "freshen",
    "invalidates",
    "serve_to_authorized",
    "stale_rules",
    "storable",
    "stored_lifetime",
]

# Final statuses RFC 9110 §15 defines, whose caching semantics tiercdn implements
# (must-understand, RFC 9111 §5.2.2.3); never 206 (we store whole objects) nor 304.
_UNDERSTOOD = frozenset(
    {200, 201, 202, 203, 204, 205, *range(300, 306), 307, 308, *range(400, 418)}
    | {421, 422, 426, *range(500, 506)}
)
_NEVER = frozenset({206, 304})  # a part, or an answer about a stored response (§3)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # RFC 9110 §9.2.1
_BODY_FIELDS = frozenset({"content-length", "content-encoding", "content-range"})  # 9111 §3.2
_AUTHORIZED_OK = frozenset({"public", "s-maxage", "must-revalidate"})  # RFC 9111 §3.5
_NO_STALE = frozenset({"must-revalidate", "proxy-revalidate", "s-maxage"})  # RFC 9111 §4.2.4
_NO_TTL: Mapping[int, float] = {}


class Storable(enum.Enum):
    """Whether a response may be stored (RFC 9111 §3) and, if not, why; usable as a label."""

    YES = "yes"
    METHOD = "method"  # only GET; the caller turns HEAD into GET before asking
    STATUS = "status"  # not final, 206, 304, or must-understand and not understood
    NO_STORE = "no-store"  # in the request or the response
    PRIVATE = "private"  # qualified or not: a shared cache stores neither (§5.2.2.7)
    AUTHORIZATION = "authorization"  # RFC 9111 §3.5
    VARY_STAR = "vary-star"  # could never be selected (§4.1)
    NO_FRESHNESS = "no-freshness"  # no explicit or negative freshness, not public/heuristic
    NOT_FRESH = "not-fresh"  # lifetime 0 and no validator: could never be reused


def storable(
    method: str,
    status: int,
    request_headers: Headers,
    response_headers: Headers,
    *,
    heuristic_max_age: float,
    negative_ttl: Mapping[int, float] = _NO_TTL,
) -> Storable:
    """May a shared cache store this response to a GET (RFC 9111 §3)?"""
    if method != "GET":
        return Storable.METHOD
    request_cc, cc = parse_cache_control(request_headers), parse_cache_control(response_headers)
    if not 200 <= status < 1000 or status in _NEVER:
        return Storable.STATUS
    if "must-understand" in cc:  # §5.2.2.3: it overrides no-store, for statuses understood
        if status not in _UNDERSTOOD:
            return Storable.STATUS
    elif "no-store" in cc:
        return Storable.NO_STORE
    if "no-store" in request_cc:  # §5.2.1.5
        return Storable.NO_STORE
    if "private" in cc:
        return Storable.PRIVATE
    if "authorization" in request_headers and not cc.keys() & _AUTHORIZED_OK:
        return Storable.AUTHORIZATION
    if vary_names(response_headers) is None:
        return Storable.VARY_STAR
    explicit = _explicit(response_headers, cc)
    allowed = explicit or status in negative_ttl or status in HEURISTIC_STATUSES
    if not allowed and "public" not in cc:
        return Storable.NO_FRESHNESS
    lifetime = stored_lifetime(
        status, response_headers, heuristic_max_age=heuristic_max_age, negative_ttl=negative_ttl
    )
    if lifetime <= 0 and "etag" not in response_headers and "last-modified" not in response_headers:
        return Storable.NOT_FRESH
    return Storable.YES  # no-cache too: it is stored and validated on every use


def stored_lifetime(
    status: int,
    response_headers: Headers,
    *,
    heuristic_max_age: float,
    negative_ttl: Mapping[int, float] = _NO_TTL,
) -> float:
    """Freshness lifetime (RFC 9111 §4.2.1), or ``negative_ttl[status]`` for a status
    listed there when the response has no explicit freshness (it replaces the heuristic)."""
    if status in negative_ttl and not _explicit(response_headers):
        return negative_ttl[status]
    return freshness_lifetime(status, response_headers, heuristic_max_age=heuristic_max_age)


def _explicit(headers: Headers, cc: Directives | None = None) -> bool:
    """Explicit freshness (RFC 9111 §4.2.1): s-maxage, max-age or Expires."""
    cc = parse_cache_control(headers) if cc is None else cc
    return "expires" in headers or bool(cc.keys() & {"max-age", "s-maxage"})


class Lookup(enum.Enum):
    """What a stored response is good for on this request (RFC 9111 §4.2, §5.2)."""

    FRESH = "fresh"  # serve without asking upstream (fresh, or stale within request max-stale)
    STALE = "stale"  # validate first; may be served if upstream is unreachable (§4.2.4)
    MUST_VALIDATE = "must-validate"  # validate first; never serve without a validation


def classify(
    request_headers: Headers,
    response_headers: Headers,
    *,
    status: int,
    request_time: float,
    response_time: float,
    now: float,
    heuristic_max_age: float,
    lifetime: float | None = None,
) -> Lookup:
    """Decide how a stored response may answer this request; only-if-cached is the caller's.

    ``lifetime``: the one computed at store time (negative TTL included), if known."""
    request_cc, cc = parse_cache_control(request_headers), parse_cache_control(response_headers)
    if "no-cache" in cc or "no-cache" in request_cc:  # §5.2.2.4, §5.2.1.4
        return Lookup.MUST_VALIDATE
    if "cache-control" not in request_headers and "no-cache" in _tokens(request_headers, "Pragma"):
        return Lookup.MUST_VALIDATE  # HTTP/1.0 clients: RFC 7234 §5.4, deprecated by 9111 §5.4
    if lifetime is None:
        lifetime = freshness_lifetime(status, response_headers, heuristic_max_age=heuristic_max_age)
    age = current_age(response_headers, request_time, response_time, now)
    max_age = delta_seconds(request_cc, "max-age")  # §5.2.1.1; max-age=0 is a reload
    if max_age is not None and (age > max_age or max_age == 0):
        return Lookup.MUST_VALIDATE
    if lifetime > age:  # fresh; min-fresh asks for some freshness to spare (§5.2.1.3)
        min_fresh = delta_seconds(request_cc, "min-fresh") or 0
        return Lookup.FRESH if lifetime - age >= min_fresh else Lookup.MUST_VALIDATE
    if cc.keys() & _NO_STALE:  # §5.2.2.2, §5.2.2.8, §5.2.2.10: max-stale does not apply
        return Lookup.MUST_VALIDATE
    if "max-stale" in request_cc:  # §5.2.1.2: without a value, any staleness will do
        limit = delta_seconds(request_cc, "max-stale")
        if request_cc["max-stale"] is None or (limit is not None and age - lifetime <= limit):
            return Lookup.FRESH
    return Lookup.STALE


@dataclass(frozen=True, slots=True)
class StaleRules:
    """What a response allows once stale (RFC 9111 §4.2.4, RFC 5861)."""

    forbidden: bool  # no-cache, must-revalidate, proxy-revalidate or s-maxage
    while_revalidate: float | None  # stale-while-revalidate seconds, if given
    if_error: float | None  # stale-if-error seconds, if given


def stale_rules(response_headers: Headers) -> StaleRules:
    """May a stale copy of this response be served, and for how long past expiry?"""
    cc = parse_cache_control(response_headers)
    forbidden = bool(cc.keys() & (_NO_STALE | {"no-cache"}))
    swr = delta_seconds(cc, "stale-while-revalidate")
    sie = delta_seconds(cc, "stale-if-error")
    return StaleRules(
        forbidden, None if swr is None else float(swr), None if sie is None else float(sie)
    )


def serve_to_authorized(response_headers: Headers) -> bool:
    """May a response to a request with Authorization be stored and reused (RFC 9111 §3.5)?"""
    return bool(parse_cache_control(response_headers).keys() & _AUTHORIZED_OK)


def freshen(stored: Headers, not_modified: Headers) -> CIMultiDict[str]:
    """Stored headers updated from a 304 (RFC 9111 §3.2, §4.3.4).

    Each end-to-end field of the 304 replaces every stored line of that name, except the
    fields describing the stored body (Content-Length, -Encoding, -Range), kept as stored.
    """
    result = CIMultiDict(stored)
    replaced: set[str] = set()
    for name, value in end_to_end(not_modified).items():
        lower = name.lower()
        if lower in _BODY_FIELDS:
            continue
        if lower not in replaced:
            result.popall(name, None)
            replaced.add(lower)
        result.add(name, value)
    return result


def invalidates(method: str, status: int) -> bool:
    """Does a non-error response to an unsafe method invalidate the target (RFC 9111 §4.4)?"""
    return method not in _SAFE_METHODS and 200 <= status < 400
