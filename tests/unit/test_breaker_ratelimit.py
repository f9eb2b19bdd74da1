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


def fails(n: int, at: float = 0) -> list[tuple[float, str]]:
    return [(at, "fail")] * n


def oks(n: int, at: float = 0) -> list[tuple[float, str]]:
    return [(at, "ok")] * n


# min_requests=4, error_rate=0.5, window=10 s (in 1 s buckets), cooldown=5 s
@pytest.mark.parametrize(
    ("events", "expected", "state"),
    [
        (fails(3), [None] * 3, CLOSED),
        (fails(4), [None] * 3 + [OPEN], OPEN),
        (oks(2) + fails(2), [None] * 3 + [OPEN], OPEN),
        (oks(3) + fails(1), [None] * 4, CLOSED),
        (oks(5) + fails(4), [None] * 9, CLOSED),
        (oks(5) + fails(5), [None] * 9 + [OPEN], OPEN),
        (fails(2) + oks(2) + [(0, "ok")], [None] * 5, CLOSED),
        (fails(3) + [(10, "fail")], [None] * 4, CLOSED),
        (fails(3) + [(9.9, "fail")], [None] * 3 + [OPEN], OPEN),
        (fails(4) + [(1, "allow"), (4.9, "allow")], [None] * 3 + [OPEN, False, False], OPEN),
        (fails(4) + [(2, "ok"), (2, "fail")] + fails(9, at=3), [None] * 3 + [OPEN] + [None] * 11,
         OPEN),
        (fails(4) + [(5, "allow"), (5, "allow"), (5.1, "ok")],
         [None] * 3 + [OPEN, True, False, CLOSED], CLOSED),
        (fails(4) + [(5, "allow"), (5.1, "ok")] + fails(3, at=5.2),
         [None] * 3 + [OPEN, True, CLOSED] + [None] * 3, CLOSED),
        (fails(4) + [(5, "allow"), (5.1, "fail"), (6, "allow"), (10.1, "allow")],
         [None] * 3 + [OPEN, True, OPEN, False, True], HALF),
    ],
    ids=[
        "below-minimum-volume", "minimum-volume-all-failed", "half-failed-opens",
        "quarter-failed", "a-few-among-many", "rate-reached", "successes-dilute",
        "old-failures-left-the-window", "within-the-window", "open-refuses",
        "open-counts-but-stays", "probe-closes", "closed-window-starts-empty", "probe-reopens",
    ],
)  # fmt: skip
def test_breaker_opens_on_rate_after_minimum_volume(events, expected, state):
    """It opens only once the window holds the minimum volume at the error rate; after
    the cool-down one probe decides."""
    breaker = CircuitBreaker(min_requests=4, error_rate=0.5, window=10, cooldown=5)
    assert run(breaker, events) == expected
    assert breaker.state is state


def test_breaker_defaults_never_open_on_five_failures_in_a_row():
    """Issue 9's scenario: 5 failures in a row among normal traffic open nothing."""
    breaker = CircuitBreaker()  # 20 requests in 10 s, 50 %
    events = oks(10) + fails(5) + oks(10, at=1) + fails(5, at=2) + oks(5, at=3)
    assert run(breaker, events) == [None] * len(events)
    assert breaker.rate(3) == (10, 35)
    assert breaker.rate(11.5) == (5, 10)  # the first two seconds left the window


def test_breaker_available_takes_nothing():
    """``available`` says what ``allow`` would answer without taking the probe."""
    breaker = CircuitBreaker(min_requests=1, cooldown=5)
    assert breaker.available(0) and breaker.record(False, 0) is OPEN
    assert not breaker.available(4.9) and breaker.state is OPEN
    assert breaker.available(5) and breaker.available(5)
    assert breaker.allow(5) and breaker.state is HALF
    assert not breaker.available(5) and not breaker.allow(5)
    breaker.abandon()  # the probe was cancelled: the next request probes
    assert breaker.available(5) and breaker.allow(5)


def test_breaker_repr():
    assert "closed 0/0 failed" in repr(CircuitBreaker())


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
