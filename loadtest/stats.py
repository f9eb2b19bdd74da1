"""Figures of a list of samples: nearest-rank percentiles, in milliseconds.

Pure and exact: a percentile is one of the samples (nearest rank, never
interpolated), so a p99 of 100 samples is the 99th smallest; an empty list
has none (``None``), which the JSON summaries keep as ``null``. Samples are
seconds; the summaries report milliseconds rounded to 0.01 ms. (The viewers
scenario, with far more samples, uses HdrHistogram: ``loadtest.viewerreport``.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["ms", "percentile", "spread"]


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0..100) of ``values``; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def ms(seconds: float | None) -> float | None:
    """Seconds as milliseconds rounded to 0.01; None stays None."""
    return None if seconds is None else round(seconds * 1000, 2)


def spread(values: Sequence[float], points: Iterable[int] = (50, 99)) -> dict[str, float | None]:
    """``{"p50": ..., "p99": ..., "max": ...}`` in ms of ``values`` in seconds: the
    percentiles ``points`` in order, then the largest; all None if empty."""
    return {f"p{p}": ms(percentile(values, p)) for p in points} | {
        "max": ms(max(values, default=None))
    }
