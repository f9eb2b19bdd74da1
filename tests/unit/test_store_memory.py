"""MemoryStore: byte budget, LRU eviction, variants."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

from shared.store import CachedObject, MemoryStore


def obj(key: str, size: int, vary_key: tuple[str, ...] = (), names: tuple[str, ...] = ()):
    headers = CIMultiDictProxy(
        CIMultiDict({"Cache-Status": "up; hit", "Via": "1.1 up", "Age": "3", "X": "y"})
    )
    return CachedObject(
        key=key,
        vary_names=names,
        vary_key=vary_key,
        status=200,
        headers=headers,
        body=b"x" * size,
        request_time=0.0,
        response_time=0.0,
        lifetime=60.0,
        initial_age=3.0,
        must_validate=False,
    )


def test_memorystore_never_exceeds_budget_and_evicts_lru():
    """Inserting past the budget evicts the least recently used entries first."""
    store = MemoryStore(capacity=3000)
    for key in ("a", "b"):
        assert store.put(obj(key, 1000))
    store.lookup("a")  # touch a: b is now least recently used
    assert store.put(obj("c", 1000))
    assert store.bytes <= 3000
    assert [k for k in ("a", "b", "c") if store.lookup(k)] == ["a", "c"]
    assert store.evictions == 1


def test_memorystore_refuses_object_larger_than_budget():
    """An object over the whole budget is refused, evicting nothing."""
    store = MemoryStore(capacity=2000)
    store.put(obj("a", 500))
    assert not store.put(obj("big", 5000))
    assert store.lookup("a") and not store.lookup("big")


def test_memorystore_variants_replace_same_vary_key_only():
    """A variant replaces the one with the same Vary key and keeps the others."""
    store = MemoryStore(capacity=100_000)
    names = ("accept-encoding",)
    store.put(obj("v", 10, ("accept-encoding: gzip",), names))
    store.put(obj("v", 20, ("accept-encoding: br",), names))
    store.put(obj("v", 30, ("accept-encoding: gzip",), names))
    sizes = sorted(len(v.body) for v in store.lookup("v"))
    assert sizes == [20, 30] and len(store) == 2
    assert store.remove("v", ("accept-encoding: br",)) == 1
    assert [len(v.body) for v in store.lookup("v")] == [30]
    assert store.remove("v") == 1 and len(store) == 0


def test_cachedobject_prepares_serving_headers_once():
    """Per-response fields are removed from the prepared headers; age and ttl advance."""
    o = obj("a", 1)
    assert "Age" not in o.prepared and "Cache-Status" not in o.prepared
    assert o.prepared["X"] == "y"
    assert o.upstream_status == "up; hit" and o.upstream_via == "1.1 up"
    assert o.age(10.0) == 13.0 and o.ttl(10.0) == 47.0


def test_memorystore_clear_and_repr():
    store = MemoryStore(capacity=10_000)
    store.put(obj("a", 10))
    assert "objects=1" in repr(store)
    store.clear()
    assert len(store) == 0 and store.bytes == 0 and list(store) == []
