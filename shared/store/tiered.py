"""Memory as the hot tier over a disk store, behind the one store interface.

Reads look in memory first, then on disk; writes go to both (the disk copy is
what survives a restart). An object found only on disk is promoted into memory
after it is served (``served``): its body is read once, in the background, so
the hot set is served from memory and the rest with sendfile. Both tiers run
their own admission policy within their own byte budgets.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import IO, Any

from shared.store.disk import DiskStore
from shared.store.entry import CachedObject, FileBody
from shared.store.memory import MemoryStore

__all__ = ["TieredStore"]

Spawn = Callable[[Coroutine[Any, Any, None], str], object]


class TieredStore:
    """``memory`` over ``disk``: the Store interface, both budgets.

    ``spawn(coro, name)`` runs a promotion in the background (the node's task
    group); objects over ``promote_limit`` bytes stay on disk, those over
    ``disk_limit`` stay off it (each tier's largest object is its own setting). A
    disk hit is read into memory only when memory could take it: never for a
    promotion memory would refuse anyway."""

    def __init__(
        self,
        memory: MemoryStore,
        disk: DiskStore,
        *,
        spawn: Spawn,
        promote_limit: int,
        disk_limit: int | None = None,
    ) -> None:
        self.memory = memory
        self._disk = disk
        self._spawn = spawn
        self.promote_limit = promote_limit  # the memory tier's largest object
        self.disk_limit = disk.capacity if disk_limit is None else disk_limit
        self.promotions = 0  # disk bodies read into memory [single event loop]
        self._promoting: set[str] = set()  # keys being read into memory [single event loop]

    @property
    def disk(self) -> DiskStore:
        return self._disk

    def lookup(self, key: str) -> list[CachedObject]:
        """Memory's variants if it has the key, else the disk's (each counts the access)."""
        return self.memory.lookup(key) or self._disk.lookup(key)

    def peek(self, key: str) -> list[CachedObject]:
        return self.memory.peek(key) or self._disk.peek(key)

    def put(self, obj: CachedObject, *, same_body_as: CachedObject | None = None) -> bool:
        """Store in both tiers (memory only takes bodies in memory); True if either took it."""
        small = obj.length <= self.promote_limit
        in_memory = small and isinstance(obj.body, bytes) and self.memory.put(obj)
        on_disk = obj.length <= self.disk_limit and self._disk.put(obj, same_body_as=same_body_as)
        return in_memory or on_disk

    def reconfigure(self, *, memory: int, disk: int, policy: str) -> None:
        """Both tiers take their new budget and the policy live."""
        self.memory.resize(memory, policy)
        self._disk.resize(disk, policy)

    def remove(self, key: str, vary_key: tuple[str, ...] | None = None) -> int:
        return max(self.memory.remove(key, vary_key), self._disk.remove(key, vary_key))

    def clear(self) -> None:
        self.memory.clear()
        self._disk.clear()

    async def open(self) -> None:
        await self._disk.open()

    async def close(self) -> None:
        await self._disk.close()

    async def open_body(self, obj: CachedObject) -> tuple[IO[bytes], int] | None:
        return await self._disk.open_body(obj)

    async def read_body(self, obj: CachedObject) -> bytes | None:
        if isinstance(obj.body, bytes):
            return obj.body
        return await self._disk.read_body(obj)

    def served(self, obj: CachedObject) -> None:
        """Read a disk hit into the memory tier, once, in the background."""
        if not isinstance(obj.body, FileBody) or obj.length > self.promote_limit:
            return
        if obj.size > self.memory.largest:  # memory would refuse it: don't read it
            return
        if obj.key in self._promoting:
            return
        self._promoting.add(obj.key)
        self._spawn(self._promote(obj), f"promote {obj.key!r}")

    async def _promote(self, obj: CachedObject) -> None:
        try:
            self.promotions += 1
            body = await self._disk.read_body(obj)
            if body is not None:
                self.memory.put(obj.with_body(body))
        finally:
            self._promoting.discard(obj.key)

    @property
    def capacity(self) -> int:
        return self.memory.capacity + self._disk.capacity

    @property
    def evictions(self) -> int:
        return self.memory.evictions + self._disk.evictions

    @property
    def admitted(self) -> int:
        return self.memory.admitted + self._disk.admitted

    @property
    def rejected(self) -> int:
        return self.memory.rejected + self._disk.rejected

    def __len__(self) -> int:
        return len({(o.key, o.vary_key) for o in self})

    def __iter__(self) -> Iterator[CachedObject]:
        seen: set[tuple[str, tuple[str, ...]]] = set()
        for obj in (*self.memory, *self._disk):
            if (obj.key, obj.vary_key) not in seen:
                seen.add((obj.key, obj.vary_key))
                yield obj

    def __repr__(self) -> str:
        return f"<TieredStore {self.memory!r} over {self._disk!r}>"

    @property
    def bytes(self) -> int:  # last in the class: it shadows the builtin
        return self.memory.bytes + self._disk.bytes
