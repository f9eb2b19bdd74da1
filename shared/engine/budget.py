"""The origin budget: a token bucket and a concurrency cap on upstream fetches.

A fetch takes a token and a slot. When neither is free it waits, but never
longer than ``max_wait``: then ``OriginBudgetExhausted`` (503 + Retry-After).
The waiters are the node's fills, themselves capped by load shedding, so the
queue is bounded too. ``busy()`` lets the request path serve a stale copy at
once instead of waiting (stale-if-busy).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from shared.engine.errors import OriginBudgetExhausted
from shared.policy.ratelimit import TokenBucket

__all__ = ["OriginBudget"]


class OriginBudget:
    """Rate (tokens/s with burst) and concurrency limits on this node's fetches."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        concurrency: int,
        max_wait: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.concurrency = concurrency  # 0 = no cap
        self.max_wait = max_wait
        self._clock = clock
        self.bucket = TokenBucket(rate, burst, clock())
        # guarded by: single event loop
        self.in_flight = 0
        self.waiting = 0
        self.rejected = 0
        self._released = asyncio.Event()

    def reconfigure(self, *, rate: float, burst: int, concurrency: int, max_wait: float) -> None:
        """New limits (a reload); fetches in flight keep their slots, waiters re-check."""
        if (rate, float(max(1, burst))) != (self.bucket.rate, self.bucket.burst):
            self.bucket = TokenBucket(rate, burst, self._clock())  # starts full, as at start
        self.concurrency = concurrency
        self.max_wait = max_wait
        released, self._released = self._released, asyncio.Event()
        released.set()  # a larger cap may free a waiter now

    @property
    def limited(self) -> bool:
        return bool(self.bucket.rate or self.concurrency)

    def _slot_free(self) -> bool:
        return not self.concurrency or self.in_flight < self.concurrency

    def busy(self) -> bool:
        """Would a fetch starting now have to wait?"""
        now = self._clock()
        return not self._slot_free() or self.bucket.tokens(now) < 1

    def tokens(self) -> float:
        return self.bucket.tokens(self._clock())

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Hold a token and a slot for one fetch; yields the seconds waited."""
        started = self._clock()
        deadline = started + self.max_wait
        self.waiting += 1
        try:
            while True:
                now = self._clock()
                if self._slot_free() and self.bucket.try_take(now):
                    break
                wait = self.bucket.wait_time(now) if self._slot_free() else self.max_wait
                remaining = deadline - now
                if remaining <= 0:
                    self.rejected += 1
                    retry = max(1.0, self.bucket.wait_time(now))
                    raise OriginBudgetExhausted("origin budget spent", retry_after=retry)
                released = self._released
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(released.wait(), min(max(wait, 0.001), remaining))
        finally:
            self.waiting -= 1
        self.in_flight += 1
        try:
            yield self._clock() - started
        finally:
            self.in_flight -= 1
            released, self._released = self._released, asyncio.Event()
            released.set()

    def __repr__(self) -> str:
        return (
            f"<OriginBudget {self.bucket!r} in_flight={self.in_flight}/{self.concurrency or 'inf'}"
            f" waiting={self.waiting}>"
        )
