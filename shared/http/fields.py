"""HTTP fields (RFC 9110 §5): list members, tokens, Cache-Control directives, hop-by-hop, Vary.

Pure: headers are case-insensitive multidicts that are never mutated (``end_to_end``
returns a new ``CIMultiDict``).

Invariants:
- A list is split at commas outside quoted strings (RFC 9110 §5.6.1); empty members
  are skipped, and several field lines count as one list joined with commas.
- A field that fails to parse counts as absent: a junk Cache-Control member is
  skipped, an invalid delta-seconds is ``None``.
- delta-seconds are capped at 2**31 (RFC 9111 §1.2.2); digits of any length are safe.

The ``_`` helpers (``_members``, ``_tokens``, ``_delta``, ``_capped``) are for the
package's other modules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeAlias

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "HOP_BY_HOP",
    "Directives",
    "Headers",
    "delta_seconds",
    "end_to_end",
    "parse_cache_control",
    "vary_key",
    "vary_names",
]

Headers: TypeAlias = CIMultiDictProxy[str] | CIMultiDict[str]
Directives: TypeAlias = dict[str, str | None]

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding"}
    | {"upgrade", "proxy-authenticate", "proxy-authorization"}
)
_DELTA_CAP = 2**31  # RFC 9111 §1.2.2
_MEMBER = re.compile(r'(?:[^,"]|"(?:[^"\\]|\\.)*"?)+')  # a list member; commas in quotes kept
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_DIGITS = re.compile(r"[0-9]+")


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


def end_to_end(headers: Headers) -> CIMultiDict[str]:
    """A copy without hop-by-hop fields, nor the fields Connection names (RFC 9110 §7.6.1)."""
    drop = HOP_BY_HOP | _tokens(headers, "Connection")
    return CIMultiDict([(k, v) for k, v in headers.items() if k.lower() not in drop])


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
