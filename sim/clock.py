"""Virtual clocks for simulation: time moves only when the simulation moves it.

`LoopClock` is the Clock port on a SimLoop's virtual time (the clock of a
whole simulation); `VirtualClock` is advanced by hand (unit tests of one
component). Both let wall time step or drift while monotonic time never goes
backwards.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

from streamhouse.ports.clock import Clock, Timer

if TYPE_CHECKING:
    from sim.loop import SimLoop

DEFAULT_START_WALL_MS = 1_700_000_000_000
PPM = 1_000_000


class VirtualWallClock(Clock):
    """Wall time derived from monotonic time: an offset that may step, and a drift rate."""

    def __init__(self, start_wall_ms: int) -> None:
        self._wall_offset_ms = start_wall_ms
        self._drift_ppm = 0
        self._drift_origin_ms = 0

    def now_ms(self) -> int:
        monotonic_ms = self.monotonic_ms()
        drift_ms = (monotonic_ms - self._drift_origin_ms) * self._drift_ppm // PPM
        return monotonic_ms + self._wall_offset_ms + drift_ms

    def step_wall_ms(self, delta_ms: int) -> None:
        """Step wall time (forwards or backwards) without moving monotonic time."""
        self._wall_offset_ms += delta_ms

    def set_drift_ppm(self, drift_ppm: int) -> None:
        """From now on wall time runs `drift_ppm` parts per million fast (or slow, if < 0)."""
        wall_ms, monotonic_ms = self.now_ms(), self.monotonic_ms()
        self._wall_offset_ms = wall_ms - monotonic_ms
        self._drift_origin_ms = monotonic_ms
        self._drift_ppm = drift_ppm


class LoopClock(VirtualWallClock):
    """The Clock port of a simulation: monotonic time is the SimLoop's virtual time and
    sleeping is asyncio sleeping on that loop."""

    def __init__(self, loop: SimLoop, start_wall_ms: int = DEFAULT_START_WALL_MS) -> None:
        super().__init__(start_wall_ms)
        self._loop = loop

    def monotonic_ms(self) -> int:
        return self._loop.time_ns() // 1_000_000

    def monotonic_s(self) -> float:
        """Monotonic time at the loop's full resolution (clients compute waits from it: a
        clock in whole milliseconds would have them wait nanoseconds over and over)."""
        return self._loop.time()

    async def sleep_ms(self, duration_ms: int) -> None:
        assert duration_ms >= 0, duration_ms
        deadline_ms = self.monotonic_ms() + duration_ms
        # float seconds may land a nanosecond short of the deadline: top up until reached
        while (left_ms := deadline_ms - self.monotonic_ms()) > 0:
            await asyncio.sleep(left_ms / 1000)

    def call_later_ms(self, duration_ms: int, callback: Callable[[], None]) -> Timer:
        assert duration_ms >= 0, duration_ms
        return _LoopTimer(self, self.monotonic_ms() + duration_ms, callback)


class _LoopTimer:
    """A LoopClock timer, topped up as `sleep_ms` is when the loop wakes a hair early."""

    def __init__(self, clock: LoopClock, deadline_ms: int, callback: Callable[[], None]) -> None:
        self._clock = clock
        self._deadline_ms = deadline_ms
        self._callback = callback
        self._handle = self._schedule()

    def _schedule(self) -> asyncio.TimerHandle:
        left_ms = self._deadline_ms - self._clock.monotonic_ms()
        return asyncio.get_running_loop().call_later(max(left_ms, 0) / 1000, self._fire)

    def _fire(self) -> None:
        if self._clock.monotonic_ms() < self._deadline_ms:
            self._handle = self._schedule()
        else:
            self._callback()

    def cancel(self) -> None:
        self._handle.cancel()


class VirtualClock(VirtualWallClock):
    """Manual time. `advance_ms` wakes sleepers whose deadline has passed, in deadline order.

    Wall time may be stepped (`step_wall_ms`) or drift apart from monotonic
    time; monotonic time never goes backwards.
    """

    def __init__(self, start_wall_ms: int = DEFAULT_START_WALL_MS) -> None:
        super().__init__(start_wall_ms)
        self._monotonic_ms = 0
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic_ms(self) -> int:
        return self._monotonic_ms

    async def sleep_ms(self, duration_ms: int) -> None:
        await self._sleeper(duration_ms)

    def _sleeper(self, duration_ms: int) -> asyncio.Future[None]:
        """A future that `advance_ms` completes once `duration_ms` have passed."""
        assert duration_ms >= 0, duration_ms
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        deadline = self._monotonic_ms + duration_ms
        heapq.heappush(self._sleepers, (deadline, next(self._order), future))
        return future

    def call_later_ms(self, duration_ms: int, callback: Callable[[], None]) -> Timer:
        future = self._sleeper(duration_ms)
        future.add_done_callback(lambda done: None if done.cancelled() else callback())
        return future

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
