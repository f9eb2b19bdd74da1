"""OriginBudget: token bucket and concurrency cap, waits bounded, never a queue without end."""

from __future__ import annotations

import asyncio

import pytest

from shared.engine.budget import OriginBudget
from shared.engine.errors import OriginBudgetExhausted


async def test_budget_unlimited_never_waits():
    budget = OriginBudget(rate=0, burst=1, concurrency=0, max_wait=0.0)
    assert not budget.limited and not budget.busy()
    async with budget.slot() as waited:
        assert waited < 0.01 and budget.in_flight == 1
    assert budget.in_flight == 0


async def test_budget_rate_spent_raises_after_bounded_wait():
    """With the bucket empty, a fetch waits at most max_wait, then 503 with Retry-After."""
    budget = OriginBudget(rate=0.5, burst=1, concurrency=0, max_wait=0.05)
    async with budget.slot():
        pass
    assert budget.busy()
    with pytest.raises(OriginBudgetExhausted) as exc:
        async with budget.slot():
            pass
    assert exc.value.status == 503 and exc.value.retry_after is not None
    assert exc.value.retry_after >= 1 and budget.rejected == 1 and budget.waiting == 0


async def test_budget_token_refill_lets_a_waiter_through():
    """A waiter gets the next token when it arrives within max_wait."""
    budget = OriginBudget(rate=50, burst=1, concurrency=0, max_wait=1.0)
    async with budget.slot():
        pass
    async with budget.slot() as waited:
        assert 0 < waited < 1.0


async def test_budget_concurrency_cap_wakes_waiter_on_release():
    """The second fetch waits for the first to finish (and not longer)."""
    budget = OriginBudget(rate=0, burst=1, concurrency=1, max_wait=5.0)
    entered = asyncio.Event()
    order: list[str] = []

    async def first() -> None:
        async with budget.slot():
            entered.set()
            await asyncio.sleep(0.05)
            order.append("first done")

    async def second() -> None:
        await entered.wait()
        assert budget.busy()
        async with budget.slot() as waited:
            order.append("second in")
            assert waited < 1.0

    await asyncio.gather(first(), second())
    assert order == ["first done", "second in"] and budget.in_flight == 0
    assert "in_flight=0/1" in repr(budget)
