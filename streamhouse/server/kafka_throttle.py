"""Client quotas at the Kafka door: what a request counts against its client's quota, the
throttle time its answer carries, and the connection's mute (KIP-219).

A throttled answer goes out at once with its `throttle_time_ms`, and the connection reads
nothing more until that time has passed: the listener sits out `ConnectionMute` before each
read and each request (the connection's own task sleeps; no other connection waits).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from streamhouse.engine.quotas import client_of
from streamhouse.kafka.connection import Request
from streamhouse.ports.clock import Clock
from streamhouse.server.kafka_context import PRINCIPAL, KafkaContext
from streamhouse.tenancy.quotas import THROTTLE_MS_MAX


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
