"""TieredStore: memory over disk behind one Store; disk hits promoted once, in the background."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from shared.engine.tasks import TaskGroup
from shared.store import CachedObject, DiskStore, FileBody, MemoryStore, TieredStore
from tests.helpers import stored_object


def obj(
    key: str, size: int, *, fill: int = 0x61, vary_key: tuple[str, ...] = (), **headers: str
) -> CachedObject:
    names = ("accept-encoding",) if vary_key else ()
    return stored_object(key, size, vary_key, names, fill, **headers)


ONE = obj("/a", 1000).size  # charged size of a 1000-byte object


@dataclasses.dataclass
class Tiers:
    store: TieredStore
    memory: MemoryStore
    disk: DiskStore
    tasks: TaskGroup
    promotions: list[str]  # names of the promotions spawned, in order

    async def put(self, *objs: CachedObject) -> None:
        for o in objs:
            assert self.store.put(o)
        await self.disk.flush()

    def files(self) -> list[Path]:
        return sorted(p for p in self.disk.root.rglob("*") if p.is_file())


Make = Callable[..., Awaitable[Tiers]]


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Make]:
    """Tiers over a real MemoryStore and a real DiskStore in ``tmp_path`` (both lru);
    promotions run in a TaskGroup and are recorded by name."""
    made: list[Tiers] = []

    async def tiers(memory_bytes: int = 1 << 20, promote_limit: int = 1 << 20) -> Tiers:
        memory = MemoryStore(memory_bytes, "lru")
        disk = DiskStore(tmp_path / f"disk{len(made)}", 1 << 20, "lru")
        tasks, promotions = TaskGroup(), []

        def spawn(coro: Coroutine[Any, Any, None], name: str) -> object:
            promotions.append(name)
            return tasks.spawn(coro, name=name)

        store = TieredStore(memory, disk, spawn=spawn, promote_limit=promote_limit)
        await store.open()
        made.append(Tiers(store, memory, disk, tasks, promotions))
        return made[-1]

    yield tiers
    for t in made:
        await t.tasks.close()
        await t.store.close()


async def disk_only(make: Make, key: str = "/a", size: int = 1000, **kw: Any) -> Tiers:
    """Tiers where ``key`` lives on disk only: memory holds one object and a second
    put evicted it (lru)."""
    t = await make(memory_bytes=ONE + 100, **kw)
    await t.put(obj(key, size, fill=7), obj("/other", 1000))
    assert not t.memory.peek(key) and t.disk.peek(key)
    return t


async def test_tieredstore_put_goes_to_both_tiers(make):
    """A put lands in memory at once and on disk once durable; both give the same bytes."""
    t = await make()
    o = obj("/a", 1000, fill=3)
    assert t.store.put(o)
    assert t.memory.peek("/a") == [o] and not t.disk.peek("/a")
    await t.disk.flush()
    [on_disk] = t.disk.peek("/a")
    assert isinstance(on_disk.body, FileBody) and on_disk.length == 1000
    assert await t.store.read_body(on_disk) == o.body
    assert [p.suffix for p in t.files()] == [".body", ".meta"]


async def test_tieredstore_lookup_prefers_memory(make):
    """With both tiers holding the key, lookup and peek answer from memory."""
    t = await make()
    o = obj("/a", 1000)
    await t.put(o)
    assert t.store.lookup("/a") == [o] and t.store.peek("/a") == [o]
    assert isinstance(t.store.lookup("/a")[0].body, bytes)


async def test_tieredstore_disk_only_object_reads_from_its_file(make):
    """An object evicted from memory is found on disk; its body reads and opens there."""
    t = await disk_only(make)
    [o] = t.store.lookup("/a")
    assert isinstance(o.body, FileBody) and o.length == 1000
    assert await t.store.read_body(o) == bytes([7]) * 1000
    opened = await t.store.open_body(o)
    assert opened is not None
    fobj, length = opened
    with fobj:
        assert length == 1000 and fobj.read() == bytes([7]) * 1000


async def test_tieredstore_served_promotes_a_disk_hit_once(make):
    """Serving a disk hit reads it into memory in the background, once however many
    hits arrive meanwhile; later lookups answer from memory."""
    t = await disk_only(make)
    [o] = t.store.lookup("/a")
    t.store.served(o)
    t.store.served(o)  # a second hit while the first promotion runs
    assert t.promotions == ["promote '/a'"]
    await t.tasks.join()
    [promoted] = t.memory.peek("/a")
    assert promoted.body == bytes([7]) * 1000 and promoted.headers == o.headers
    assert t.store.lookup("/a") == [promoted]
    t.store.served(promoted)  # a memory hit: nothing to promote
    assert t.promotions == ["promote '/a'"]


@pytest.mark.parametrize(
    ("size", "limit", "promoted"),
    [
        pytest.param(1000, 1000, True, id="at-limit"),
        pytest.param(1001, 1000, False, id="over-limit"),
    ],
)
async def test_tieredstore_served_respects_promote_limit(make, size, limit, promoted):
    """Objects over ``promote_limit`` bytes stay on disk (served with sendfile)."""
    t = await disk_only(make, size=size, promote_limit=limit)
    [o] = t.store.lookup("/a")
    t.store.served(o)
    await t.tasks.join()
    assert (t.promotions == ["promote '/a'"]) is promoted
    assert bool(t.memory.peek("/a")) is promoted


async def test_tieredstore_revalidated_put_reuses_the_disk_body(make):
    """``put(new, same_body_as=old)``, as a 304 does, stores new headers over the old
    body file (a hard link: same inode), in memory too; the old version's files go."""
    t = await make()
    await t.put(obj("/a", 3000, fill=9, ETag='"1"'))
    [old] = t.disk.peek("/a")
    inode = os.stat(t.disk.body_path(old)).st_ino
    body = await t.store.read_body(old)
    assert body is not None
    fresh = dataclasses.replace(old, body=body, response_time=99.0)
    assert t.store.put(fresh, same_body_as=old)
    await t.disk.flush()
    [new] = t.disk.peek("/a")
    assert new.response_time == 99.0 and t.disk.body_path(new) != t.disk.body_path(old)
    assert os.stat(t.disk.body_path(new)).st_ino == inode
    assert await t.store.read_body(new) == bytes([9]) * 3000
    assert t.memory.peek("/a") == [fresh]
    assert len(t.files()) == 2


