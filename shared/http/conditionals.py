"""Conditional requests and Range (RFC 9110 §13, §14): 304 or not, If-Range, which bytes.

Pure: no I/O and no clock; headers are case-insensitive multidicts, never mutated.

Invariants:
- Every decision is a ``bool`` or a ``RangeResult`` (a closed ``RangeKind`` and the
  inclusive bounds to send).
- Only one bytes range is ever sent: other units and multiple ranges get the whole
  object (a server may ignore Range; we send no multipart). A malformed bytes range
  is ``INVALID`` (416, as nginx does).
- A date that fails to parse never matches, so it never turns a 200 into a 304.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from shared.http.dates import field_date, parse_http_date
from shared.http.fields import Headers, _capped, _members

__all__ = [
    "RangeKind",
    "RangeResult",
    "evaluate_conditionals",
    "if_range_matches",
    "if_range_validator",
    "parse_range",
    "resume_offset",
]

_ETAG = re.compile(r'\*|(?:W/)?"[^"]*"')
_RANGE_SPEC = re.compile(r"([0-9]+)-([0-9]*)|-([0-9]+)")


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
    since = field_date(request_headers, "If-Modified-Since")  # §13.1.3: invalid is ignored
    if since is None:  # the common case on the hit path: no date parsing
        return False
    stamp = "Last-Modified" if "Last-Modified" in response_headers else "Date"
    modified = field_date(response_headers, stamp)
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


def if_range_validator(headers: Headers) -> str | None:
    """What an If-Range may carry to continue a response with ``headers`` (RFC 9110
    §13.1.5): a strong ETag, else a Last-Modified at least a second older than Date
    (§8.8.2.2); None if neither is strong."""
    etag = headers.get("ETag", "").strip()
    if etag:
        return etag if etag.startswith('"') else None
    modified = parse_http_date(headers.get("Last-Modified"))
    date = parse_http_date(headers.get("Date"))
    if modified is None or date is None or date - modified < 1:
        return None
    return headers["Last-Modified"]


def resume_offset(
    first: Headers,
    length: int | None,
    status: int,
    rest: Headers,
    rest_length: int | None,
    pos: int,
    end: int | None = None,
) -> int | None:
    """Where byte ``pos`` of a body (headers ``first``, ``length`` bytes if known)
    is in an answer to ``Range: bytes=<pos>-[end-1]`` under If-Range: 0 in a 206
    of the same representation from ``pos`` (to ``end``), ``pos`` in a 200 of it;
    None when the answer cannot continue the body (another representation, range
    or length)."""
    if any(rest.get(f) != first.get(f) for f in ("ETag", "Last-Modified")):
        return None
    if status == 200:
        return pos if rest_length == length else None
    if status != 206:
        return None
    unit, _, spec = rest.get("Content-Range", "").partition(" ")
    span, _, total = spec.partition("/")
    lo, _, hi = span.partition("-")
    if unit != "bytes" or lo != str(pos) or (end is not None and hi != str(end - 1)):
        return None
    return 0 if length is None or total == str(length) else None
