"""TinyLfu.shrink: folding the sketch for fewer objects keeps every estimate."""

from __future__ import annotations

import random

import pytest

from shared.policy.admission import TinyLfu


def learned(t: TinyLfu, keys: int = 3000, records: int = 20000) -> dict[str, int]:
    """Record a skewed stream into ``t``; every key's estimate after it."""
    rng = random.Random(5)
    for _ in range(records):
        t.record(f"k-{int(rng.paretovariate(1.1)) % keys}")
    return {f"k-{i}": t.estimate(f"k-{i}") for i in range(keys)}


@pytest.mark.parametrize(("expected", "shrunk"), [(4096, 2048), (4096, 100), (1000, 16)])
def test_tinylfu_shrink_never_drops_an_estimate(expected: int, shrunk: int) -> None:
    """Folding takes the larger counter and ORs the doorkeeper: no estimate drops, the
    tables are the size a sketch built for ``shrunk`` objects has."""
    t = TinyLfu(expected, sample_factor=1000)  # no reset while learning
    before = learned(t)
    assert t.resets == 0 and any(before.values())
    t.shrink(shrunk)
    after = {k: t.estimate(k) for k in before}
    assert all(after[k] >= n for k, n in before.items())
    fresh = TinyLfu(shrunk)
    assert t.expected_objects == fresh.expected_objects
    assert repr(t).split()[1] == repr(fresh).split()[1]  # width=...
    assert len(t._door) == len(fresh._door)
    assert t.sample_size == 1000 * fresh.expected_objects


def test_tinylfu_shrink_never_grows_and_a_full_sample_resets_next() -> None:
    """A larger size is ignored; a sample already past the new period resets at once."""
    t = TinyLfu(1024)
    for i in range(500):
        t.record(i)
    t.shrink(2048)
    assert t.expected_objects == 1024 and t.sample_size == 10240
    t.shrink(32)
    assert t.sample_size == 320 and t.resets == 0
    t.record("one more")
    assert t.resets == 1


def test_tinylfu_shrink_then_grow_keeps_the_popular_key_ahead() -> None:
    """A popular key still beats a newcomer after a shrink and a later growth."""
    t = TinyLfu(2048, sample_factor=1000)
    for i in range(2000):
        t.record(f"once-{i}")
        if i % 10 == 0:
            t.record("hot")
    t.shrink(64)
    t.grow(512)
    assert t.admit("hot", ["newcomer"]) and not t.admit("newcomer", ["hot"])
