"""The memory store: whole responses by cache key, within a byte budget.

One entry per primary key (the request target) holding its variants (RFC 9111
§4.1: one per Vary key). Eviction is LRU by entry for now; the byte budget is
never exceeded because an object larger than the budget is refused. Serving
headers are prepared once at store time so the hit path copies, never builds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from cachetools import LRUCache
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["CachedObject", "MemoryStore"]

# Fields recomputed on every response, so not part of the prepared headers.
_PER_RESPONSE = ("Age", "Cache-Status", "Via", "Content-Length", "Date")
_OVERHEAD = 256  # bytes charged per object for bookkeeping


@dataclasses.dataclass(slots=True)
class CachedObject:
    """A complete stored response and the facts needed to age it."""

    key: str
    vary_names: tuple[str, ...]
    vary_key: tuple[str, ...]
    status: int
    headers: CIMultiDictProxy[str]  # end-to-end headers as received (RFC 9111 §3.1)
    body: bytes
    request_time: float
    response_time: float
    lifetime: float  # freshness lifetime (RFC 9111 §4.2.1), computed at store time
    initial_age: float  # corrected_initial_age (RFC 9111 §4.2.3)
    must_validate: bool  # response no-cache: revalidate before every use
    prepared: CIMultiDictProxy[str] = dataclasses.field(init=False)
    upstream_status: str = dataclasses.field(init=False)  # upstream Cache-Status, or ""
    upstream_via: str = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        prepared = CIMultiDict(self.headers)
        for name in _PER_RESPONSE:
            prepared.popall(name, None)
        if "Date" in self.headers:
            prepared["Date"] = self.headers["Date"]
        self.prepared = CIMultiDictProxy(prepared)
        self.upstream_status = ", ".join(self.headers.getall("Cache-Status", []))
        self.upstream_via = ", ".join(self.headers.getall("Via", []))

    def age(self, now: float) -> float:
        """current_age (RFC 9111 §4.2.3) at ``now``."""
        return self.initial_age + max(0.0, now - self.response_time)

    def ttl(self, now: float) -> float:
        """Seconds of freshness left (negative once stale)."""
        return self.lifetime - self.age(now)

    @property
    def size(self) -> int:
        """Bytes charged against the budget: body, headers and bookkeeping."""
        head = sum(len(k) + len(v) for k, v in self.headers.items())
        return len(self.body) + head + _OVERHEAD


def _entry_size(variants: list[CachedObject]) -> int:
    return sum(v.size for v in variants)


class _Lru(LRUCache[str, list[CachedObject]]):
    evictions = 0  # guarded by: single event loop

    def popitem(self) -> tuple[str, list[CachedObject]]:
        self.evictions += 1
        return super().popitem()


class MemoryStore:
    """Variants by primary key, LRU within ``capacity`` bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lru = _Lru(maxsize=max(capacity, 1), getsizeof=_entry_size)

    def lookup(self, key: str) -> list[CachedObject]:
        """The stored variants of ``key`` (most recent first), touching it."""
        return self._lru.get(key) or []

    def put(self, obj: CachedObject) -> bool:
        """Store ``obj``, replacing the variant with the same Vary key.

        Returns False when it cannot fit at all (larger than the budget)."""
        others = [
            v
            for v in self._lru.get(obj.key, [])
            if v.vary_key != obj.vary_key and v.vary_names == obj.vary_names
        ]
        variants = [obj, *others]
        if _entry_size(variants) > self.capacity:
            return False
        self._lru[obj.key] = variants
        return True

    def remove(self, key: str, vary_key: tuple[str, ...] | None = None) -> int:
        """Drop ``key`` (one variant, or all when ``vary_key`` is None)."""
        variants = self._lru.pop(key, None) or []
        if vary_key is None:
            return len(variants)
        kept = [v for v in variants if v.vary_key != vary_key]
        if kept:
            self._lru[key] = kept
        return len(variants) - len(kept)

    def clear(self) -> None:
        self._lru.clear()

    @property
    def bytes(self) -> int:
        return int(self._lru.currsize)

    @property
    def evictions(self) -> int:
        return self._lru.evictions

    def __len__(self) -> int:
        return sum(len(v) for v in self._lru.values())

    def __iter__(self) -> Iterator[CachedObject]:
        for variants in list(self._lru.values()):
            yield from variants

    def __repr__(self) -> str:
        return f"<MemoryStore objects={len(self)} bytes={self.bytes}/{self.capacity}>"
