"""The per-connection bound on requests awaiting answers: by count, by bytes, one big alone."""

from __future__ import annotations

import asyncio

import pytest

from streamhouse.server.in_flight import InFlightBudget


async def _admitted(budget: InFlightBudget, size: int) -> bool:
    """Whether a request of `size` bytes is admitted without anything being released."""
    acquiring = asyncio.ensure_future(budget.acquire(size))
    await asyncio.sleep(0)
    if acquiring.done():
        return True
    acquiring.cancel()
    with pytest.raises(asyncio.CancelledError):
        await acquiring
    return False


def test_admits_up_to_the_count_then_waits_for_a_release() -> None:
    asyncio.run(_admits_up_to_the_count_then_waits_for_a_release())


async def _admits_up_to_the_count_then_waits_for_a_release() -> None:
    budget = InFlightBudget(count_max=3, bytes_max=1_000)
    for _ in range(3):
        assert await _admitted(budget, 10)
    waiting = asyncio.ensure_future(budget.acquire(10))
    await asyncio.sleep(0)
    assert not waiting.done()
    budget.release(10)
    await waiting
    assert (budget.count, budget.bytes) == (3, 30)


def test_admits_up_to_the_bytes_then_waits_until_the_next_fits() -> None:
    asyncio.run(_admits_up_to_the_bytes_then_waits_until_the_next_fits())


async def _admits_up_to_the_bytes_then_waits_until_the_next_fits() -> None:
    budget = InFlightBudget(count_max=100, bytes_max=100)
    assert await _admitted(budget, 60)
    assert await _admitted(budget, 40)
    waiting = asyncio.ensure_future(budget.acquire(50))
    await asyncio.sleep(0)
    budget.release(40)  # 60 + 50 > 100: still waits
    await asyncio.sleep(0)
    assert not waiting.done()
    budget.release(60)
    await waiting
    assert (budget.count, budget.bytes) == (1, 50)


def test_a_request_above_the_byte_bound_is_read_alone() -> None:
    asyncio.run(_a_request_above_the_byte_bound_is_read_alone())


async def _a_request_above_the_byte_bound_is_read_alone() -> None:
    budget = InFlightBudget(count_max=100, bytes_max=100)
    assert await _admitted(budget, 500)  # nothing in flight: admitted alone
    assert not await _admitted(budget, 1)
    budget.release(500)
    assert await _admitted(budget, 1)
    assert not await _admitted(budget, 500)  # something in flight: waits for it


def test_a_cancelled_waiter_leaves_the_budget_usable() -> None:
    asyncio.run(_a_cancelled_waiter_leaves_the_budget_usable())


async def _a_cancelled_waiter_leaves_the_budget_usable() -> None:
    budget = InFlightBudget(count_max=1, bytes_max=100)
    assert await _admitted(budget, 1)
    assert not await _admitted(budget, 1)  # cancelled while waiting
    budget.release(1)
    assert await _admitted(budget, 1)
    assert (budget.count, budget.bytes) == (1, 1)


def test_take_counts_in_at_once_only_when_it_fits_and_nobody_waits() -> None:
    asyncio.run(_take_counts_in_at_once_only_when_it_fits_and_nobody_waits())


async def _take_counts_in_at_once_only_when_it_fits_and_nobody_waits() -> None:
    budget = InFlightBudget(count_max=2, bytes_max=100)
    assert budget.take(60) and not budget.take(50)
    waiting = asyncio.ensure_future(budget.acquire(50))
    await asyncio.sleep(0)
    assert not budget.take(1), "a waiter is first in line"
    budget.release(60)
    await waiting
    assert (budget.count, budget.bytes) == (1, 50)
