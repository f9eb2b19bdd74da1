"""Adaptive admission: the hill climber (pure) and the adaptive MemoryStore it drives."""

from __future__ import annotations

import random
import statistics

import pytest

from shared.policy.climber import HillClimber
from shared.service.settings import CacheSettings, load
from shared.store import MemoryStore
from tests.unit.test_store_memory import BODY_1000, obj, request

# -- the climber: pure, table-driven ---------------------------------------------------

N = 10_000  # requests per sample: one standard error of a change is ~0.007 here


def climbs(climber: HillClimber, rates: list[float]) -> list[float]:
    return [climber.climb(round(r * N), N) for r in rates]


@pytest.mark.parametrize(
    ("rates", "positions"),
    [
        # the first sample only sets the reference
        ([0.5], [0.0]),
        # better, better: keep climbing (each step 0.98 of the last)
        ([0.5, 0.52, 0.54], [0.0, 0.125, 0.2475]),
        # worse: turn around
        ([0.5, 0.52, 0.50], [0.0, 0.125, 0.0025]),
        # changes within sampling noise are no evidence: stay
        ([0.5, 0.502, 0.504, 0.502], [0.0, 0.0, 0.0, 0.0]),
        # ... until the fourth such sample in a row: one step on, to probe
        ([0.5, 0.5, 0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0, 0.125, 0.125]),
    ],
)
def test_climber_moves_on_evidence_and_reverses_when_worse(rates, positions):
    """Hit rate up: same direction, decaying step; down: the opposite direction;
    within noise: no move, but a probe after four quiet samples."""
    assert climbs(HillClimber(), rates) == pytest.approx(positions, abs=1e-3)


def test_climber_restarts_its_step_when_the_hit_rate_jumps():
    """A change of 0.05 or more (the workload moved) gives the step its full size back."""
    climber = HillClimber()
    climbs(climber, [0.50, 0.52, 0.54])
    assert climber.step == pytest.approx(0.125 * 0.98 * 0.98)
    assert climbs(climber, [0.45]) == pytest.approx([0.2475 - 0.12005], abs=1e-4)
    assert climber.step == pytest.approx(-0.125)


def test_climber_stays_within_zero_and_one():
    """Positions are clipped to [0, 1], however long the climb."""
    for slope, bound in ((0.2, 1.0), (-0.2, 0.0)):
        climber = HillClimber(position=0.5)
        for _ in range(40):
            climbs(climber, [0.5 + slope * climber.position])
        assert climber.position == bound


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_climber_finds_the_best_position_of_a_noisy_landscape(seed):
    """Seeded sampling noise around a hit rate that peaks at 0.7: it ends near it."""
    rng = random.Random(seed)
    climber = HillClimber()
    tail = []
    for i in range(120):
        rate = 0.6 - 0.5 * (climber.position - 0.7) ** 2
        hits = sum(rng.random() < rate for _ in range(N))
        climber.climb(hits, N)
        if i >= 80:
            tail.append(climber.position)
    assert statistics.mean(tail) == pytest.approx(0.7, abs=0.2)
    assert "position=" in repr(climber) and "samples=120" in repr(climber)


@pytest.mark.parametrize(("slope", "start", "end"), [(0.1, 0.0, 1.0), (-0.1, 1.0, 0.0)])
def test_climber_follows_a_sloped_landscape_to_its_end(slope, start, end):
    """Seeded binomial samples of a hit rate rising (recency-heavy) or falling
    (frequency-heavy) with the position: the climber ends at the better end."""
    rng = random.Random(15)
    climber = HillClimber(position=start)
    for _ in range(60):
        rate = 0.5 + slope * climber.position
        climber.climb(sum(rng.random() < rate for _ in range(N)), N)
    assert climber.position == end


@pytest.mark.parametrize("kwargs", [{"step": 0}, {"position": 2}, {"decay": 1.5}, {"probe": 0}])
def test_climber_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        HillClimber(**kwargs)


# -- the adaptive store --------------------------------------------------------------


