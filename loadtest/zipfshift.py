"""Zipf traces whose hot set moves to new objects: a new episode drops.

A static Zipf trace (``loadtest.zipf.make_trace``) keeps one popularity order
for ever. Here the ranks keep their Zipf(α) weights, but which object holds a
rank changes:

- Shift: every ``every`` requests, ``new`` objects never requested before
  take ranks 1 … ``new`` and every other object moves down ``new`` ranks; the
  last ``new`` leave the catalog (yesterday's favourites fade, slowly).
- Diurnal drift (optional): a share of the requests, rising from 0 to
  ``diurnal`` and back over each ``period`` requests, comes from a second
  audience whose order is a fixed shuffle of the first's below the newest
  ``new`` ranks (a new episode is hot for everyone; the back catalogue is
  not watched the same way at night).

Pure and deterministic: a seed in, object ids out; no clock, no I/O. Ids
0 … ``objects`` - 1 are the starting catalog (ranked by a seeded shuffle, as
in the static trace), later ones are the new objects in order of arrival, so
``make_catalog(ids, seed)`` gives every object a size and the first
``objects`` sizes equal the static catalog's.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random

__all__ = ["Shift", "make_shift_trace"]

_BLOCK = 500  # requests drawn per call of random.choices (the diurnal share is per block)


@dataclasses.dataclass(frozen=True)
class Shift:
    """How a trace's hot set moves."""

    every: int  # requests between two drops
    new: int  # objects each drop puts at the top ranks
    diurnal: float = 0.0  # peak share of the second audience (0: none)
    period: int = 50_000  # requests per day cycle of that share

    def __post_init__(self) -> None:
        if self.every < 1 or self.new < 0 or self.period < 1 or not 0 <= self.diurnal <= 1:
            raise ValueError("every >= 1, new >= 0, period >= 1, diurnal in [0, 1]")

    @property
    def label(self) -> str:
        text = f"every {self.every}, {self.new} new"
        if self.diurnal:
            text += f", diurnal {self.diurnal:g}/{self.period}"
        return text


def make_shift_trace(
    objects: int, alpha: float, requests: int, seed: int, shift: Shift
) -> tuple[list[int], int]:
    """``requests`` object ids under ``shift``, and how many ids exist (all < that)."""
    if shift.new > objects:
        raise ValueError(f"{shift.new} new objects per drop in a catalog of {objects}")
    rng = random.Random(f"{seed}-shift-{alpha}-{shift}")
    order = list(range(objects))  # order[rank] = object id
    rng.shuffle(order)
    night = list(range(shift.new, objects))  # the second audience's rank -> first's rank
    rng.shuffle(night)
    night = list(range(shift.new)) + night
    cum = list(itertools.accumulate((r + 1) ** -alpha for r in range(objects)))
    ranks = range(objects)
    trace: list[int] = []
    ids = objects
    while len(trace) < requests:
        t = len(trace)
        if t and t % shift.every == 0:
            order = list(range(ids, ids + shift.new)) + order[: objects - shift.new]
            ids += shift.new
        k = min(_BLOCK, shift.every - t % shift.every, requests - t)
        drawn = rng.choices(ranks, cum_weights=cum, k=k)
        share = shift.diurnal * (1 - math.cos(2 * math.pi * t / shift.period)) / 2
        if share:
            drawn = [night[r] if rng.random() < share else r for r in drawn]
        trace.extend(order[r] for r in drawn)
    return trace, ids
