"""DiskStore: durable writes, budget and policy, restart, corruption, write errors."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from shared.store import CachedObject, DiskStore, FileBody, MemoryStore, diskfiles
from tests.helpers import stored_object as obj

BODY_1100 = 842  # obj(): 2 bytes of headers + 256 of bookkeeping -> size 1100


def files(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.is_file())


async def stored(tmp_path: Path, *objs: CachedObject, **kw) -> DiskStore:
    store = DiskStore(tmp_path / "cache", **{"capacity": 1 << 20, **kw})
    await store.open()
    for o in objs:
        assert store.put(o)
    await store.flush()
    return store


async def read(store: DiskStore, o: CachedObject) -> bytes | None:
    assert isinstance(o.body, FileBody)
    return await store.read_body(o)


# -- sync ----------------------------------------------------------------------


def test_diskobject_is_charged_its_file_length():
    """An object whose body is a file is charged like the same object in memory."""
    o = obj("/a", 500)
    d = o.with_body(FileBody("/x", 500, 0))
    assert d.size == o.size and d.length == 500 and isinstance(d.body, FileBody)


def test_diskstore_rejects_unknown_policy_and_verify(tmp_path):
    with pytest.raises(ValueError, match="policy"):
        DiskStore(tmp_path, 1000, policy="lfu")
    with pytest.raises(ValueError, match="verify"):
        DiskStore(tmp_path, 1000, verify="never")


# -- writes, budget, policy ------------------------------------------------------------


async def test_diskstore_put_is_indexed_only_once_durable(tmp_path):
    """Nothing is visible until the write is done; then the body reads back from a file
    named by a hash (never the URL), fanned out in two levels, with no temp files left."""
    store = DiskStore(tmp_path / "cache", 1 << 20, policy="lru")
    await store.open()
    assert store.put(obj("/title/chunk-1.m4s?x=1", 5000, fill=7))
    assert not store.peek("/title/chunk-1.m4s?x=1") and len(store) == 0
    await store.flush()
    [o] = store.lookup("/title/chunk-1.m4s?x=1")
    assert isinstance(o.body, FileBody)
    assert o.length == 5000 and store.body_path(o).stat().st_size == 5000
    assert await read(store, o) == bytes([7]) * 5000
    assert o.headers["X"] == "y" and o.age(21.0) == 13.0
    path = store.body_path(o).relative_to(tmp_path / "cache")
    assert len(path.parts) == 3 and path.parts[2].startswith(path.parts[0] + path.parts[1])
    assert "chunk" not in str(path)
    assert [n.rsplit(".", 1)[1] for n in files(tmp_path)] == ["body", "meta"]
    assert store.bytes == o.size and "objects=1" in repr(store)
    await store.close()


@pytest.mark.parametrize("policy", ["lru", "tinylfu", "adaptive"])
async def test_diskstore_budget_holds_and_eviction_unlinks_files(tmp_path, policy):
    """Past the budget entries are evicted (lru) or refused (tinylfu) and their files go."""
    store = await stored(tmp_path, capacity=20_000, policy=policy)
    for i in range(40):
        store.lookup(f"/k{i}")
        assert store.put(obj(f"/k{i}", 1500))
        await store.flush()
        assert store.bytes <= store.capacity
        assert store.bytes == sum(o.size for o in store)
        assert len(files(tmp_path)) == 2 * len(store)
    assert store.evictions > 0 and len(store) < 40
    if policy == "tinylfu":
        assert store.admitted > 0 and store.rejected > 0
    await store.close()


async def test_diskstore_refuses_object_larger_than_budget(tmp_path):
    """An object over main's share is refused at once: nothing is written."""
    store = await stored(tmp_path, capacity=10_000)
    assert not store.put(obj("/big", 20_000))
    await store.flush()
    assert files(tmp_path) == [] and len(store) == 0


