"""sleep_or_until: woken by what it waits for, or by time; a failure it wakes on stays the
caller's to read from what it passed, and is not reported as never retrieved."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from sim.clock import VirtualClock
from streamhouse.engine.waiting import sleep_or_until
from streamhouse.errors import NotLeader

LONG_MS = 60_000


def test_woken_by_a_failure_the_caller_reads_it_and_nothing_is_left_unretrieved() -> None:
    unretrieved: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: unretrieved.append(ctx))
        waited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waited.get_loop().call_soon(waited.set_exception, NotLeader("lease moved"))
        assert await sleep_or_until(VirtualClock(), LONG_MS, asyncio.shield(waited))
        with pytest.raises(NotLeader):
            await waited
        gc.collect()  # a future dropped with an unread exception reports it here

    asyncio.run(main())
    assert unretrieved == []


def test_on_time_it_answers_false_and_the_awaited_future_lives_on() -> None:
    async def main() -> None:
        clock = VirtualClock()
        waited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sleeping = asyncio.ensure_future(sleep_or_until(clock, 10, asyncio.shield(waited)))
        while clock.next_deadline_ms() is None:  # until it sleeps
            await asyncio.sleep(0)
        clock.advance_ms(10)
        assert await sleeping is False
        assert not waited.done()

    asyncio.run(main())
