"""Adaptive admission: a hill climber on the sampled hit rate.

W-TinyLFU's best settings depend on the workload: a static Zipf catalog wants a
tiny window and a long frequency memory (frequency decides), a catalog whose hot
set keeps moving to brand-new objects (a new episode drops) wants new objects
let in sooner and old counts forgotten faster (recency decides). Caffeine
resizes its window with a hill climber [Caffeine ``BoundedLocalCache.climb``;
Einziger et al., "Adaptive Software Cache Management", Middleware 2018]; this
is the same climber over one abstract knob, a *position* in [0, 1] (0: all
frequency), which the store maps to its window share and sketch aging.

Pure: no clock, no I/O, no randomness; deterministic for a given sequence of
samples. The store counts hits and requests (two integer increments per lookup)
and, once ``sample_size`` requests are in, calls ``climb`` once, which answers
the new position. CPU: O(1) per sample.

- Step: the position moves by ``step`` per sample, in the direction that last
  improved the hit rate: a sample whose hit rate is at least the previous one
  keeps the direction, a worse one reverses it [Caffeine].
- Decay: each step is ``decay`` times the last, so the position settles on a
  steady workload instead of oscillating around its best.
- Restart: a hit-rate change of ``restart`` or more (the workload moved) resets
  the step to full size, so the climber can travel again.
- Bounds: the position stays in [0, 1]; a step past a bound is clipped, and the
  next worse sample turns it around like any other.
"""

from __future__ import annotations

__all__ = ["HillClimber"]

STEP = 0.125  # position per sample at full size [Caffeine: 6.25 % of the cache of a ~0.8 range]
DECAY = 0.98  # step decay per sample [Caffeine HILL_CLIMBER_STEP_DECAY_RATE]
RESTART = 0.05  # hit-rate change that restarts the step [Caffeine HILL_CLIMBER_RESTART_THRESHOLD]


class HillClimber:
    """Proposes the next position in [0, 1] from successive hit-rate samples."""

    def __init__(
        self,
        sample_size: int,
        *,
        position: float = 0.0,
        step: float = STEP,
        decay: float = DECAY,
        restart: float = RESTART,
    ) -> None:
        if sample_size < 1 or not 0 < step <= 1 or not 0 < decay <= 1 or not 0 <= position <= 1:
            raise ValueError("sample_size >= 1, step and decay in (0, 1], position in [0, 1]")
        self.sample_size = sample_size  # requests per sample; the store may change it
        self._full, self._decay, self._restart = step, decay, restart
        # guarded by: single event loop (the store's caller)
        self.position = position
        self.step = step  # signed: > 0 moves toward recency
        self.previous: float | None = None  # hit rate of the last sample
        self.samples = 0

    def climb(self, hits: int, requests: int) -> float:
        """One sample is in (``hits`` of ``requests``): the position to take now."""
        rate = hits / requests if requests else 0.0
        change = 0.0 if self.previous is None else rate - self.previous
        self.previous = rate
        self.samples += 1
        amount = self.step if change >= 0 else -self.step
        if abs(change) >= self._restart:
            self.step = self._full if amount >= 0 else -self._full
        else:
            self.step = self._decay * amount
        self.position = min(max(self.position + amount, 0.0), 1.0)
        return self.position

    def __repr__(self) -> str:
        rate = "-" if self.previous is None else f"{self.previous:.3f}"
        return (
            f"<HillClimber position={self.position:.3f} step={self.step:+.3f} "
            f"hit_rate={rate} samples={self.samples}>"
        )