def pairs(rng: random.Random, n: int, gap: int) -> list[str]:
    """Half the requests to 250 hot keys (the store holds 300), half to new keys each
    asked for again ``gap`` (+-1/3) requests later, then never."""
    out: list[str] = []
    due: dict[int, str] = {}
    i = 0
    while len(out) < n:
        t = len(out)
        if t in due:
            out.append(due.pop(t))
        elif rng.random() < 0.5:
            out.append(f"h{rng.randrange(250)}")
        else:
            out.append(f"n{i}")
            at = t + gap + rng.randrange(-(gap // 3), gap // 3 + 1)
            while at in due:
                at += 1
            due[at] = f"n{i}"
            i += 1
    return out[:n]


def windows(store: MemoryStore, trace: list[str]) -> list[int]:
    """Replay ``trace``; the window's limit after each request."""
    out = []
    for key in trace:
        request(store, key)
        out.append(store._window.limit)
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_adaptive_grows_the_window_on_recency_and_shrinks_it_on_frequency(seed):
    """Seeded: when new keys come back 8 requests later (a wider window and more second
    chances catch them) the window grows past 1.5 % of the budget; when they come back
    100 requests later, never to return (second chances only let them evict the hot
    keys), it shrinks back. Means over each phase's second half."""
    rng = random.Random(seed)
    store = MemoryStore(300_000, policy="adaptive")  # 300 entries of 1000 bytes
    start = store._window.limit
    recency = windows(store, pairs(rng, 60_000, gap=8))
    frequency = windows(store, pairs(rng, 90_000, gap=100))
    wide = statistics.mean(recency[30_000:])
    narrow = statistics.mean(frequency[45_000:])
    assert start == 3000 and wide >= 4500
    assert narrow < wide - 1000
    assert store.bytes <= store.capacity


@pytest.mark.parametrize("wide", [True, False])
def test_adaptive_moves_a_bounded_number_of_entries_per_lookup(wide):
    """A new window size 200 entries away (1 % <-> 3 % of 10 000) is reached over several
    lookups, at most 64 entries moved per lookup, with the budget held at every step."""
    store = MemoryStore(10_000 * 1000, policy="adaptive")
    keys = [f"k{i}" for i in range(10_000)]
    for key in keys * 2:  # twice: every entry is hit once, so main is full
        request(store, key)
    store._target = store._window_for(0.0 if wide else 1.0)
    store._transfer(10**6)  # start from the other end, whatever the fill's climbs did
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


def test_climber_leans_toward_frequency_on_outside_evidence():
    """``lean``: one step toward 0 at the current step's size, turned that way; at 0 it stays."""
    climber = HillClimber()
    climbs(climber, [0.5, 0.52, 0.54])  # up two steps: 0.2475, the next step +0.12005
    assert climber.lean() == pytest.approx(0.2475 - 0.12005)
    assert climber.step < 0 and climber.quiet == 0
    climber.position = 0.0
    assert climber.lean() == 0.0


def visits(rng: random.Random, n: int, gaps: list[int]) -> list[str]:
    """Half the requests to 250 hot keys (the store holds 300), half to new keys, each
    asked for again after every gap of ``gaps`` (+-1/3), then never."""
    out: list[str] = []
    due: dict[int, str] = {}
    pending: dict[str, list[int]] = {}
    i = 0
    while len(out) < n:
        t = len(out)
        if t in due:
            key = due.pop(t)
        elif rng.random() < 0.5:
            key = f"h{rng.randrange(250)}"
        else:
            key, i = f"n{i}", i + 1
            pending[key] = list(gaps)
        out.append(key)
        if pending.get(key):
            gap = pending[key].pop(0)
            at = t + gap + rng.randrange(-(gap // 3), gap // 3 + 1)
            while at in due:
                at += 1
            due[at] = key
    return out[:n]


@pytest.mark.parametrize("seed", [1, 2])
def test_adaptive_gives_second_chances_only_while_they_earn_hits(seed):
    """Seeded: new keys that come back three times, 60 requests apart, earn probation
    hits once let in by a second chance: the gate stays open and second chances keep
    being given. Keys that come back once, 100 requests later, never again, earn none:
    the gate closes, and only a few look-ahead chances (``_GATE_MIN`` a sample) are
    given. Only admitted, not-yet-hit probation entries are tracked."""
    rng = random.Random(seed)
    store = MemoryStore(300_000, policy="adaptive")

    given = [0]
    second_chance = store._second_chance

    def counted(key: str) -> bool:  # the store's own answer, counted
        chance = second_chance(key)
        given[0] += chance
        return chance

    store._second_chance = counted  # type: ignore[method-assign]

    def chances(trace: list[str]) -> int:
        before = given[0]
        for key in trace:
            request(store, key)
        return given[0] - before

    paying = chances(visits(rng, 60_000, [60, 60, 60]))
    assert store._chances_pay()
    chances(visits(rng, 30_000, [100]))  # the counts halve each sample: let them turn
    idle = chances(visits(rng, 60_000, [100]))
    assert not store._chances_pay()
    assert idle < paying / 10
    assert all(store._index[k] is store._probation for k in store._fresh)
