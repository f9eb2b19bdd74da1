"""Adaptive admission: the hill climber (pure) and the adaptive MemoryStore it drives."""

from __future__ import annotations

import random
import statistics

import pytest

from shared.policy.admission import TinyLfu
from shared.policy.climber import HillClimber
from shared.service.settings import CacheSettings, load
from shared.store import MemoryStore
from tests.unit.test_store_memory import BODY_1000, obj, request

# -- the climber: pure, table-driven ---------------------------------------------------


@pytest.mark.parametrize(
    ("rates", "positions"),
    [
        # the first sample has nothing to compare with: it keeps the initial direction
        ([0.5], [0.125]),
        # better, better: keep climbing (each step 0.98 of the last)
        ([0.5, 0.52, 0.53], [0.125, 0.2475, 0.367]),
        # worse: turn around
        ([0.5, 0.52, 0.51], [0.125, 0.2475, 0.1275]),
    ],
)
def test_climber_keeps_direction_while_better_and_reverses_when_worse(rates, positions):
    """Hit rate up: same direction, decaying step; down: the opposite direction."""
    climber = HillClimber(100)
    got = [climber.climb(round(r * 100), 100) for r in rates]
    assert got == pytest.approx(positions, abs=1e-3)


def test_climber_restarts_its_step_when_the_hit_rate_jumps():
    """A change of 0.05 or more (the workload moved) gives the step its full size back."""
    climber = HillClimber(100)
    for rate in (50, 51, 52, 53, 54):
        climber.climb(rate, 100)
    assert abs(climber.step) < 0.125
    climber.climb(40, 100)  # a jump down: reverse, and at full size
    assert climber.step == pytest.approx(-0.125)


def test_climber_stays_within_zero_and_one():
    """Positions are clipped to [0, 1], however long the climb."""
    up = HillClimber(10)
    assert [up.climb(h, 10) for h in range(10)][-1] == 1.0
    down = HillClimber(10, position=0.2)
    down.climb(5, 10)
    assert [down.climb(0, 10) for _ in range(5)][-1] == 0.0


def test_climber_finds_the_best_position_of_a_noisy_landscape():
    """Seeded noise around a hit rate that peaks at 0.7: the climber ends near it."""
    rng = random.Random(15)
    climber = HillClimber(10_000)
    tail = []
    for i in range(120):
        rate = 0.6 - 0.3 * (climber.position - 0.7) ** 2 + rng.gauss(0, 0.003)
        climber.climb(round(rate * 10_000), 10_000)
        if i >= 80:
            tail.append(climber.position)
    assert statistics.mean(tail) == pytest.approx(0.7, abs=0.15)
    assert "position=" in repr(climber) and "samples=120" in repr(climber)


@pytest.mark.parametrize(
    "kwargs", [{"sample_size": 0}, {"sample_size": 1, "step": 0}, {"sample_size": 1, "position": 2}]
)
def test_climber_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        HillClimber(**kwargs)


def test_tinylfu_age_shortens_the_reset_period():
    """age(f) resets every f records per expected object, from now on."""
    sketch = TinyLfu(100)
    assert sketch.sample_size == 1000
    sketch.age(3)
    assert sketch.sample_size == 300
    for i in range(300):
        sketch.record(i % 7)
    assert sketch.resets == 1


# -- the adaptive store --------------------------------------------------------------


def recency_heavy(rng: random.Random, n: int) -> list[str]:
    """Every key is new and asked 4 times within ~60 requests, then never again."""
    out: list[str] = []
    due: list[tuple[int, str]] = []
    i = 0
    while len(out) < n:
        out.append(f"r{i}")
        due += [(len(out) + rng.randrange(1, 60), f"r{i}") for _ in range(3)]
        due.sort()
        i += 1
        while due and due[0][0] <= len(out):
            out.append(due.pop(0)[1])
    return out[:n]


def frequency_heavy(rng: random.Random, n: int) -> list[str]:
    """90 % of the requests go to 98 hot keys (about the cache), 10 % to keys seen once."""
    return [f"h{rng.randrange(98)}" if rng.random() < 0.9 else f"s{i}" for i in range(n)]


