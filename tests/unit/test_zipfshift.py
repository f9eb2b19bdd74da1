"""loadtest.zipfshift: popularity-shift traces (pure, seeded)."""

from __future__ import annotations

from collections import Counter

import pytest

from loadtest.zipf import make_trace
from loadtest.zipfshift import Shift, make_shift_trace


def test_shift_trace_is_deterministic_and_counts_its_ids():
    """Same seed, same trace; each drop adds ``new`` ids after the starting catalog."""
    shift = Shift(every=1000, new=10)
    a, ids = make_shift_trace(500, 0.8, 5000, 7, shift)
    b, _ = make_shift_trace(500, 0.8, 5000, 7, shift)
    assert a == b and len(a) == 5000
    assert ids == 500 + 4 * 10 and max(a) < ids
    assert make_shift_trace(500, 0.8, 5000, 8, shift)[0] != a


def test_shift_new_objects_take_the_top_ranks():
    """After each drop the most requested objects are the ones it brought."""
    trace, _ = make_shift_trace(1000, 1.0, 4000, 3, Shift(every=2000, new=5))
    before, after = Counter(trace[:2000]), Counter(trace[2000:])
    assert all(oid < 1000 for oid in before)
    top = {oid for oid, _ in after.most_common(3)}
    assert top <= set(range(1000, 1005))


def test_shift_without_new_objects_is_a_static_zipf():
    """No new objects: popularity never moves (the head keeps its share over time)."""
    trace, ids = make_shift_trace(1000, 1.0, 6000, 3, Shift(every=1000, new=0))
    assert ids == 1000
    first, last = Counter(trace[:3000]), Counter(trace[3000:])
    head = first.most_common(1)[0][0]
    assert last.most_common(1)[0][0] == head
    assert len(make_trace(1000, 1.0, 10, 3)) == 10


def test_diurnal_drift_moves_the_back_catalogue_not_the_new_episode():
    """At the night peak a second audience favours other back-catalogue objects; the
    newest drop stays on top for everyone."""
    shift = Shift(every=10_000, new=3, diurnal=1.0, period=8000)
    trace, _ = make_shift_trace(1000, 1.0, 8000, 5, shift)
    day, night = Counter(trace[:1000]), Counter(trace[3500:4500])
    day_head = [oid for oid, _ in day.most_common(8)]
    night_head = [oid for oid, _ in night.most_common(8)]
    assert set(day_head[:3]) == set(night_head[:3])  # the ranks a drop would take
    assert set(day_head[3:]) != set(night_head[3:])


@pytest.mark.parametrize(
    "kwargs",
    [{"every": 0, "new": 1}, {"every": 1, "new": -1}, {"every": 1, "new": 1, "diurnal": 2}],
)
def test_shift_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        Shift(**kwargs)


def test_shift_rejects_more_new_objects_than_the_catalog():
    with pytest.raises(ValueError):
        make_shift_trace(10, 1.0, 100, 1, Shift(every=10, new=11))
