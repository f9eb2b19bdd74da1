"""HTTP caching decisions for a shared cache (RFC 9111), with the RFC 9110 parts they need.

Pure policy: no I/O and no clock. Times are epoch seconds passed in (``now``,
``request_time``, ``response_time``); headers are case-insensitive multidicts that
are never mutated (functions that change headers return a new ``CIMultiDict``).

Invariants:
- Every decision is a closed ``Enum``, a ``RangeResult`` or a ``bool``.
- Invalid freshness information errs toward stale (RFC 9111 §4.2.1): a malformed
  max-age, an unparsable Expires or a missing Date gives lifetime 0.
- A field that fails to parse counts as absent; it never defaults to ``now``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_tz
from typing import TypeAlias

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "HEURISTIC_STATUSES",
    "HOP_BY_HOP",
    "Directives",
    "Headers",
    "Lookup",
    "RangeKind",
    "RangeResult",
    "StaleRules",
    "Storable",
    "classify",
    "current_age",
    "delta_seconds",
    "end_to_end",
    "evaluate_conditionals",
    "format_http_date",
    "freshen",
    "freshness_lifetime",
    "if_range_matches",
    "invalidates",
    "parse_cache_control",
    "parse_http_date",
    "parse_range",
    "serve_to_authorized",
    "stale_rules",
    "storable",
    "vary_key",
    "vary_names",
]

Headers: TypeAlias = CIMultiDictProxy[str] | CIMultiDict[str]
Directives: TypeAlias = dict[str, str | None]

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding"}
    | {"upgrade", "proxy-authenticate", "proxy-authorization"}
)
# Heuristically cacheable by default (RFC 9110 §15.1).
HEURISTIC_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
_UNDERSTOOD = HEURISTIC_STATUSES | {302, 303, 307}  # final; 206 never: we store whole objects
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # RFC 9110 §9.2.1
_BODY_FIELDS = frozenset({"content-length", "content-encoding", "content-range"})  # 9111 §3.2
_AUTHORIZED_OK = frozenset({"public", "s-maxage", "must-revalidate"})  # RFC 9111 §3.5
_NO_STALE = frozenset({"must-revalidate", "proxy-revalidate", "s-maxage"})  # RFC 9111 §4.2.4
_DELTA_CAP = 2**31  # RFC 9111 §1.2.2
_MEMBER = re.compile(r'(?:[^,"]|"(?:[^"\\]|\\.)*"?)+')  # a list member; commas in quotes kept
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_DIGITS = re.compile(r"[0-9]+")
_ETAG = re.compile(r'\*|(?:W/)?"[^"]*"')
_RANGE_SPEC = re.compile(r"([0-9]+)-([0-9]*)|-([0-9]+)")


def parse_cache_control(headers: Headers) -> Directives:
    """Directives of every Cache-Control line (RFC 9111 §5.2), names lowercased, values unquoted.

    Junk members are skipped; the first occurrence of a repeated directive wins (§4.2.1).
    """
    directives: Directives = {}
    for member in _members(",".join(headers.getall("Cache-Control", []))):
        name, eq, value = member.partition("=")
        name = name.strip().lower()
        if _TOKEN.fullmatch(name) and name not in directives:
            directives[name] = _unquote(value.strip()) if eq else None
    return directives


def delta_seconds(directives: Mapping[str, str | None], name: str) -> int | None:
    """A directive's delta-seconds (RFC 9111 §1.2.2), capped at 2**31; None if absent or invalid."""
    return _delta(directives.get(name))


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


def end_to_end(headers: Headers) -> CIMultiDict[str]:
    """A copy without hop-by-hop fields, nor the fields Connection names (RFC 9110 §7.6.1)."""
    drop = HOP_BY_HOP | _tokens(headers, "Connection")
    return CIMultiDict([(k, v) for k, v in headers.items() if k.lower() not in drop])


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


def vary_names(response_headers: Headers) -> tuple[str, ...] | None:
    """Field names in Vary, lowercased, sorted and distinct; None for ``Vary: *`` (§4.1)."""
    names = _tokens(response_headers, "Vary")
    return None if "*" in names else tuple(sorted(names))


def vary_key(names: tuple[str, ...], request_headers: Headers) -> tuple[str, ...]:
    """The request's values of ``names``, normalised so equal keys select one variant (§4.1).

    Field lines are joined with ", " and whitespace is collapsed; values keep their case.
    Each element is ``"name: value"``, or the bare name when the request lacks the field,
    so an absent field never matches an empty one.
    """
    key = []
    for name in names:
        lines = request_headers.getall(name, [])
        members = (" ".join(m.split()) for m in _members(",".join(lines)))
        key.append(f"{name}: {', '.join(members)}" if lines else name)
    return tuple(key)


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


