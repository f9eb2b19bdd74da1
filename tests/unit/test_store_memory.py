"""MemoryStore: byte budget, LRU eviction, variants, TinyLFU admission."""

from __future__ import annotations

import random
from collections import OrderedDict

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from shared.store import CachedObject, MemoryStore


def obj(
    key: str,
    size: int,
    vary_key: tuple[str, ...] = (),
    names: tuple[str, ...] = (),
    body: bytes | None = None,
):
    """A stored 200 with a ``size``-byte body (``body``, shared, when given)."""
    headers = CIMultiDictProxy(
        CIMultiDict({"Cache-Status": "up; hit", "Via": "1.1 up", "Age": "3", "X": "y"})
    )
    return CachedObject(
        key=key,
        vary_names=names,
        vary_key=vary_key,
        status=200,
        headers=headers,
        body=b"x" * size if body is None else body,
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


@pytest.mark.parametrize("policy", ["lru", "tinylfu", "adaptive"])
def test_memorystore_refuses_object_larger_than_budget(policy):
    """An object over the whole budget is refused, evicting nothing."""
    store = MemoryStore(capacity=2000, policy=policy)
    store.put(obj("a", 500))
    assert not store.put(obj("big", 5000))
    assert store.lookup("a") and not store.lookup("big")


@pytest.mark.parametrize("policy", ["lru", "tinylfu", "adaptive"])
def test_memorystore_variants_replace_same_vary_key_only(policy):
    """A variant replaces the one with the same Vary key and keeps the others."""
    store = MemoryStore(capacity=100_000, policy=policy)
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


@pytest.mark.parametrize("policy", ["lru", "tinylfu", "adaptive"])
def test_memorystore_clear_and_repr(policy):
    """``clear`` empties the store; the repr names the policy and the contents."""
    store = MemoryStore(capacity=10_000, policy=policy)
    store.put(obj("a", 10))
    assert "objects=1" in repr(store) and f"policy={policy}" in repr(store)
    store.clear()
    assert len(store) == 0 and store.bytes == 0 and list(store) == []


# -- policies: lru and tinylfu --------------------------------------------------------

BODY_1000 = 710  # obj(): 34 bytes of headers + 256 of bookkeeping -> size 1000


def request(store: MemoryStore, key: str, size: int = BODY_1000) -> bool:
    """What the proxy does per client GET: look up, and store on a miss. True on a hit."""
    if store.lookup(key):
        return True
    store.put(obj(key, size))
    return False


def test_obj_helper_charges_1000_bytes():
    assert obj("k", BODY_1000).size == 1000


@pytest.mark.parametrize("policy", ["lru", "tinylfu", "adaptive"])
def test_memorystore_budget_holds_under_random_churn(policy):
    """Seeded random puts, variants, lookups and removes never exceed the budget, and
    the byte count always equals what the store holds."""
    rng = random.Random(7)
    store = MemoryStore(capacity=50_000, policy=policy)
    names = ("accept-encoding",)
    for step in range(5000):
        key = f"k{int(rng.paretovariate(0.7)) % 300}"
        op = rng.random()
        if op < 0.6:
            request(store, key, rng.choice([1, 500, 2000, 9000, 30_000]))
        elif op < 0.8:
            enc = rng.choice(["gzip", "br"])
            store.put(obj(key, rng.randrange(1, 5000), (f"accept-encoding: {enc}",), names))
        elif op < 0.9:
            store.remove(key, rng.choice([None, ("accept-encoding: gzip",)]))
        elif op < 0.999:
            store.put(obj(key, 60_000))  # over budget: refused
        else:
            store.clear()
        assert store.bytes <= store.capacity, step
        assert store.bytes == sum(o.size for o in store), step
        assert len(store) == len(list(store)), step
    assert store.evictions > 0


@pytest.mark.parametrize(
    ("policy", "head_survives"), [("tinylfu", True), ("adaptive", True), ("lru", False)]
)
def test_memorystore_one_hit_wonder_flood_cannot_evict_popular_head(policy, head_survives):
    """A popular head asked for every round survives thousands of keys seen once each
    under tinylfu; plain LRU loses it to every flood larger than the cache."""
    store = MemoryStore(capacity=100_000, policy=policy)  # ~100 objects
    head = [f"head-{i}" for i in range(20)]
    flood = (f"once-{i}" for i in range(6000))
    late_hits = late = 0
    for rnd in range(40):
        for _ in range(150):  # more one-hit wonders per round than the cache holds
            request(store, next(flood))
        for key in head:
            hit = request(store, key)
            if rnd >= 30:
                late, late_hits = late + 1, late_hits + hit
    assert store.bytes <= store.capacity
    if head_survives:
        assert late_hits == late
        assert store.rejected > 5 * store.admitted  # most of the flood never enters main
    else:
        assert late_hits == 0


def test_memorystore_fresh_store_keeps_its_popular_head_through_a_flood():
    """Issue 9's numbers: on a fresh edge-sized store (256 MiB, the default), an object
    requested 31 times survives a flood of 50 000 one-hit keys that fills main, though
    the sketch grows many times under it: growing keeps what it learned."""
    store = MemoryStore(capacity=256 * 2**20, policy="tinylfu")
    body = b"x" * 8 * 1024  # one body shared by every entry: the store charges 8 482 each
    assert "width=256 " in repr(store)

    def request(key: str) -> bool:  # the node: look up, fetch and store on a miss
        if store.lookup(key):
            return True
        assert store.put(obj(key, len(body), body=body))
        return False

    assert [request("hot") for _ in range(31)] == [False] + [True] * 30
    for i in range(50_000):
        request(f"once-{i}")
    assert store.peek("hot"), "the popular head was evicted by one-hit wonders"
    assert store.rejected > 15_000  # main filled: the rest of the flood met "hot" as victim
    assert "width=262144 " in repr(store)  # grown while the flood filled the store...
    assert "resets=0" in repr(store)  # ...within the first sample: no halving either
    assert request("hot")
    assert store.bytes <= store.capacity


def test_memorystore_window_lets_a_brand_new_object_in():
    """With main full of popular objects, a new object is served from the window at once;
    one asked for by a crowd is admitted when it leaves the window."""
    store = MemoryStore(capacity=200_000, policy="tinylfu")  # window 2000: two objects
    for _ in range(4):
        for i in range(198):  # main: 198 000 bytes
            request(store, f"pop-{i}")
    assert all(store.peek(f"pop-{i}") for i in range(198))
    assert not request(store, "live-1")  # seen once, stored in the window...
    assert request(store, "live-1")  # ...and served from it
    for _ in range(20):  # a crowd asks for the next live segment while it is fetched
        store.lookup("live-2")
    store.put(obj("live-2", BODY_1000))
    for i in range(5):  # newer objects push both out of the window
        request(store, f"new-{i}")
    assert store.peek("live-2"), "a crowd's object beats the popular victims"
    assert not store.peek("live-1"), "a twice-seen object loses to more popular ones"
    assert store.bytes <= store.capacity


def test_memorystore_admission_counters_and_size_aware_victims():
    """Each candidate out of the window is admitted or rejected; a big one must beat every
    victim it would displace, and evicting them is counted."""
    store = MemoryStore(capacity=10_000, policy="tinylfu")  # window 100: offered at once
    for i, seen in enumerate([1, 1, 3, 1, 1, 1, 1, 1, 1]):  # main holds 9 of 1000
        for _ in range(seen):
            store.lookup(f"a{i}")
        store.put(obj(f"a{i}", BODY_1000))
    assert (store.admitted, store.rejected, store.evictions) == (9, 0, 0)

    rows = [
        # key, lookups, body, (admitted, rejected, evictions) after, keys gone
        ("tie", 1, BODY_1000, (9, 1, 1), {"tie"}),  # 1 vs a0's 1: the incumbent stays
        ("big", 2, 2710, (9, 2, 2), {"big"}),  # needs a0, a1, a2: a2 was seen 3 times
        ("bigger", 4, 2710, (10, 2, 5), {"a0", "a1", "a2"}),  # beats all three
    ]
    for key, lookups, body, counters, gone in rows:
        for _ in range(lookups):
            store.lookup(key)
        assert store.put(obj(key, body))  # fits the budget: accepted into the window
        assert (store.admitted, store.rejected, store.evictions) == counters, key
        assert {k for k in gone if not store.peek(k)} == gone, key
        assert store.bytes <= store.capacity
    assert sorted(o.key for o in store) == ["a3", "a4", "a5", "a6", "a7", "a8", "bigger"]


def test_memorystore_hit_in_probation_protects_the_entry():
    """Main is an SLRU: an entry hit since admission is evicted only after every entry on
    probation, even ones admitted after it."""
    store = MemoryStore(capacity=10_000, policy="tinylfu")
    for i in range(9):
        request(store, f"a{i}")
    assert request(store, "a0")  # hit on probation: protected
    for i in range(1, 10):  # seen 3 times: each beats a1..a8 (1); n9 then meets n1
        for _ in range(3):
            store.lookup(f"n{i}")
        store.put(obj(f"n{i}", BODY_1000))
    assert store.peek("a0"), "plain LRU would have evicted a0 (seen twice) for n9"
    assert store.admitted + store.rejected == 9 + 9


def test_memorystore_big_candidate_takes_victims_from_protected_too():
    """When probation is too small, victims continue from protected's LRU end."""
    store = MemoryStore(capacity=10_000, policy="tinylfu")  # protected: 8 910 bytes
    for i in range(9):
        request(store, f"a{i}")
    for i in range(9):
        assert request(store, f"a{i}")  # all protected; a0 overflows back to probation
    for _ in range(5):
        store.lookup("big")
    store.put(obj("big", 2710))  # 3000 bytes: a0 from probation, a1 and a2 from protected
    assert store.peek("big")
    assert [k for k in ("a0", "a1", "a2", "a3") if not store.peek(k)] == ["a0", "a1", "a2"]


def test_memorystore_peek_and_put_do_not_count_as_requests():
    """Only ``lookup`` feeds the sketch: peeks and puts of a candidate don't help it in."""
    store = MemoryStore(capacity=10_000, policy="tinylfu")
    for i in range(9):
        store.lookup(f"a{i}")
        store.put(obj(f"a{i}", BODY_1000))
    store.lookup("c")
    for _ in range(5):
        store.peek("c")
        store.put(obj("c", BODY_1000))
    assert not store.peek("c") and store.rejected == 5
    store.lookup("c")
    store.put(obj("c", BODY_1000))
    assert store.peek("c") and store.admitted == 10


def test_memorystore_lru_mode_matches_a_reference_lru():
    """``policy="lru"`` is plain LRU by entry: same contents, order and evictions as a
    reference model under seeded random churn; it never admits or rejects."""
    rng = random.Random(11)
    store = MemoryStore(capacity=20_000)
    ref: OrderedDict[str, int] = OrderedDict()
    evicted = 0
    for _ in range(3000):
        key = f"k{rng.randrange(60)}"
        if rng.random() < 0.5:
            store.lookup(key)
            if key in ref:
                ref.move_to_end(key)
        else:
            o = obj(key, rng.randrange(1, 6000))
            assert store.put(o)
            ref.pop(key, None)
            ref[key] = o.size
            while sum(ref.values()) > 20_000:
                ref.popitem(last=False)
                evicted += 1
        assert [o.key for o in store] == list(ref)
    assert store.evictions == evicted > 0
    assert (store.admitted, store.rejected) == (0, 0)


def test_memorystore_rejects_unknown_policy():
    with pytest.raises(ValueError, match="policy"):
        MemoryStore(capacity=1000, policy="lfu")
