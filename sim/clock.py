"""Virtual clock for simulation: time moves only when the simulation advances it."""

from __future__ import annotations

import asyncio
import heapq
import itertools

from streamhouse.ports.clock import Clock


class VirtualClock(Clock):
    """Manual time. `advance_ms` wakes sleepers whose deadline has passed, in deadline order.

    Wall time may be stepped (`step_wall_ms`) or drift apart from monotonic
    time; monotonic time never goes backwards.
    """

    def __init__(self, start_wall_ms: int = 1_700_000_000_000) -> None:
        self._monotonic_ms = 0
        self._wall_offset_ms = start_wall_ms
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now_ms(self) -> int:
        return self._monotonic_ms + self._wall_offset_ms

    def monotonic_ms(self) -> int:
        return self._monotonic_ms

    async def sleep_ms(self, duration_ms: int) -> None:
        assert duration_ms >= 0, duration_ms
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        deadline = self._monotonic_ms + duration_ms
        heapq.heappush(self._sleepers, (deadline, next(self._order), future))
        await future

    def step_wall_ms(self, delta_ms: int) -> None:
        """Step wall time (forwards or backwards) without moving monotonic time."""
        self._wall_offset_ms += delta_ms

    def next_deadline_ms(self) -> int | None:
        """Monotonic time of the earliest pending sleeper, if any."""
        self._drop_cancelled()
        return self._sleepers[0][0] if self._sleepers else None

    def advance_ms(self, delta_ms: int) -> None:
        """Move time forward and wake every sleeper whose deadline is reached."""
        assert delta_ms >= 0, delta_ms
        self._monotonic_ms += delta_ms
        while self._sleepers and self._sleepers[0][0] <= self._monotonic_ms:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def _drop_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
