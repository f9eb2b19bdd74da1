"""HTTP caching decisions for a shared cache (RFC 9111): store, reuse, stale, 304, invalidate.

Pure policy: no I/O and no clock. Times are epoch seconds passed in (``now``,
``request_time``, ``response_time``); headers are case-insensitive multidicts that
are never mutated (functions that change headers return a new ``CIMultiDict``).
Fields are parsed in ``shared.http.fields``; freshness and age come from
``shared.http.freshness``.

Invariants:
- Every decision is a closed ``Enum``, a ``StaleRules`` or a ``bool``.
- A response is stored only if it could ever be reused: fresh for a while, or with
  a validator (RFC 9111 §3); ``no-cache`` is stored and validated on every use.
- A field that fails to parse counts as absent; it never defaults to ``now``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from multidict import CIMultiDict

from shared.http.fields import (
    Headers,
    _tokens,
    delta_seconds,
    end_to_end,
    parse_cache_control,
    vary_names,
)
from shared.http.freshness import HEURISTIC_STATUSES, _lifetime, current_age

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
]

_UNDERSTOOD = HEURISTIC_STATUSES | {302, 303, 307}  # final; 206 never: we store whole objects
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # RFC 9110 §9.2.1
_BODY_FIELDS = frozenset({"content-length", "content-encoding", "content-range"})  # 9111 §3.2
_AUTHORIZED_OK = frozenset({"public", "s-maxage", "must-revalidate"})  # RFC 9111 §3.5
_NO_STALE = frozenset({"must-revalidate", "proxy-revalidate", "s-maxage"})  # RFC 9111 §4.2.4


class Storable(enum.Enum):
    """Whether a response may be stored (RFC 9111 §3) and, if not, why; usable as a label."""

    YES = "yes"
    METHOD = "method"  # only GET; the caller turns HEAD into GET before asking
    STATUS = "status"  # not final, not understood, or 206
    NO_STORE = "no-store"  # in the request or the response
    PRIVATE = "private"  # qualified or not: a shared cache stores neither
    AUTHORIZATION = "authorization"  # RFC 9111 §3.5
    VARY_STAR = "vary-star"  # could never be selected (§4.1)
    NO_FRESHNESS = "no-freshness"  # no explicit freshness, not public, not heuristic status
    NOT_FRESH = "not-fresh"  # lifetime 0 and no validator: could never be reused


def storable(
    method: str,
    status: int,
    request_headers: Headers,
    response_headers: Headers,
    *,
    heuristic_max_age: float,
) -> Storable:
    """May a shared cache store this response to a GET (RFC 9111 §3)?"""
    if method != "GET":
        return Storable.METHOD
    if status not in _UNDERSTOOD:
        return Storable.STATUS
    request_cc, cc = parse_cache_control(request_headers), parse_cache_control(response_headers)
    if "no-store" in request_cc or "no-store" in cc:
        return Storable.NO_STORE
    if "private" in cc:
        return Storable.PRIVATE
    if "authorization" in request_headers and not cc.keys() & _AUTHORIZED_OK:
        return Storable.AUTHORIZATION
    if vary_names(response_headers) is None:
        return Storable.VARY_STAR
    explicit = "expires" in response_headers or cc.keys() & {"max-age", "s-maxage", "public"}
    if not explicit and status not in HEURISTIC_STATUSES:
        return Storable.NO_FRESHNESS
    lifetime = _lifetime(status, response_headers, cc, heuristic_max_age)
    if lifetime <= 0 and "etag" not in response_headers and "last-modified" not in response_headers:
        return Storable.NOT_FRESH
    return Storable.YES  # no-cache too: it is stored and validated on every use


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
) -> Lookup:
    """Decide how a stored response may answer this request; only-if-cached is the caller's."""
    request_cc, cc = parse_cache_control(request_headers), parse_cache_control(response_headers)
    if "no-cache" in cc or "no-cache" in request_cc:  # §5.2.2.4, §5.2.1.4
        return Lookup.MUST_VALIDATE
    if "cache-control" not in request_headers and "no-cache" in _tokens(request_headers, "Pragma"):
        return Lookup.MUST_VALIDATE  # HTTP/1.0 clients: RFC 7234 §5.4, deprecated by 9111 §5.4
    lifetime = _lifetime(status, response_headers, cc, heuristic_max_age)
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
