"""Memory as the hot tier over a disk store, behind the one store interface.

Reads look in memory first, then on disk; writes go to both (the disk copy is
what survives a restart). An object found only on disk is promoted into memory
by the node after it is served (``promote``), so the hot set is served from
memory and the rest with sendfile. Both tiers run their own admission policy
within their own byte budgets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from shared.store.disk import DiskObject, DiskStore
from shared.store.memory import CachedObject, MemoryStore

__all__ = ["TieredStore", "in_memory"]


def in_memory(obj: DiskObject, body: bytes) -> CachedObject:
    """A memory copy of a disk object, its body read."""
    fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(CachedObject) if f.init}
    fields["body"] = body
    return CachedObject(**fields)


class TieredStore:
    """``memory`` over ``disk``: the MemoryStore interface, both budgets."""

    def __init__(self, memory: MemoryStore, disk: DiskStore) -> None:
        self.memory = memory
        self.disk = disk

    def lookup(self, key: str) -> list[CachedObject]:
        """Memory's variants if it has the key, else the disk's (each counts the access)."""
        return self.memory.lookup(key) or self.disk.lookup(key)

    def peek(self, key: str) -> list[CachedObject]:
        return self.memory.peek(key) or self.disk.peek(key)

    def put(self, obj: CachedObject, *, body_from: DiskObject | None = None) -> bool:
        """Store in both tiers; True if either took it."""
        in_memory = self.memory.put(obj)
        on_disk = self.disk.put(obj, body_from=body_from)
        return in_memory or on_disk

    def promote(self, obj: CachedObject) -> bool:
        """Put a disk object, now with its body read, into memory only."""
        return self.memory.put(obj)

    def remove(self, key: str, vary_key: tuple[str, ...] | None = None) -> int:
        return max(self.memory.remove(key, vary_key), self.disk.remove(key, vary_key))

    def clear(self) -> None:
        self.memory.clear()
        self.disk.clear()

    @property
    def capacity(self) -> int:
        return self.memory.capacity + self.disk.capacity

    @property
    def bytes(self) -> int:
        return self.memory.bytes + self.disk.bytes

    @property
    def evictions(self) -> int:
        return self.memory.evictions + self.disk.evictions

    @property
    def admitted(self) -> int:
        return self.memory.admitted + self.disk.admitted

    @property
    def rejected(self) -> int:
        return self.memory.rejected + self.disk.rejected

    def __len__(self) -> int:
        return len({(o.key, o.vary_key) for o in self})

    def __iter__(self) -> Iterator[CachedObject]:
        seen: set[tuple[str, tuple[str, ...]]] = set()
        for obj in (*self.memory, *self.disk):
            if (obj.key, obj.vary_key) not in seen:
                seen.add((obj.key, obj.vary_key))
                yield obj

    def __repr__(self) -> str:
        return f"<TieredStore {self.memory!r} over {self.disk!r}>"
