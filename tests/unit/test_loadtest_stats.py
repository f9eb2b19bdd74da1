"""The load tests' figures: nearest-rank percentiles, milliseconds and spreads."""

from __future__ import annotations

import pytest

from loadtest.stats import ms, percentile, spread

HUNDRED = [i / 1000 for i in range(100, 0, -1)]  # 0.001 .. 0.100 s, out of order


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([], 50, None),
        ([0.5], 0, 0.5),
        ([0.5], 99, 0.5),
        ([3.0, 1.0, 2.0], 50, 2.0),
        ([3.0, 1.0, 2.0], 100, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),  # nearest rank: ceil(0.5 * 4) = 2nd, not interpolated
        ([1.0, 2.0, 3.0, 4.0], 51, 3.0),
        (HUNDRED, 99, 0.099),
        (HUNDRED, 99.9, 0.1),
        (HUNDRED, 1, 0.001),
    ],
)
def test_percentile_is_the_nearest_rank_sample(
    values: list[float], p: float, expected: float | None
) -> None:
    """A percentile is one of the samples, the ceil(p% of n)-th smallest; none of nothing."""
    assert percentile(values, p) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(None, None), (0.0, 0.0), (0.0123456, 12.35), (1.5, 1500.0), (2e-6, 0.0)],
)
def test_ms_rounds_seconds_to_hundredths_of_a_millisecond(
    seconds: float | None, expected: float | None
) -> None:
    """Seconds become milliseconds rounded to 0.01; None stays None."""
    assert ms(seconds) == expected


def test_spread_reports_the_points_in_order_then_the_max() -> None:
    """spread gives p50 and p99 by default, any points on request, and the max, in ms."""
    assert spread(HUNDRED) == {"p50": 50.0, "p99": 99.0, "max": 100.0}
    got = spread(HUNDRED, (50, 90, 99))
    assert got == {"p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}
    assert list(got) == ["p50", "p90", "p99", "max"]  # the JSON keeps this order


def test_spread_of_nothing_is_all_none() -> None:
    """An empty sample has no percentiles and no max (null in the JSON)."""
    assert spread([], (50, 90, 99)) == {"p50": None, "p90": None, "p99": None, "max": None}
