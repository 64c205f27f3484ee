"""Conformance of the Clock and Rng adapters (system and simulated)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from sim.clock import LoopClock, VirtualClock
from sim.loop import SimLoop, run_simulation
from sim.rng import SeededRng
from streamhouse.io.system_clock import SystemClock
from streamhouse.io.system_rng import SystemRng
from streamhouse.ports.clock import Clock
from streamhouse.ports.rng import Rng

SLEEP_MS = 15


async def _sleep_and_measure(clock: Clock) -> int:
    """Sleep SLEEP_MS on `clock`, advancing it if it is virtual; returns elapsed monotonic ms."""
    start = clock.monotonic_ms()
    sleeper = asyncio.ensure_future(clock.sleep_ms(SLEEP_MS))
    if isinstance(clock, VirtualClock):
        await asyncio.sleep(0)
        clock.advance_ms(SLEEP_MS - 1)
        await asyncio.sleep(0)
        assert not sleeper.done(), "woke before its deadline"
        clock.advance_ms(1)
    await sleeper
    return clock.monotonic_ms() - start


@pytest.fixture(params=["system", "virtual", "loop"])
def clock(request: pytest.FixtureRequest) -> Iterator[Clock]:
    if request.param != "loop":
        yield SystemClock() if request.param == "system" else VirtualClock()
        return
    loop = SimLoop()  # for readings; sleeping is measured on run_simulation's loop below
    yield LoopClock(loop)
    loop.close()


def test_sleep_waits_at_least_its_duration(clock: Clock) -> None:
    if isinstance(clock, LoopClock):

        async def on_the_loop(loop: SimLoop) -> int:
            return await _sleep_and_measure(LoopClock(loop))

        assert run_simulation(on_the_loop) >= SLEEP_MS
        return
    assert asyncio.run(_sleep_and_measure(clock)) >= SLEEP_MS


def test_monotonic_never_goes_back_and_wall_is_epoch_ms(clock: Clock) -> None:
    readings = [clock.monotonic_ms() for _ in range(100)]
    assert readings == sorted(readings)
    assert clock.now_ms() > 1_600_000_000_000  # after 2020: milliseconds since the epoch


def test_virtual_clock_wakes_sleepers_in_deadline_order() -> None:
    clock = VirtualClock()
    woken: list[int] = []

    async def sleeper(duration_ms: int) -> None:
        await clock.sleep_ms(duration_ms)
        woken.append(duration_ms)

    async def main() -> None:
        tasks = [asyncio.ensure_future(sleeper(d)) for d in (30, 10, 20)]
        await asyncio.sleep(0)
        assert clock.next_deadline_ms() == 10
        clock.advance_ms(100)
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert woken == [10, 20, 30]


def test_virtual_wall_clock_steps_without_moving_monotonic() -> None:
    clock = VirtualClock()
    wall, mono = clock.now_ms(), clock.monotonic_ms()
    clock.step_wall_ms(-5_000)
    assert clock.now_ms() == wall - 5_000
    assert clock.monotonic_ms() == mono


@pytest.fixture(params=["system", "seeded"])
def rng(request: pytest.FixtureRequest) -> Rng:
    return SystemRng() if request.param == "system" else SeededRng(99)


def test_rng_ranges(rng: Rng) -> None:
    floats = [rng.random() for _ in range(500)]
    assert all(0.0 <= value < 1.0 for value in floats)
    ints = {rng.randint(3, 5) for _ in range(500)}
    assert ints == {3, 4, 5}
    assert len(rng.randbytes(17)) == 17
    assert rng.randbytes(0) == b""


def test_seeded_rng_is_reproducible_and_forks_independently() -> None:
    first, second = SeededRng(5), SeededRng(5)
    assert [first.randint(0, 10**9) for _ in range(10)] == [
        second.randint(0, 10**9) for _ in range(10)
    ]
    assert SeededRng(5).fork("disk").randbytes(8) == SeededRng(5).fork("disk").randbytes(8)
    assert SeededRng(5).fork("disk").randbytes(8) != SeededRng(5).fork("net").randbytes(8)


async def _timer_and_measure(clock: Clock) -> tuple[int, bool]:
    """Set a SLEEP_MS timer and a cancelled one; returns elapsed ms when the first fires and
    whether the cancelled one ran."""
    start = clock.monotonic_ms()
    fired: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    cancelled_ran = []
    clock.call_later_ms(SLEEP_MS, lambda: fired.set_result(clock.monotonic_ms()))
    clock.call_later_ms(SLEEP_MS // 2, lambda: cancelled_ran.append(True)).cancel()
    if isinstance(clock, VirtualClock):
        clock.advance_ms(SLEEP_MS - 1)
        await asyncio.sleep(0)
        assert not fired.done(), "fired before its deadline"
        clock.advance_ms(1)
    fired_at = await fired
    await asyncio.sleep(0)
    return fired_at - start, bool(cancelled_ran)


def test_a_timer_fires_after_its_duration_and_a_cancelled_one_never(clock: Clock) -> None:
    if isinstance(clock, LoopClock):

        async def on_the_loop(loop: SimLoop) -> tuple[int, bool]:
            return await _timer_and_measure(LoopClock(loop))

        elapsed_ms, cancelled_ran = run_simulation(on_the_loop)
    else:
        elapsed_ms, cancelled_ran = asyncio.run(_timer_and_measure(clock))
    assert elapsed_ms >= SLEEP_MS
    assert not cancelled_ran