def evaluate_conditionals(method: str, request_headers: Headers, response_headers: Headers) -> bool:
    """True when a stored 200 should answer with 304 (RFC 9110 §13.2.2 steps 3 and 4).

    If-None-Match uses weak comparison (§13.1.2) and hides If-Modified-Since, which is
    compared with Last-Modified, or Date without one (RFC 9111 §4.3.2).
    """
    if method not in ("GET", "HEAD"):
        return False
    if "if-none-match" in request_headers:
        listed = _ETAG.findall(",".join(request_headers.getall("If-None-Match")))
        tags = {tag.removeprefix("W/") for tag in listed}
        etag = response_headers.get("ETag")
        return "*" in tags or (etag is not None and etag.strip().removeprefix("W/") in tags)
    lines = request_headers.getall("If-Modified-Since", [])
    since = parse_http_date(lines[0]) if len(lines) == 1 else None  # §13.1.3: one member only
    if since is None:  # the common case on the hit path: no date parsing
        return False
    modified = parse_http_date(response_headers.get("Last-Modified", response_headers.get("Date")))
    return modified is not None and modified <= since


class RangeKind(enum.Enum):
    """How to answer a Range request (RFC 9110 §14.2)."""

    FULL = "full"  # no usable Range: send the whole object (200)
    PARTIAL = "partial"  # send start..end (206)
    UNSATISFIABLE = "unsatisfiable"  # 416
    INVALID = "invalid"  # malformed bytes range: 416, as nginx does


@dataclass(frozen=True, slots=True)
class RangeResult:
    """A Range decision; ``start``..``end`` (inclusive) are the bytes to send, empty for 416."""

    kind: RangeKind
    start: int = 0
    end: int = -1


def parse_range(value: str | None, length: int) -> RangeResult:
    """Decide a Range header against an object of ``length`` bytes (RFC 9110 §14.1.2, §14.2).

    Other units and multiple ranges get the whole object: a server may ignore Range, and
    we send no multipart. An end beyond the object is clipped.
    """
    full = RangeResult(RangeKind.FULL, 0, length - 1)
    unit, _, spec = (value or "").partition("=")
    if unit.strip().lower() != "bytes":
        return full
    members = _members(spec)
    matches = [m for m in map(_RANGE_SPEC.fullmatch, members) if m]
    if not members or len(matches) < len(members):
        return RangeResult(RangeKind.INVALID)
    if len(matches) > 1:
        return full
    first, last, suffix = matches[0].groups()
    if suffix is not None:
        size = _capped(suffix, 2**63)
        if size == 0 or length == 0:
            return RangeResult(RangeKind.UNSATISFIABLE)
        return RangeResult(RangeKind.PARTIAL, max(0, length - size), length - 1)
    start = _capped(first, 2**63)
    end = _capped(last, 2**63) if last else length - 1
    if last and end < start:
        return RangeResult(RangeKind.INVALID)
    if start >= length:
        return RangeResult(RangeKind.UNSATISFIABLE)
    return RangeResult(RangeKind.PARTIAL, start, min(end, length - 1))


def if_range_matches(if_range: str | None, response_headers: Headers) -> bool:
    """May a Range apply under If-Range (RFC 9110 §13.1.5)? True without If-Range.

    An entity-tag must equal the response's ETag and both be strong; a date must equal
    Last-Modified exactly. Anything else sends the whole object.
    """
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        return value.startswith('"') and value == response_headers.get("ETag", "").strip()
    date = parse_http_date(value)
    return date is not None and date == parse_http_date(response_headers.get("Last-Modified"))


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


def _delta(value: str | None) -> int | None:
    if value is None or not _DIGITS.fullmatch(value := value.strip()):
        return None
    return _capped(value, _DELTA_CAP)


def _capped(digits: str, cap: int) -> int:
    digits = digits.lstrip("0") or "0"  # int() refuses over 4300 digits
    return cap if len(digits) > len(str(cap)) else min(int(digits), cap)


def _members(value: str) -> list[str]:
    return [m.strip() for m in _MEMBER.findall(value) if m.strip()]


def _tokens(headers: Headers, name: str) -> frozenset[str]:
    return frozenset(m.lower() for m in _members(",".join(headers.getall(name, []))))


def _unquote(value: str) -> str:
    if not value.startswith('"'):
        return value
    inner = value[1:-1] if len(value) > 1 and value.endswith('"') else value[1:]
    return re.sub(r"\\(.)", r"\1", inner)