async def test_tieredstore_remove_drops_both_tiers(make):
    """remove takes the key out of memory and disk (files too), and discards a write
    still in flight."""
    t = await make()
    await t.put(obj("/a", 1000), obj("/b", 1000))
    assert t.store.remove("/a") == 1
    assert t.store.put(obj("/c", 1000))
    assert t.store.remove("/c") == 1  # in memory; on disk still being written
    await t.disk.flush()
    for key in ("/a", "/c"):
        assert not t.store.peek(key) and not t.memory.peek(key) and not t.disk.peek(key)
    assert [o.key for o in t.store] == ["/b"] and len(t.files()) == 2
    assert t.store.remove("/missing") == 0


async def test_tieredstore_disk_property(make):
    """``disk`` is the disk tier; a plain memory store has none."""
    t = await make()
    assert t.store.disk is t.disk
    assert MemoryStore(1000).disk is None


async def test_tieredstore_len_and_iteration_dedupe_tiers(make):
    """An object in both tiers counts once (its memory copy); disk-only objects and
    each Vary variant count too."""
    t = await make(memory_bytes=3 * ONE)  # room for three objects in memory
    gz, br = ("gzip",), ("br",)
    await t.put(obj("/old", 1000), obj("/v", 1000, vary_key=gz), obj("/v", 1000, vary_key=br))
    await t.put(obj("/new", 1000))  # /old leaves memory (lru)
    assert len(t.memory) == 3 and len(t.disk) == 4
    assert len(t.store) == 4
    listed = [(o.key, o.vary_key) for o in t.store]
    assert sorted(listed) == [("/new", ()), ("/old", ()), ("/v", br), ("/v", gz)]
    bodies = {o.key: type(o.body) for o in t.store}
    assert bodies == {"/v": bytes, "/new": bytes, "/old": FileBody}
