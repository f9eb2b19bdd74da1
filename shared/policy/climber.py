"""Adaptive admission: a hill climber on the sampled hit rate.

W-TinyLFU's best settings depend on the workload: a static Zipf catalog wants
frequency to decide (a tiny window, few second chances), a catalog whose hot
set keeps moving to brand-new objects (a new episode drops) wants new objects
let in sooner (recency decides). Caffeine resizes its window with a hill
climber [Caffeine ``BoundedLocalCache.climb``; Einziger et al., "Adaptive
Software Cache Management", Middleware 2018]; this is the same climber over
one abstract knob, a *position* in [0, 1] (0: frequency), which the store maps
to its window share and to how many refused candidates it remembers.

Pure: no clock, no I/O, no randomness; deterministic for a given sequence of
samples. The caller counts hits and requests and, once a sample is in, calls
``climb`` once, which answers the new position. CPU: O(1) per sample.

- Step: the position moves by ``step`` per sample, in the direction that last
  improved the hit rate: a sample whose hit rate is at least the previous one
  keeps the direction, a worse one reverses it [Caffeine].
- Evidence: a change smaller than ``noise`` standard errors of the difference
  of two sampled rates (binomial: sqrt(2 r (1 - r) / n)) is no evidence either
  way: the position stays, and the step neither turns nor decays. Caffeine
  moves on every sample; on a steady workload that random walk costs hit rate
  (``loadtest/zipf.py``). The first sample only sets the reference.
- Probe: after ``probe`` samples in a row without evidence the climber takes
  one step anyway, by the sign of the last change as Caffeine would, so a
  steady workload whose best setting lies elsewhere is still found; on a flat
  landscape that is a random walk at a quarter of Caffeine's pace.
- Decay: each step is ``decay`` times the last, so the position settles on a
  steady workload instead of oscillating around its best.
- Restart: a hit-rate change of ``restart`` or more (the workload moved) resets
  the step to full size, so the climber can travel again.
- Lean: the caller may add evidence from outside the hit rate (``lean``: one
  step toward 0), when it sees that recency is not paying.
- Bounds: the position stays in [0, 1]; a step past a bound is clipped, and the
  next worse sample turns it around like any other.
"""

from __future__ import annotations

import math

__all__ = ["HillClimber"]

STEP = 0.125  # position per sample at full size [Caffeine: 6.25 % of the cache of a ~0.8 range]
DECAY = 0.98  # step decay per sample [Caffeine HILL_CLIMBER_STEP_DECAY_RATE]
RESTART = 0.05  # hit-rate change that restarts the step [Caffeine HILL_CLIMBER_RESTART_THRESHOLD]
NOISE = 1.0  # standard errors a hit-rate change must pass to count as evidence
PROBE = 4  # samples in a row without evidence after which the climber probes a step


class HillClimber:
    """Proposes the next position in [0, 1] from successive hit-rate samples."""

    def __init__(
        self,
        *,
        position: float = 0.0,
        step: float = STEP,
        decay: float = DECAY,
        restart: float = RESTART,
        noise: float = NOISE,
        probe: int = PROBE,
    ) -> None:
        if not 0 < step <= 1 or not 0 < decay <= 1 or not 0 <= position <= 1 or probe < 1:
            raise ValueError("step and decay in (0, 1], position in [0, 1], probe >= 1")
        self._full, self._decay, self._restart = step, decay, restart
        self._noise, self._probe = noise, probe
        # guarded by: single event loop (the store's caller)
        self.position = position
        self.step = step  # signed: > 0 moves toward recency
        self.previous: float | None = None  # hit rate of the last sample
        self.samples = 0
        self.quiet = 0  # samples in a row without evidence

    def climb(self, hits: int, requests: int) -> float:
        """One sample is in (``hits`` of ``requests``): the position to take now."""
        rate = hits / requests if requests else 0.0
        previous, self.previous = self.previous, rate
        self.samples += 1
        if previous is None or not requests:
            return self.position
        change = rate - previous
        amount = self.step if change >= 0 else -self.step
        if abs(change) < self._noise * math.sqrt(2 * rate * (1 - rate) / requests):
            self.quiet += 1  # within sampling noise: no evidence either way
            if self.quiet < self._probe:
                return self.position
            self.step = amount  # probe: a step by the change's sign, the step kept whole
        else:
            if abs(change) >= self._restart:
                self.step = self._full if amount >= 0 else -self._full
            else:
                self.step = self._decay * amount
        self.quiet = 0
        self.position = min(max(self.position + amount, 0.0), 1.0)
        return self.position

    def lean(self) -> float:
        """Evidence from outside the hit rate that recency is not paying: one step
        toward 0, and the direction set that way. The position to take now."""
        self.step = -abs(self.step)
        self.quiet = 0
        self.position = max(self.position + self.step, 0.0)
        return self.position

    def __repr__(self) -> str:
        rate = "-" if self.previous is None else f"{self.previous:.3f}"
        return (
            f"<HillClimber position={self.position:.3f} step={self.step:+.3f} "
            f"hit_rate={rate} samples={self.samples}>"
        )
