"""Client quotas at the Kafka door: what a request counts against its client's quota, the
throttle time its answer carries, and the connection's mute (KIP-219).

A request's share of the agent's time (Kafka's `request_percentage`) is the time its handler
actually ran: each step of its coroutines timed alone (`BusyTime`), so the time other
connections ran between its steps, and the time it waited for the disk or a long poll, are
not its own. It is measured only for an org whose quotas limit it.

A throttled answer goes out at once with its `throttle_time_ms`, and the connection reads
nothing more until that time has passed: the listener sits out `ConnectionMute` before each
read and each request (the connection's own task sleeps; no other connection waits).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Coroutine, Generator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from streamhouse.engine.quotas import client_of
from streamhouse.kafka.connection import Request
from streamhouse.ports.clock import Clock
from streamhouse.server.kafka_context import PRINCIPAL, KafkaContext
from streamhouse.tenancy.quotas import REQUEST_PERCENTAGE, THROTTLE_MS_MAX

T = TypeVar("T")
PERCENT = 100  # a request busy for a second uses 100 % of a thread for that second


@dataclass
class ConnectionMute:
    """Until when (monotonic ms) a throttled connection reads nothing."""

    until_ms: int = 0

    def mute(self, now_ms: int, throttle_ms: int) -> None:
        self.until_ms = max(self.until_ms, now_ms + throttle_ms)

    async def sit_out(self, clock: Clock) -> None:
        """Sleep while muted; never longer than the longest throttle."""
        left_ms = self.until_ms - clock.monotonic_ms()
        if left_ms > 0:
            await clock.sleep_ms(min(left_ms, THROTTLE_MS_MAX))


MUTE: ContextVar[ConnectionMute | None] = ContextVar("mute", default=None)
"""The mute of the connection a handler serves (set by the listener in the connection's task;
None outside a connection, where nothing is muted)."""


async def throttle_of(ctx: KafkaContext, request: Request, key: str, amount: float) -> int:
    """Count `amount` against the quota `key` of the request's client; its throttle time in ms,
    the connection muted for it."""
    if ctx.quotas is None:
        return 0
    org, user = client_of(PRINCIPAL.get())
    throttle_ms = await ctx.quotas.record(org, user, request.client_id or "", key, amount)
    mute = MUTE.get()
    if throttle_ms and mute is not None:
        mute.mute(ctx.clock.monotonic_ms(), throttle_ms)
    return throttle_ms


@dataclass
class BusyTime:
    """The time a request's handler ran, summed over the steps of its coroutines."""

    seconds: float = 0.0

    def timed(self, awaited: Awaitable[T]) -> Coroutine[Any, Any, T]:
        """`awaited` as a coroutine, each of its steps counted."""
        return self._run(awaited)

    async def _run(self, awaited: Awaitable[T]) -> T:
        return await _TimedSteps(awaited, self)


class _TimedSteps(Generator[Any, Any, T]):
    """Drives a coroutine as `await` does, timing each step it takes."""

    def __init__(self, awaited: Awaitable[T], busy: BusyTime) -> None:
        self._coroutine = awaited.__await__()
        self._busy = busy

    def __await__(self) -> Generator[Any, Any, T]:
        return self

    def send(self, value: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._coroutine.send(value)
        finally:
            self._busy.seconds += time.perf_counter() - started

    def throw(self, *error: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._coroutine.throw(*error)
        finally:
            self._busy.seconds += time.perf_counter() - started

    def close(self) -> None:
        self._coroutine.close()


def request_time_limited(ctx: KafkaContext) -> bool:
    """Whether the connection's client has a request-time quota to measure against."""
    if ctx.quotas is None:
        return False
    org, _ = client_of(PRINCIPAL.get())
    return ctx.quotas.limits_known(org, REQUEST_PERCENTAGE)


async def charge_request_time(ctx: KafkaContext, request: Request, busy: BusyTime) -> None:
    """Count the request's handler time against its client's request-time quota; the
    connection muted when over it."""
    await throttle_of(ctx, request, REQUEST_PERCENTAGE, busy.seconds * PERCENT)
