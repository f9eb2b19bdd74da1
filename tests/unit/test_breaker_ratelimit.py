"""CircuitBreaker and TokenBucket with an injected clock."""

from __future__ import annotations

import pytest

from shared.policy.breaker import BreakerState, CircuitBreaker
from shared.policy.ratelimit import TokenBucket

CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def run(breaker: CircuitBreaker, events: list[tuple[float, str]]) -> list[object]:
    """Apply ('allow' | 'ok' | 'fail') events; return what each allow/record returned."""
    out: list[object] = []
    for now, event in events:
        if event == "allow":
            out.append(breaker.allow(now))
        else:
            out.append(breaker.record(event == "ok", now))
    return out


@pytest.mark.parametrize(
    ("events", "expected", "state"),
    [
        ([(0, "fail"), (0, "fail"), (0, "ok"), (0, "fail")], [None] * 4, CLOSED),
        ([(0, "fail"), (0, "fail"), (0, "fail")], [None, None, OPEN], OPEN),
        ([(0, "fail")] * 3 + [(1, "allow"), (4.9, "allow")], [None, None, OPEN, False, False],
         OPEN),
        ([(0, "fail")] * 3 + [(5, "allow"), (5, "allow"), (5.1, "ok")],
         [None, None, OPEN, True, False, CLOSED], CLOSED),
        ([(0, "fail")] * 3 + [(5, "allow"), (5.1, "fail"), (6, "allow"), (10.1, "allow")],
         [None, None, OPEN, True, OPEN, False, True], HALF),
    ],
    ids=["intermittent", "consecutive-opens", "open-refuses", "probe-closes", "probe-reopens"],
)  # fmt: skip
def test_breaker_consecutive_failures(events, expected, state):
    """Consecutive failures open it; after the cool-down one probe decides."""
    breaker = CircuitBreaker(failures=3, cooldown=5, min_requests=100)
    assert run(breaker, events) == expected
    assert breaker.state is state


def test_breaker_error_rate_over_window():
    """An error rate at the threshold over the window opens it; old events age out."""
    breaker = CircuitBreaker(failures=100, error_rate=0.5, window=10, min_requests=4)
    assert run(breaker, [(0, "fail"), (1, "ok"), (2, "fail")]) == [None, None, None]
    assert breaker.record(True, 20) is None  # the old failures have left the window
    assert breaker.record(False, 21) is None and breaker.record(True, 22) is None
    assert breaker.record(False, 23) is OPEN  # 2 of 4 in the window


def test_breaker_repr():
    assert "closed" in repr(CircuitBreaker())


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([0, 0, 0], [True, True, False]),
        ([0, 0, 0.5, 0.5], [True, True, True, False]),
        ([0, 0, 10, 10, 10], [True, True, True, True, False]),  # refills only up to burst
    ],
)
def test_token_bucket_take(steps, expected):
    """Two tokens of burst, refilled at 2/s."""
    bucket = TokenBucket(rate=2, burst=2, now=0)
    assert [bucket.try_take(t) for t in steps] == expected


def test_token_bucket_wait_time_and_unlimited():
    bucket = TokenBucket(rate=4, burst=1, now=0)
    assert bucket.try_take(0) and bucket.wait_time(0) == pytest.approx(0.25)
    assert bucket.wait_time(0.1) == pytest.approx(0.15)
    assert bucket.tokens(0.25) == pytest.approx(1.0)
    free = TokenBucket(rate=0, burst=1, now=0)
    assert all(free.try_take(0) for _ in range(100)) and free.wait_time(0) == 0
    assert free.tokens(0) == float("inf")
    assert "rate=4" in repr(bucket)
