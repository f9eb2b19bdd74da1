"""Stores resized live (a reload): budgets grow and shrink, the policy switches, and
nothing being served is cut; ``reload.apply`` hands the new store settings over."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest

from shared.engine.node import Node
from shared.service.reload import apply
from shared.store import CachedObject, DiskStore, FileBody, MemoryStore, TieredStore
from tests.helpers import edge_settings
from tests.helpers import stored_object as obj

ONE = obj("/k", 1000).size  # charged size of a 1000-byte object


def filled(policy: str, n: int, capacity: int) -> tuple[MemoryStore, list[CachedObject]]:
    """A store of ``capacity`` with ``/k0`` … ``/k{n-1}`` put in order (each looked up
    first, as a miss is), and a list of every variant it released."""
    released: list[CachedObject] = []
    store = MemoryStore(capacity, policy, on_release=released.extend)
    for i in range(n):
        store.lookup(f"/k{i}")
        assert store.put(obj(f"/k{i}", 1000))
    return store, released


def keys(store: MemoryStore | DiskStore) -> set[str]:
    return {o.key for o in store}


def check(store: MemoryStore) -> None:
    """The budget invariant and the bookkeeping agree with what is stored."""
    assert store.bytes <= store.capacity
    assert store.bytes == sum(o.size for o in store)


@pytest.mark.parametrize("policy", ["lru", "tinylfu", "adaptive"])
def test_resize_growing_raises_the_cap_and_evicts_nothing(policy: str) -> None:
    """A larger budget keeps every entry and then takes more without evicting."""
    store, released = filled(policy, 10, 20 * ONE)
    before = keys(store)
    store.resize(40 * ONE)
    assert keys(store) == before and not released and store.capacity == 40 * ONE
    for i in range(10, 30):
        store.lookup(f"/k{i}")
        store.put(obj(f"/k{i}", 1000))
    assert len(store) == 30 and store.evictions == 0
    check(store)


def test_resize_lru_shrink_evicts_the_least_recently_used() -> None:
    """Shrinking an lru store drops its oldest entries (a lookup made /k0 recent)."""
    store, released = filled("lru", 10, 10 * ONE)
    store.lookup("/k0")
    store.resize(4 * ONE)
    assert keys(store) == {"/k0", "/k7", "/k8", "/k9"}
    assert sorted(o.key for o in released) == [f"/k{i}" for i in range(1, 7)]
    assert store.evictions == 6
    check(store)


def test_resize_tinylfu_shrink_evicts_probation_before_protected() -> None:
    """Main shrinks from its LRU end, probation first: entries hit since admission
    (protected) outlive newer ones never hit again."""
    store, released = filled("tinylfu", 40, 100 * ONE)
    for i in range(5):  # a second use protects them
        store.lookup(f"/k{i}")
    store.resize(10 * ONE)
    kept = keys(store)
    assert {f"/k{i}" for i in range(5)} <= kept
    assert len(kept) <= 10 and len(released) == 40 - len(kept)
    assert {o.key for o in released}.isdisjoint(kept)
    check(store)


def test_resize_tinylfu_shrink_folds_the_sketch_keeping_counts() -> None:
    """A much smaller store folds its sketch; what it learned about the popular keys
    is kept (no estimate drops), so they still win admission afterwards."""
    store, _ = filled("tinylfu", 400, 1000 * ONE)
    sketch = store._sketch
    assert sketch is not None and sketch.expected_objects >= 400
    for _ in range(5):
        for i in range(3):
            store.lookup(f"/k{i}")
    before = {f"/k{i}": sketch.estimate(f"/k{i}") for i in range(3)}
    store.resize(20 * ONE)
    assert sketch.expected_objects == 64 and sketch.resets == 0  # sized for 2 x 10 entries
    assert all(sketch.estimate(k) >= n >= 5 for k, n in before.items())
    assert {"/k0", "/k1", "/k2"} <= keys(store)
    check(store)


@pytest.mark.parametrize(
    ("old", "new"),
    [("lru", "tinylfu"), ("tinylfu", "lru"), ("tinylfu", "adaptive"), ("adaptive", "lru")],
)
def test_resize_policy_switch_keeps_every_entry(old: str, new: str) -> None:
    """Switching policy at the same budget keeps the stored objects; the new policy's
    bookkeeping is built from them (a fresh sketch under tinylfu, none under lru)."""
    store, released = filled(old, 8, 20 * ONE)
    before = keys(store)
    store.resize(store.capacity, new)
    assert store.policy == new and keys(store) == before and not released
    assert (store._sketch is None) == (new == "lru")
    check(store)
    store.lookup("/new")
    assert store.put(obj("/new", 1000))  # and it goes on working
    check(store)


def test_resize_policy_switch_keeps_recency_order() -> None:
    """lru → tinylfu then a shrink: the oldest entries go first, as under lru."""
    store, _ = filled("lru", 10, 10 * ONE)
    store.lookup("/k0")  # now the most recent
    store.resize(store.capacity, "tinylfu")
    store.resize(4 * ONE)
    assert keys(store) == {"/k0", "/k8", "/k9"}  # main is 99 % of 4: three fit
    check(store)


def test_resize_tinylfu_to_lru_orders_probation_protected_window() -> None:
    """tinylfu → lru: main's LRU end (probation) is oldest, the window newest."""
    store, _ = filled("tinylfu", 30, 100 * ONE)
    store.lookup("/k3")  # protected now
    store.resize(store.capacity, "lru")
    store.resize(2 * ONE)
    assert keys(store) == {"/k3", "/k29"}  # the window's (1 % of 100) and protected's
    store.resize(100 * ONE)
    assert keys(store) == {"/k3", "/k29"}