async def test_diskstore_tinylfu_popular_object_beats_one_hit_wonders(tmp_path):
    """The policy is MemoryStore's: an object asked for often survives a flood of
    objects seen once; the refused ones leave no files."""
    store = await stored(tmp_path, capacity=10_000)  # window 100 bytes: offered at once
    for i in range(9):  # main is full: 9 of 1100 bytes
        for _ in range(3):
            store.lookup(f"/pop{i}")
        store.put(obj(f"/pop{i}", BODY_1100))
    await store.flush()  # entries are indexed in the order their writes complete
    for i in range(30):
        store.lookup(f"/once{i}")
        store.put(obj(f"/once{i}", BODY_1100))
    await store.flush()
    assert all(store.peek(f"/pop{i}") for i in range(9))
    assert (store.admitted, store.rejected) == (9, 30)
    assert len(files(tmp_path)) == 18
    await store.close()


async def test_diskstore_variants_replace_and_remove(tmp_path):
    """A variant replaces the one with the same Vary key only; remove of one variant,
    of all, and clear unlink exactly their files."""
    names = ("accept-encoding",)
    gz, br = ("accept-encoding: gzip",), ("accept-encoding: br",)
    store = await stored(tmp_path, obj("/v", 10, gz, names), obj("/v", 20, br, names), obj("/w", 5))
    assert store.put(obj("/v", 30, gz, names))
    await store.flush()
    assert sorted(o.length for o in store.lookup("/v")) == [20, 30]
    assert len(files(tmp_path)) == 6
    assert store.remove("/v", br) == 1
    await store.flush()
    assert [o.length for o in store.peek("/v")] == [30] and len(files(tmp_path)) == 4
    assert store.remove("/v") == 1
    store.clear()
    await store.flush()
    assert len(store) == 0 and store.bytes == 0 and files(tmp_path) == []


async def test_diskstore_remove_during_write_discards_it(tmp_path):
    """A purge while the object is still being written wins: it is never indexed."""
    store = await stored(tmp_path)
    store.put(obj("/a", 1000))
    store.put(obj("/b", 1000))
    assert store.remove("/a") == 0  # nothing indexed yet
    await store.flush()
    assert not store.peek("/a") and store.peek("/b")
    assert len(files(tmp_path)) == 2


async def test_diskstore_revalidated_object_reuses_its_body_file(tmp_path):
    """``put(new, same_body_as=old)`` stores new headers over the same bytes (a hard link)
    and drops the old version's files."""
    store = await stored(tmp_path, obj("/a", 3000, fill=9, ETag='"1"'))
    [old] = store.lookup("/a")
    assert isinstance(old.body, FileBody)
    fresh = obj("/a", 0, ETag='"1"', Date="Mon, 01 Jan 2024 00:00:00 GMT")
    assert store.put(fresh, same_body_as=old)
    await store.flush()
    [new] = store.lookup("/a")
    assert new is not old and new.headers["Date"].startswith("Mon")
    assert await read(store, new) == bytes([9]) * 3000
    assert len(files(tmp_path)) == 2


async def test_diskstore_pending_writes_are_bounded(tmp_path):
    """Bytes waiting to be written are capped: beyond ``max_pending`` puts are skipped."""
    store = await stored(tmp_path, max_pending=10_000)
    assert store.put(obj("/a", 8000))
    assert not store.put(obj("/b", 8000))
    assert store.writes_skipped == 1
    await store.flush()
    assert store.put(obj("/b", 8000))
    await store.flush()
    assert len(store) == 2


# -- restart -------------------------------------------------------------------------


async def test_diskstore_restart_finds_objects_with_headers_times_and_vary(tmp_path):
    """A second store on the same root serves what the first wrote."""
    names = ("accept-encoding",)
    a = obj("/a", 4000, fill=1, ETag='"a"')
    v = obj("/v", 100, ("accept-encoding: gzip",), names, fill=2)
    first = await stored(tmp_path, a, v)
    await first.close()

    second = await stored(tmp_path)
    assert second.loaded == 2 and len(second) == 2
    [o] = second.lookup("/a")
    assert o.headers["ETag"] == '"a"' and o.prepared["X"] == "y"
    assert (o.status, o.request_time, o.response_time, o.lifetime, o.initial_age) == (
        200,
        10.0,
        11.0,
        60.0,
        3.0,
    )
    assert await read(second, o) == bytes([1]) * 4000
    [w] = second.lookup("/v")
    assert (w.vary_names, w.vary_key) == (names, ("accept-encoding: gzip",))
    assert await read(second, w) == bytes([2]) * 100
    assert second.bytes == first.bytes
    await second.close()


