"""TinyLfu: sketch counts and saturates, halves on reset, doorkeeper, admit decisions."""

from __future__ import annotations

import pytest

from shared.policy.admission import MAX_COUNT, TinyLfu


def sketch_with(counts: dict[str, int], expected: int = 1024) -> TinyLfu:
    """A fresh sketch after ``counts[key]`` records of each key."""
    t = TinyLfu(expected)
    for key, n in counts.items():
        for _ in range(n):
            t.record(key)
    return t


@pytest.mark.parametrize(
    ("records", "estimate"),
    [(0, 0), (1, 1), (2, 2), (3, 3), (7, 7), (15, 15), (16, 16), (17, 16), (200, 16)],
)
def test_tinylfu_estimate_counts_and_saturates(records: int, estimate: int) -> None:
    """A lone key is counted exactly: doorkeeper bit + counter, saturating at 15 + 1."""
    assert MAX_COUNT + 1 == 16
    assert sketch_with({"k": records}).estimate("k") == estimate


@pytest.mark.parametrize(
    ("records", "after_reset"),
    # first sighting: doorkeeper only; the rest count in the sketch; a reset halves
    # the counter (rounding down) and clears the doorkeeper
    [(1, 0), (2, 0), (3, 1), (4, 1), (5, 2), (12, 5), (16, 7), (100, 7)],
)
def test_tinylfu_reset_halves_counts_and_clears_doorkeeper(records: int, after_reset: int) -> None:
    """After ``sample_size`` records every estimate is roughly halved."""
    t = sketch_with({"k": records}, expected=16)
    assert t.sample_size == 160
    filler = 0
    while t.resets == 0:  # another key fills the sample up to the reset
        t.record("filler")
        filler += 1
    assert filler == 160 - records  # exactly one reset per sample_size records
    assert t.estimate("k") == after_reset
    assert "resets=1" in repr(t)


def test_tinylfu_reset_period_is_the_full_sample() -> None:
    """After a reset the next one comes a whole ``sample_size`` later."""
    t = TinyLfu(16)
    for i in range(2 * t.sample_size - 1):
        t.record(i)
    assert t.resets == 1
    t.record("last")
    assert t.resets == 2


def test_tinylfu_doorkeeper_keeps_one_hit_wonders_out_of_the_counters() -> None:
    """A flood of keys seen once leaves the counters alone: earlier counts stay exact.

    Without the doorkeeper, 3000 keys over 2048 counters per row would touch all
    four counters of about a third of the keys below and inflate them."""
    t = TinyLfu(512)
    assert t.sample_size > 3150  # no reset in this test
    for i in range(50):
        for _ in range(3):
            t.record(f"hot-{i}")
    for i in range(3000):
        t.record(f"once-{i}")
    exact = sum(t.estimate(f"hot-{i}") == 3 for i in range(50))
    assert exact >= 48


def test_tinylfu_unseen_keys_rarely_estimate_above_zero() -> None:
    """False positives (doorkeeper and counter collisions) stay rare at the sized load."""
    t = TinyLfu(1000)
    for i in range(1000):
        t.record(f"seen-{i}")
    false = sum(t.estimate(f"unseen-{i}") > 0 for i in range(1000))
    assert false < 50


@pytest.mark.parametrize(
    ("candidate", "victims", "admitted"),
    [
        (1, [], True),  # nothing to displace
        (0, [0], False),  # a tie rejects: the incumbent stays
        (1, [0], True),
        (3, [2], True),
        (3, [3], False),
        (3, [4], False),
        (5, [1, 2, 4], True),  # a big candidate beats every victim it displaces...
        (5, [1, 5, 2], False),  # ...or none of them goes
        (16, [15], True),
        (40, [16], False),  # both saturated: a tie
    ],
)
def test_tinylfu_admit_only_beats_the_strongest_victim(
    candidate: int, victims: list[int], admitted: bool
) -> None:
    """``admit`` is True only if the candidate's estimate beats every victim's."""
    counts = {"candidate": candidate} | {f"victim-{i}": n for i, n in enumerate(victims)}
    t = sketch_with(counts)
    assert t.admit("candidate", [f"victim-{i}" for i in range(len(victims))]) is admitted


def test_tinylfu_counts_any_hashable_key() -> None:
    """Integer keys (``hash(i) == i``) are mixed, not indexed raw: they count apart."""
    t = TinyLfu(1024)
    for i in range(64):
        for _ in range(i % 5):
            t.record(i * 1024)  # multiples of the width: raw indexing would collide
    assert [t.estimate(i * 1024) for i in range(10)] == [i % 5 for i in range(10)]


# -- growth: a wider sketch keeps what the narrower one learned -----------------------


def learned(t: TinyLfu) -> dict[object, int]:
    """Estimates of keys counted 0..20 times (str and int) and of keys never seen."""
    for i in range(300):
        for _ in range(i % 21):
            t.record(f"k-{i}" if i % 2 else i * 4096)
    keys: list[object] = [f"k-{i}" if i % 2 else i * 4096 for i in range(300)]
    keys += [f"unseen-{i}" for i in range(300)]
    return {k: t.estimate(k) for k in keys}


@pytest.mark.parametrize(("expected", "grown"), [(20, 24), (16, 40), (64, 128), (64, 5000)])
def test_tinylfu_grow_keeps_every_estimate(expected: int, grown: int) -> None:
    """Growing copies rows and doorkeeper into the wider tables: no estimate moves,
    whether the width doubles, grows many times over or stays the same power of two."""
    t = TinyLfu(expected, sample_factor=1000)  # no reset while learning
    before = learned(t)
    assert any(before.values()) and t.resets == 0
    t.grow(grown)
    assert t.expected_objects == grown and t.sample_size == 1000 * grown
    assert {k: t.estimate(k) for k in before} == before


def test_tinylfu_estimates_never_drop_across_repeated_growth() -> None:
    """Growing step by step while counting (as a filling store does): every key's
    estimate only rises until a reset halves it, and growth causes none."""
    t = TinyLfu(16)
    seen: dict[str, int] = {}
    for step in range(12):
        for i in range(40 * (step + 1)):
            t.record(f"k-{i % 97}")
        now = {f"k-{i}": t.estimate(f"k-{i}") for i in range(97)}
        assert t.resets == 0
        assert all(now[k] >= n for k, n in seen.items())
        t.grow(t.expected_objects * 2)
        assert {k: t.estimate(k) for k in now} == now, step
        seen = now
    assert t.expected_objects == 16 * 2**12 and "width=262144" in repr(t)  # 4 per object


def test_tinylfu_grow_never_shrinks_and_keeps_the_sample_count() -> None:
    """A smaller size is ignored; the sample count carries on, so the next reset comes
    ``sample_factor`` records per (new) expected object after the last one."""
    t = TinyLfu(32)
    for i in range(300):
        t.record(i)
    t.grow(8)
    assert t.expected_objects == 32 and t.sample_size == 320
    t.grow(64)
    assert t.sample_size == 640 and t.resets == 0
    for i in range(300, 639):
        t.record(i)
    assert t.resets == 0
    t.record("the 640th")
    assert t.resets == 1


def test_tinylfu_grown_sketch_has_room_for_its_new_load() -> None:
    """After growing from 16 to 1000 expected objects, 1000 keys fit as well as in a
    sketch built for 1000: false positives stay rare."""
    t = TinyLfu(16)
    t.grow(1000)
    for i in range(1000):
        t.record(f"seen-{i}")
    assert t.resets == 0
    false = sum(t.estimate(f"unseen-{i}") > 0 for i in range(1000))
    assert false < 50
