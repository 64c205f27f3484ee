"""Waiting on the Clock port: sleep for a while unless something happens first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Collection

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