async def test_diskstore_restart_keeps_the_targeted_field_view(tmp_path):
    """The view of the headers made at store time from a targeted field (RFC 9213
    §2.2: CDN-Cache-Control over Cache-Control) comes back after a restart, so
    stale rules still read the field that made them; a plain object has none."""
    policy = CIMultiDictProxy(CIMultiDict({"Cache-Control": "max-age=60, must-revalidate"}))
    headers = CIMultiDictProxy(CIMultiDict({"Cache-Control": "max-age=0"}))
    t = dataclasses.replace(obj("/t", 100), headers=headers, policy_headers=policy)
    first = await stored(tmp_path, t, obj("/p", 100))
    await first.close()
    second = await stored(tmp_path)
    [got] = second.lookup("/t")
    assert got.policy == policy and got.headers["Cache-Control"] == "max-age=0"
    [plain] = second.lookup("/p")
    assert plain.policy is plain.headers
    await second.close()


async def test_diskstore_open_keeps_the_newest_objects_within_a_smaller_budget(tmp_path):
    """Reopened with less room, the newest objects that fit are kept; the rest unlinked."""
    first = await stored(tmp_path, policy="lru")
    for i in range(10):
        first.put(obj(f"/k{i}", 710))
        await first.flush()  # one at a time: written in order
    second = await stored(tmp_path, capacity=5000, policy="lru")
    assert sorted(o.key for o in second) == [f"/k{i}" for i in range(5, 10)]
    assert second.evictions == 5 and len(files(tmp_path)) == 10
    assert second.bytes <= 5000


async def test_diskstore_open_removes_leftovers_of_interrupted_writes(tmp_path):
    """Temp files and a body without metadata (crash before the metadata) are deleted."""
    store = await stored(tmp_path, obj("/a", 100))
    [o] = store.peek("/a")
    assert isinstance(o.body, FileBody)
    d = Path(o.body.stem).parent
    for name in ("f00.1.body.tmp", "f00.1.meta.tmp", "f00.2.body"):
        (d / name).write_bytes(b"partial")
    again = await stored(tmp_path)
    assert again.cleaned == 3 and again.loaded == 1
    assert [n.rsplit(".", 1)[1] for n in files(tmp_path)] == ["body", "meta"]


# -- corruption ----------------------------------------------------------------------


