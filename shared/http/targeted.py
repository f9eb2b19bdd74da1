"""Targeted cache control (RFC 9213): ``CDN-Cache-Control`` and a node's own field.

A node's target list is its own field (``--targeted-cache-control``), then
``CDN-Cache-Control``. ``cache_headers`` gives the view of a response a cache
reads for its own storage and freshness: when a field of the list has a valid,
non-empty value, the first such field stands in for ``Cache-Control`` and
``Expires`` is dropped (§2.2); else the headers are returned as they are.

Pure: headers are never mutated. Invariants:
- A targeted field is a Structured Fields Dictionary (§2.1, RFC 8941 §3.2); an
  empty or unparsable one is ignored as if absent, falling back to the next.
- Directive semantics are those of Cache-Control (§2.2): the view is rendered
  as a Cache-Control value, so every reader of Cache-Control obeys it unchanged.
- The fields themselves are forwarded downstream untouched (§2.2: not consumed).
"""

from __future__ import annotations

import re

from multidict import CIMultiDict, CIMultiDictProxy

from shared.http.fields import Headers

__all__ = ["CDN_CACHE_CONTROL", "cache_headers", "target_list"]

CDN_CACHE_CONTROL = "CDN-Cache-Control"  # RFC 9213 §3

_KEY = r"[a-z*][a-z0-9_.*-]*"  # RFC 8941 §3.1.2
_ITEM = (  # bare items (RFC 8941 §3.3): decimal/integer, string, token, byte sequence, boolean
    r"-?[0-9]{1,15}(?:\.[0-9]{1,3})?"
    r'|"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"'
    r"|[A-Za-z*][!#$%&'*+.^_`|~0-9A-Za-z:/-]*"
    r"|:[A-Za-z0-9+/=]*:"
    r"|\?[01]"
)
_PARAMS = rf"(?:;[ ]*{_KEY}(?:=(?:{_ITEM}))?)*"
_INNER = rf"\((?:[ ]*(?:{_ITEM}){_PARAMS})*[ ]*\)"
_MEMBER = re.compile(rf"({_KEY})(?:=({_ITEM}|{_INNER}))?{_PARAMS}")


def target_list(own: str) -> tuple[str, ...]:
    """A node's target list (RFC 9213 §2.2): its own field, if any, then CDN-Cache-Control."""
    return tuple(name for name in (own.strip(), CDN_CACHE_CONTROL) if name)


def cache_headers(headers: Headers, targets: tuple[str, ...]) -> Headers:
    """The view of ``headers`` this cache reads for storage and freshness (RFC 9213 §2.2)."""
    for name in targets:
        lines = headers.getall(name, [])
        directives = _dictionary(",".join(lines)) if lines else None
        if directives is not None:  # else absent, empty or invalid: ignored (§2.1)
            view = CIMultiDict(headers)
            view.popall("Expires", None)
            view["Cache-Control"] = directives
            return CIMultiDictProxy(view)
    return headers


def _dictionary(value: str) -> str | None:
    """A Structured Fields Dictionary as a Cache-Control value; None if empty or invalid.

    The last of repeated keys wins (RFC 8941 §3.2); ``?0`` and inner lists carry no
    directive and are left out; ``?1`` is a bare directive; parameters are ignored."""
    members: dict[str, str | None] = {}
    value = value.strip(" \t")
    pos = 0
    while pos < len(value):
        match = _MEMBER.match(value, pos)
        if match is None:
            return None
        key, item = match.group(1), match.group(2)
        members.pop(key, None)
        if item is None or item == "?1":
            members[key] = None
        elif item != "?0" and not item.startswith("("):
            members[key] = item
        pos = _skip_ows(value, match.end())
        if pos < len(value) and (
            value[pos] != "," or (pos := _skip_ows(value, pos + 1)) == len(value)
        ):
            return None  # junk after a member, or a trailing comma (RFC 8941 §4.2.2)
    if pos == 0:
        return None  # empty
    return ", ".join(k if v is None else f"{k}={v}" for k, v in members.items())


def _skip_ows(value: str, pos: int) -> int:
    while pos < len(value) and value[pos] in " \t":
        pos += 1
    return pos
