"""The real clock: the operating system's wall and monotonic time, asyncio sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from streamhouse.ports.clock import Clock, Timer

# Linux's CLOCK_MONOTONIC stands still while the machine is suspended, so a lease holder
# woken from a suspend would believe less time passed than did (engine/leases.py);
# CLOCK_BOOTTIME counts the suspension too. Elsewhere: time.monotonic's clock.
_MONOTONIC_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


class SystemClock(Clock):
    """Wall time from time.time(), monotonic time that counts suspension (CLOCK_BOOTTIME)."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic_ms(self) -> int:
        return time.clock_gettime_ns(_MONOTONIC_CLOCK) // 1_000_000

    async def sleep_ms(self, duration_ms: int) -> None:
        assert duration_ms >= 0, duration_ms
        await asyncio.sleep(duration_ms / 1000)

    def call_later_ms(self, duration_ms: int, callback: Callable[[], None]) -> Timer:
        assert duration_ms >= 0, duration_ms
        return asyncio.get_running_loop().call_later(duration_ms / 1000, callback)