def _damage(o: CachedObject, how: str) -> None:
    assert isinstance(o.body, FileBody)
    body, meta = Path(o.body.stem + ".body"), Path(o.body.stem + ".meta")
    if how == "truncated":
        body.write_bytes(body.read_bytes()[:-1])
    elif how == "flipped":
        data = bytearray(body.read_bytes())
        data[len(data) // 2] ^= 0xFF
        body.write_bytes(bytes(data))
    elif how == "missing":
        body.unlink()
    elif how == "garbage-meta":
        meta.write_bytes(b'{"format": 1, "key": ')
    elif how == "wrong-meta-types":
        m = json.loads(meta.read_bytes())
        m["length"] = "4000"
        meta.write_text(json.dumps(m))


@pytest.mark.parametrize(
    ("how", "caught_at_open"),
    [
        ("truncated", True),
        ("missing", True),
        ("garbage-meta", True),
        ("wrong-meta-types", True),
        ("flipped", False),  # same length: caught by the checksum at first use
    ],
)
async def test_diskstore_corrupt_entry_is_dropped_never_served(tmp_path, how, caught_at_open):
    """Across a restart, a damaged entry is dropped with its files and counted."""
    first = await stored(tmp_path, obj("/a", 4000), obj("/b", 10))
    [o] = first.peek("/a")
    assert isinstance(o.body, FileBody)
    await first.close()
    _damage(o, how)

    second = await stored(tmp_path)
    if not caught_at_open:
        [o] = second.lookup("/a")
        assert isinstance(o.body, FileBody)
        assert await second.open_body(o) is None
        await second.flush()
    assert second.corrupt_dropped == 1 and not second.peek("/a")
    assert second.peek("/b") and len(files(tmp_path)) == 2


@pytest.mark.parametrize("how", ["truncated", "missing", "flipped"])
async def test_diskstore_damage_while_running_is_caught_on_use(tmp_path, how, caplog):
    """Damage after the write: length (every use) or checksum (first use) drops it."""
    store = await stored(tmp_path, obj("/a", 4000))
    [o] = store.lookup("/a")
    assert isinstance(o.body, FileBody)
    _damage(o, how)
    with caplog.at_level(logging.WARNING, logger="shared.store.disk"):
        assert await store.open_body(o) is None
    await store.flush()
    assert store.corrupt_dropped == 1 and not store.peek("/a") and files(tmp_path) == []
    assert "dropping /a" in caplog.text
    assert await store.open_body(o) is None and store.corrupt_dropped == 1  # gone: a miss


@pytest.mark.parametrize(("verify", "caught"), [("once", False), ("always", True)])
async def test_diskstore_checksum_is_verified_once_unless_always(tmp_path, verify, caught):
    """Same-length damage after the first use is caught only with ``verify="always"``."""
    store = await stored(tmp_path, obj("/a", 4000), verify=verify)
    [o] = store.lookup("/a")
    assert await read(store, o) == b"a" * 4000
    assert isinstance(o.body, FileBody)
    _damage(o, "flipped")
    assert (await read(store, o) is None) is caught
    assert store.corrupt_dropped == caught


# -- write errors ----------------------------------------------------------------------


async def test_diskstore_unwritable_root_degrades_to_pass_through(tmp_path, caplog):
    """Root under a regular file (ENOTDIR, which root cannot override either): open and
    puts never raise, nothing is stored, each failure is counted, one warning per kind."""
    (tmp_path / "file").write_bytes(b"")
    store = DiskStore(tmp_path / "file" / "cache", 1 << 20)
    with caplog.at_level(logging.WARNING, logger="shared.store.disk"):
        await store.open()
        for i in range(3):
            assert store.put(obj(f"/k{i}", 100))
        await store.flush()
    assert len(store) == 0 and store.lookup("/k0") == []
    assert store.write_errors == 4 and store.write_errors_by_kind == {"ENOTDIR": 4}
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "ENOTDIR" in caplog.text and "pass through" in caplog.text


def test_diskstore_failed_write_leaves_no_files(tmp_path):
    """A write that fails after its body is in place (the metadata temp name is taken
    by a directory) removes the body and every temp file: no half object remains."""
    stem = str(tmp_path / "ab" / "cd" / "abcd.1")
    Path(stem + ".meta.tmp").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        diskfiles.write_files(stem, b"x" * 100, None, diskfiles.metadata(obj("/a", 100), 100, None))
    assert sorted(p.name for p in (tmp_path / "ab" / "cd").iterdir()) == ["abcd.1.meta.tmp"]


def test_memorystore_release_hook_sees_every_variant_that_leaves():
    """The hook DiskStore relies on: evicted, refused, replaced, removed, cleared."""
    released: list[str] = []
    store = MemoryStore(
        10_000,
        "tinylfu",
        on_release=lambda vs: released.extend(f"{v.key}:{len(v.body)}" for v in vs),
    )
    for i in range(9):
        store.lookup(f"a{i}")
        store.put(obj(f"a{i}", BODY_1100))
    store.put(obj("once", 710))  # refused when it leaves the window
    store.put(obj("a0", 700))  # replaces a0:710
    store.remove("a1")
    store.clear()
    assert released[:3] == ["once:710", "a0:842", "a1:842"]
    assert sorted(released[3:]) == sorted(["a0:700", *(f"a{i}:842" for i in range(2, 9))])
