"""The one interface every store offers the engine, whatever its tiers.

The engine, the metrics and the admin routes talk to a ``Store``; none of them
asks which class it is. Bodies held in memory are served as they are; any other
body is opened or read through the store (``open_body``, ``read_body``), and a
store with a faster tier is told of each such hit (``served``) to promote it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Protocol

from shared.store.entry import CachedObject

if TYPE_CHECKING:
    from shared.store.disk import DiskStore

__all__ = ["Store"]


class Store(Protocol):
    """Whole responses by cache key (and Vary key) within byte budgets."""

    @property
    def capacity(self) -> int: ...
    @property
    def evictions(self) -> int: ...
    @property
    def admitted(self) -> int: ...
    @property
    def rejected(self) -> int: ...
    @property
    def disk(self) -> DiskStore | None:
        """The disk tier, for its own figures (/stats, /metrics); None without one."""

    def lookup(self, key: str) -> list[CachedObject]:
        """The variants of ``key``, counting the access (once per client request)."""

    def peek(self, key: str) -> list[CachedObject]:
        """The variants of ``key``, neither touching nor counting it."""

    def put(self, obj: CachedObject, *, same_body_as: CachedObject | None = None) -> bool:
        """Store ``obj``; ``same_body_as`` is a stored object with the same body bytes
        (a revalidation) that a tier may reuse. False if it cannot be stored at all."""

    def reconfigure(self, *, memory: int, disk: int, policy: str) -> None:
        """New byte budgets (``memory`` for a memory tier, ``disk`` for a disk tier) and
        admission policy, live: shrinking evicts by the policy's own order, a new
        policy keeps the entries (a reload)."""

    def remove(self, key: str, vary_key: tuple[str, ...] | None = None) -> int: ...
    def clear(self) -> None: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[CachedObject]: ...

    async def open(self) -> None:
        """Load what a previous run left (call once, first)."""

    async def close(self) -> None:
        """Finish pending writes."""

    async def open_body(self, obj: CachedObject) -> tuple[IO[bytes], int] | None:
        """A body that is not in memory, opened at 0, and its length; None if it went
        bad (then the object is dropped: treat it as a miss)."""

    async def read_body(self, obj: CachedObject) -> bytes | None:
        """The whole body in memory; None if it went bad, as above."""

    def served(self, obj: CachedObject) -> None:
        """``obj`` (a body not in memory) was just served: promote it if worth it."""

    @property
    def bytes(self) -> int:  # last in the class: it shadows the builtin below it
        """Bytes charged against the budgets."""
