"""A per-parent circuit breaker: skip a parent that is failing, never one that had
a handful of bad responses.

Pure: ``now`` is passed in. CLOSED lets everything through. It opens only on an
error *rate*: over the last ``window`` seconds (counted in tenths of it), at least
``min_requests`` outcomes were recorded and at least ``error_rate`` of them were
failures (Hystrix's rule). OPEN refuses for ``cooldown`` seconds, then lets exactly
one probe through (HALF_OPEN): its success closes the breaker with an empty window,
its failure opens it again. Outcomes recorded while OPEN (requests already in
flight, or sent on the last route) are counted but change nothing.

A breaker only says a parent should be skipped. ``UpstreamPool`` never closes the
last route (Envoy's panic threshold): when every breaker refuses, a request that
has no stale copy to fall back on still goes upstream.
"""

from __future__ import annotations

import collections
import enum
import math

__all__ = ["BreakerState", "CircuitBreaker"]

_BUCKETS = 10  # the window slides in tenths: memory is bounded whatever the rate


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """The health of one parent as seen by this node."""

    def __init__(
        self,
        *,
        min_requests: int = 20,
        error_rate: float = 0.5,
        window: float = 10.0,
        cooldown: float = 5.0,
    ) -> None:
        self.min_requests = min_requests
        self.error_rate = error_rate
        self.window = window
        self.cooldown = cooldown
        # guarded by: single event loop (every field below)
        self.state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probing = False
        # [bucket number, outcomes, failures] per tenth of the window, oldest first
        self._buckets: collections.deque[list[int]] = collections.deque()
        self._total = 0
        self._failures = 0

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

    def available(self, now: float) -> bool:
        """Would ``allow(now)`` let a request through? (Takes nothing.)"""
        if self.state is BreakerState.OPEN:
            return now - self._opened_at >= self.cooldown
        return self.state is BreakerState.CLOSED or not self._probing

    def record(self, ok: bool, now: float) -> BreakerState | None:
        """Count one outcome; return the new state if it changed."""
        self._count(ok, now)
        before = self.state
        if before is BreakerState.HALF_OPEN:
            self._probing = False
            if ok:
                self.state = BreakerState.CLOSED
                self._forget()
            else:
                self._open(now)
        elif before is BreakerState.CLOSED and not ok and self._tripped():
            self._open(now)
        return self.state if self.state is not before else None

    def abandon(self) -> None:
        """A request let through ended without an outcome (cancelled): free the probe."""
        self._probing = False

    def rate(self, now: float) -> tuple[int, int]:
        """Failures and outcomes within the window at ``now``."""
        self._expire(now)
        return self._failures, self._total

    def _tripped(self) -> bool:
        return self._total >= self.min_requests and (
            self._failures >= self.error_rate * self._total
        )

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self._opened_at = now

    def _count(self, ok: bool, now: float) -> None:
        slot = self._expire(now)
        failed = 0 if ok else 1
        if self._buckets and self._buckets[-1][0] >= slot:
            bucket = self._buckets[-1]
            bucket[1] += 1
            bucket[2] += failed
        else:
            self._buckets.append([slot, 1, failed])
        self._total += 1
        self._failures += failed

    def _expire(self, now: float) -> int:
        """Drop buckets that left the window; the bucket number of ``now``."""
        slot = math.floor(now * _BUCKETS / self.window) if self.window > 0 else 0
        while self._buckets and self._buckets[0][0] <= slot - _BUCKETS:
            _, total, failures = self._buckets.popleft()
            self._total -= total
            self._failures -= failures
        return slot

    def _forget(self) -> None:
        self._buckets.clear()
        self._total = self._failures = 0

    def __repr__(self) -> str:
        return (
            f"<CircuitBreaker {self.state.value} {self._failures}/{self._total} failed"
            f" (opens at {self.error_rate:.0%} of >= {self.min_requests} in {self.window:g}s)>"
        )