def windows(store: MemoryStore, trace: list[str]) -> list[int]:
    """Replay ``trace``; the window's limit after each request."""
    out = []
    for key in trace:
        request(store, key)
        out.append(store._window.limit)
    return out


@pytest.mark.parametrize("seed", [1, 3])
def test_adaptive_grows_the_window_on_recency_and_shrinks_it_on_frequency(seed):
    """Seeded: a recency-heavy trace widens the window toward 10 % of the budget; a
    frequency-heavy one that follows narrows it again (means over each phase's second
    half: one sample is noisy, and the frequency side of the landscape is flat)."""
    rng = random.Random(seed)
    store = MemoryStore(100_000, policy="adaptive")  # 100 entries of 1000 bytes
    start = store._window.limit
    recency = windows(store, recency_heavy(rng, 20_000))
    frequency = windows(store, frequency_heavy(rng, 60_000))
    wide = statistics.mean(recency[10_000:])
    narrow = statistics.mean(frequency[30_000:])
    assert start == 1000 and wide >= 7000
    assert narrow < wide - 2000
    assert store.bytes <= store.capacity


@pytest.mark.parametrize("wide", [True, False])
def test_adaptive_moves_a_bounded_number_of_entries_per_lookup(wide):
    """A new window size 900 entries away is reached over several lookups, at most 64
    entries moved per lookup, within one entry, with the budget held at every step."""
    store = MemoryStore(10_000 * 1000, policy="adaptive")
    keys = [f"k{i}" for i in range(10_000)]
    for key in keys * 2:  # twice: every entry is hit once, so main is full
        request(store, key)
    store._transfer(10**6)  # whatever the fill's climbs asked for, done
    start = len(store._window.entries)
    store._target = store._window_for(1.0 if wide else 0.0)
    store._resizing = True
    sizes = [start]
    for key in keys[:100]:
        store.lookup(key)
        sizes.append(len(store._window.entries))
        assert store.bytes <= store.capacity
    steps = [abs(b - a) for a, b in zip(sizes, sizes[1:], strict=False)]
    assert max(steps) <= 64 and abs(sizes[-1] - start) > 64
    assert abs(store._window.limit - store._target) <= 1000
    assert not store._resizing


def test_adaptive_budget_and_limits_hold_under_churn_and_resize():
    """Seeded churn with size mix, resizes and policy switches: bytes within budget,
    window + main limits equal to it, every entry in the segment the index names."""
    rng = random.Random(15)
    store = MemoryStore(200_000, policy="adaptive")
    for step in range(40_000):
        key = f"k{int(rng.paretovariate(0.6)) % 2000}" if step % 3 else f"new{step}"
        request(store, key, rng.choice([100, BODY_1000, 3000, 9000]))
        if step % 9000 == 8999:
            store.resize(rng.choice([50_000, 200_000, 400_000]))
        if step == 30_000:
            store.resize(store.capacity, "tinylfu")
            store.resize(store.capacity, "adaptive")
        assert store.bytes <= store.capacity, step
    assert store._window.limit + store._main == store.capacity
    for seg in store._segments():
        assert all(store._index[k] is seg for k in seg.entries)
        assert seg.bytes == sum(seg.sizes.values())
    assert len(store._index) == sum(len(seg.entries) for seg in store._segments())
    assert "HillClimber" in repr(store)


def test_adaptive_refuses_what_main_cannot_hold_at_its_smallest_window():
    """largest is main's share at a 1 % window, whatever the window is now."""
    store = MemoryStore(100_000, policy="adaptive")
    assert store.largest == 99_000
    assert not store.put(obj("big", 99_500))


@pytest.mark.parametrize("policy", ["tinylfu", "adaptive", "lru"])
def test_settings_accept_every_store_policy(policy):
    """--admission takes each policy the stores know."""
    s = load(CacheSettings, ["--upstream", "http://x", "--admission", policy], env={})
    assert s.admission == policy


def test_settings_reject_an_unknown_admission_policy():
    with pytest.raises(SystemExit) as exc:
        load(CacheSettings, ["--upstream", "http://x", "--admission", "arc"], env={})
    assert "admission" in str(exc.value)