def test_resize_rejects_an_unknown_policy() -> None:
    store, _ = filled("lru", 3, 10 * ONE)
    with pytest.raises(ValueError, match="policy"):
        store.resize(10 * ONE, "lfu")
    assert store.policy == "lru" and len(store) == 3


@pytest.mark.parametrize("policy", ["lru", "tinylfu", "adaptive"])
def test_resize_budget_holds_under_churn(policy: str) -> None:
    """Random puts, lookups, removes, resizes and policy switches: the budget always
    holds and every variant that leaves is released exactly once."""
    rng = random.Random(11)
    released: list[CachedObject] = []
    store = MemoryStore(30 * ONE, policy, on_release=released.extend)
    put: list[CachedObject] = []
    for step in range(3000):
        key = f"/k{int(rng.paretovariate(1.2)) % 200}"
        roll = rng.random()
        if roll < 0.01:
            store.resize(rng.randint(0, 60) * ONE, rng.choice(["lru", "tinylfu"]))
        elif roll < 0.03:
            store.remove(key)
        else:
            store.lookup(key)
            o = obj(key, rng.randint(100, 3000))
            if store.put(o):
                put.append(o)
        check(store)
        assert len(store._index) == len(store), step
    left = {id(o) for o in released}
    assert len(left) == len(released)  # once each
    assert left | {id(o) for o in store} == {id(o) for o in put}


# -- disk: eviction unlinks, an open body reads whole ------------------------------


async def test_diskstore_shrink_unlinks_evicted_files_and_an_open_body_reads_whole(
    tmp_path: Path,
) -> None:
    """A body opened for sendfile, then evicted by a shrink (its files unlinked), reads
    to its last byte through the open file: POSIX keeps an unlinked open file."""
    store = DiskStore(tmp_path / "cache", 1 << 22, "lru")
    await store.open()
    body = bytes(range(256)) * 4096  # 1 MiB
    big = dataclasses.replace(obj("/big", 0), body=body)
    for o in (big, obj("/small", 1000)):  # one at a time: /big is the oldest
        assert store.put(o)
        await store.flush()
    [stored] = store.peek("/big")
    path = store.body_path(stored)
    opened = await store.open_body(stored)
    assert opened is not None
    fobj, length = opened
    with fobj:
        head = fobj.read(4096)
        store.resize(2 * ONE)  # /big goes (the oldest), /small stays
        await store.flush()
        assert not path.exists() and keys(store) == {"/small"}
        rest = fobj.read()
    assert head + rest == body and length == len(body)
    assert store.bytes <= store.capacity == 2 * ONE
    assert await store.open_body(stored) is None  # a lookup that lost the race: a miss
    assert len([p for p in (tmp_path / "cache").rglob("*") if p.is_file()]) == 2
    await store.close()


