"""The simulated event loop: virtual time, deterministic order, no threads, stuck detection."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sim.clock import LoopClock
from sim.loop import SimLoop, SimulationError, SimulationStuck, run_simulation

DAY_S = 24 * 3600


def test_a_simulated_day_of_idle_timers_passes_in_virtual_time() -> None:
    async def main(loop: SimLoop) -> list[float]:
        woke: list[float] = []

        async def sleeper(seconds: float) -> None:
            await asyncio.sleep(seconds)
            woke.append(loop.time())

        await asyncio.gather(*(sleeper(hours * 3600) for hours in (24, 1, 12)))
        return woke

    assert run_simulation(main) == [3600.0, 12 * 3600.0, float(DAY_S)]


def test_time_only_moves_while_every_task_waits() -> None:
    async def main(loop: SimLoop) -> tuple[int, int]:
        start = loop.time_ns()
        for _ in range(1_000):
            await asyncio.sleep(0)  # ready work never moves the clock
        busy = loop.time_ns() - start
        await asyncio.sleep(0.25)
        return busy, loop.time_ns() - start

    assert run_simulation(main) == (0, 250_000_000)


def test_ready_callbacks_and_equal_timers_run_in_scheduling_order() -> None:
    async def main(loop: SimLoop) -> list[str]:
        order: list[str] = []
        for name in ("a", "b", "c"):
            loop.call_later(1.0, order.append, f"timer-{name}")
        for name in ("a", "b", "c"):
            loop.call_soon(order.append, f"soon-{name}")

        async def task(name: str) -> None:
            order.append(f"task-{name}")
            await asyncio.sleep(1.0)
            order.append(f"task-{name}-woke")

        await asyncio.gather(*(task(name) for name in ("x", "y")))
        return order

    assert run_simulation(main) == [
        "soon-a",
        "soon-b",
        "soon-c",
        "task-x",
        "task-y",
        "timer-a",
        "timer-b",
        "timer-c",
        "task-x-woke",
        "task-y-woke",
    ]


def test_waiting_for_ever_is_detected_instead_of_hanging() -> None:
    async def main(loop: SimLoop) -> None:
        await loop.create_future()  # nothing will ever complete it

    with pytest.raises(SimulationStuck):
        run_simulation(main)


def test_threads_and_real_sockets_fail_loudly() -> None:
    async def main(loop: SimLoop) -> list[str]:
        failures = []
        with pytest.raises(SimulationError) as caught:
            loop.run_in_executor(None, print)
        failures.append(str(caught.value))
        with pytest.raises(SimulationError) as caught:
            loop.add_reader(0, print)
        failures.append(str(caught.value))
        with pytest.raises(SimulationError):
            await loop.getaddrinfo("example.com", 80)
        with pytest.raises(SimulationError):
            await asyncio.open_connection("agent-1", 9092)  # this loop has no network
        return failures

    assert len(run_simulation(main)) == 2


def test_a_thread_left_running_fails_the_run() -> None:
    release = threading.Event()

    async def main(loop: SimLoop) -> None:
        threading.Thread(target=release.wait, args=(10,), daemon=True).start()

    try:
        with pytest.raises(SimulationError, match="thread"):
            run_simulation(main)
    finally:
        release.set()


def test_loop_clock_reads_loop_time_and_keeps_wall_steps_and_drift() -> None:
    async def main(loop: SimLoop) -> None:
        clock = LoopClock(loop, start_wall_ms=1_000_000)
        await clock.sleep_ms(1_500)
        assert clock.monotonic_ms() == 1_500
        assert clock.now_ms() == 1_001_500
        clock.step_wall_ms(-10_000)
        assert (clock.monotonic_ms(), clock.now_ms()) == (1_500, 991_500)
        clock.set_drift_ppm(1_000)  # a thousandth fast
        await clock.sleep_ms(10_000)
        assert (clock.monotonic_ms(), clock.now_ms()) == (11_500, 1_001_510)
        await asyncio.sleep(0.0004)  # sub-millisecond loop time does not round up
        assert clock.monotonic_ms() == 11_500

    run_simulation(main)
