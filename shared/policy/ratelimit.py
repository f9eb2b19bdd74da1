"""A token bucket: at most ``rate`` starts per second, bursts up to ``burst``.

Pure: ``now`` is passed in. ``rate == 0`` means no limit.
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """Tokens refill continuously at ``rate``/s up to ``burst``; each start takes one."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(max(1, burst))
        self._tokens = self.burst  # guarded by: single event loop
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now

    def tokens(self, now: float) -> float:
        """Tokens available at ``now`` (``inf`` when unlimited)."""
        if not self.rate:
            return float("inf")
        self._refill(now)
        return self._tokens

    def try_take(self, now: float) -> bool:
        """Take a token if one is available."""
        if not self.rate:
            return True
        self._refill(now)
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def wait_time(self, now: float) -> float:
        """Seconds until the next token (0 if one is available)."""
        if not self.rate:
            return 0.0
        self._refill(now)
        return max(0.0, (1 - self._tokens) / self.rate)

    def __repr__(self) -> str:
        return f"<TokenBucket rate={self.rate}/s burst={self.burst:g} tokens={self._tokens:.1f}>"