async def test_tieredstore_reconfigure_resizes_both_tiers(tmp_path: Path) -> None:
    """Each tier takes its own budget and the new policy; both stay within them."""
    memory = MemoryStore(10 * ONE, "tinylfu")
    disk = DiskStore(tmp_path / "cache", 20 * ONE, "tinylfu")
    store = TieredStore(memory, disk, spawn=lambda coro, name: coro.close(), promote_limit=1 << 20)
    await store.open()
    for i in range(15):
        store.lookup(f"/k{i}")
        assert store.put(obj(f"/k{i}", 1000))
    await disk.flush()
    store.reconfigure(memory=3 * ONE, disk=5 * ONE, policy="lru")
    await disk.flush()
    assert memory.capacity == 3 * ONE and disk.capacity == 5 * ONE
    assert memory.policy == disk.policy == "lru"
    assert memory.bytes <= 3 * ONE and disk.bytes <= 5 * ONE and len(disk) >= 1
    files = [p for p in disk.root.rglob("*.body")]
    assert len(files) == len(disk)
    assert all(isinstance(o.body, FileBody) for o in disk)
    await store.close()


# -- reload.apply ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "flags"),
    [
        ({"cache_bytes": 4 * ONE}, {"--cache-bytes", "--max-object-bytes"}),
        ({"admission": "lru"}, {"--admission"}),
        ({"max_object_bytes": 2 * ONE}, {"--max-object-bytes"}),
        ({"disk_bytes": 1 << 20}, {"--disk-bytes", "--disk-max-object-bytes"}),
    ],
)
def test_apply_store_settings_live(changes: dict[str, Any], flags: set[str]) -> None:
    """Store budgets, admission and the largest object are live: the node's store and
    fetcher take them, and ``node.settings`` says so (a smaller budget clamps its
    tier's largest object too)."""
    n = Node(edge_settings("edge-1", "http://parent:8080", cache_bytes=40 * ONE))
    for i in range(30):
        n.store.lookup(f"/k{i}")
        n.store.put(obj(f"/k{i}", 1000))
    new = dataclasses.replace(n.settings, **changes)
    assert set(apply(n, new)) == flags
    s = n.settings
    assert all(getattr(s, k) == v for k, v in changes.items())
    assert isinstance(n.store, MemoryStore)
    assert n.store.capacity == s.cache_bytes and n.store.policy == s.admission
    assert n.fetcher.max_object_bytes == s.max_object_bytes <= s.cache_bytes
    assert n.store.bytes <= n.store.capacity and len(n.store) > 0


def test_apply_disk_path_still_needs_a_restart(tmp_path: Path) -> None:
    """The disk tier's place is not live (a new store): named, and kept."""
    n = Node(edge_settings("edge-1", "http://parent:8080"))
    new = dataclasses.replace(n.settings, disk_path=str(tmp_path), cache_bytes=1 << 20)
    assert set(apply(n, new)) == {
        "--disk-path (needs a restart)",
        "--cache-bytes",
        "--max-object-bytes",
    }
    assert n.settings.disk_path == "" and n.store.disk is None and n.store.capacity == 1 << 20


async def test_apply_tiered_node_resizes_disk_and_promote_limit(tmp_path: Path) -> None:
    """With a disk tier both budgets move; promotion follows ``max_object_bytes``, the
    disk tier its own ``disk_max_object_bytes``, a fill the larger of the two."""
    n = Node(edge_settings("edge-1", "http://parent:8080", disk_path=str(tmp_path / "d")))
    assert isinstance(n.store, TieredStore)
    new = dataclasses.replace(n.settings, cache_bytes=8 << 20, disk_bytes=64 << 20, admission="lru")
    apply(n, new)
    assert n.store.memory.capacity == 8 << 20 and n.store.disk.capacity == 64 << 20
    assert n.store.promote_limit == 8 << 20
    assert n.store.disk_limit == n.settings.disk_max_object_bytes == 32 << 20
    assert n.fetcher.max_object_bytes == n.settings.stored_object_bytes == 32 << 20
    assert n.store.disk.policy == "lru"
    await n.store.close()
