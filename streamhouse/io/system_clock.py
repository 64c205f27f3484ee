"""The real clock: the operating system's wall and monotonic time, asyncio sleeping."""

from __future__ import annotations

import asyncio
import time

from streamhouse.ports.clock import Clock


class SystemClock(Clock):
    """Wall time from time.time(), monotonic time from time.monotonic()."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000

    async def sleep_ms(self, duration_ms: int) -> None:
        assert duration_ms >= 0, duration_ms
        await asyncio.sleep(duration_ms / 1000)
