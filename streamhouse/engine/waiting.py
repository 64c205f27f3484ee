"""Waiting on the Clock port: sleep for a while unless something happens first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Collection
from typing import Any

from streamhouse.ports.clock import Clock

# Kafka clients' retry.backoff.ms default. Some clients (aiokafka's fetcher and metadata
# wait) ask again at once after an error; answers that tell only of a failure that lasts
# (the metadata store down) are held this long, so such a client does not spin on them.
CLIENT_RETRY_BACKOFF_MS = 100


async def sleep_or_until(clock: Clock, duration_ms: int, wake: Awaitable[object]) -> bool:
    """Sleep `duration_ms` on `clock`; return True as soon as `wake` completes, False on time."""
    sleeper = asyncio.ensure_future(clock.sleep_ms(duration_ms))
    waker = asyncio.ensure_future(wake)
    done, still_running = await asyncio.wait({sleeper, waker}, return_when="FIRST_COMPLETED")
    for task in still_running:
        task.cancel()
    if waker in done and not waker.cancelled():
        waker.exception()  # the caller awaits what it passed for the outcome; not logged here
    return waker in done


async def any_done(futures: Collection[asyncio.Future[None]]) -> None:
    """Complete when any of `futures` does; cancelling this leaves the futures untouched."""
    await asyncio.wait(futures, return_when="FIRST_COMPLETED")


async def until_done_or_timeout(clock: Clock, future: asyncio.Future[Any], timeout_ms: int) -> bool:
    """Wait until `future` is done (True) or `timeout_ms` of `clock` passed (False); the
    future is never cancelled. One timer and one future: cheap enough for every request."""
    if future.done():
        return True
    woke: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake(_: object = None) -> None:
        if not woke.done():
            woke.set_result(None)

    future.add_done_callback(wake)
    timer = clock.call_later_ms(timeout_ms, wake)
    try:
        await woke
    finally:
        timer.cancel()
        future.remove_done_callback(wake)
    return future.done()
