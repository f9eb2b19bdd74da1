"""A per-parent circuit breaker: stop sending to a parent that keeps failing.

Pure: ``now`` is passed in. CLOSED lets everything through and opens on
``failures`` consecutive failures, or on an error rate of at least
``error_rate`` over the last ``window`` seconds (once ``min_requests`` were
seen). OPEN refuses everything for ``cooldown`` seconds, then lets exactly one
probe through (HALF_OPEN): its success closes the breaker, its failure opens
it again.
"""

from __future__ import annotations

import collections
import enum

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """The health of one parent as seen by this node."""

    def __init__(
        self,
        *,
        failures: int = 5,
        error_rate: float = 0.5,
        window: float = 10.0,
        cooldown: float = 5.0,
        min_requests: int = 10,
    ) -> None:
        self.failures = failures
        self.error_rate = error_rate
        self.window = window
        self.cooldown = cooldown
        self.min_requests = min_requests
        # guarded by: single event loop
        self.state = BreakerState.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._probing = False
        self._recent: collections.deque[tuple[float, bool]] = collections.deque()

    def allow(self, now: float) -> bool:
        """May a request go to this parent now? (Takes the probe slot when half-open.)"""
        if self.state is BreakerState.OPEN and now - self._opened_at >= self.cooldown:
            self.state = BreakerState.HALF_OPEN
            self._probing = False
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record(self, ok: bool, now: float) -> BreakerState | None:
        """Count one outcome; return the new state if it changed."""
        before = self.state
        self._recent.append((now, ok))
        while self._recent and self._recent[0][0] < now - self.window:
            self._recent.popleft()
        if ok:
            self._consecutive = 0
            if self.state is BreakerState.HALF_OPEN:
                self.state = BreakerState.CLOSED
                self._recent.clear()
        else:
            self._consecutive += 1
            if self.state is BreakerState.HALF_OPEN or self._tripped():
                self.state = BreakerState.OPEN
                self._opened_at = now
        self._probing = False
        return self.state if self.state is not before else None

    def abandon(self) -> None:
        """A request let through ended without an outcome (cancelled): free the probe."""
        self._probing = False

    def _tripped(self) -> bool:
        if self._consecutive >= self.failures:
            return True
        if len(self._recent) < self.min_requests:
            return False
        errors = sum(1 for _, ok in self._recent if not ok)
        return errors / len(self._recent) >= self.error_rate

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.state.value} consecutive={self._consecutive}>"
