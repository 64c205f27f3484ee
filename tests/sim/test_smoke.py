"""F2 simulation smoke: the real agent (listener, LogStore, WAL, flusher) on sim ports and an
aiokafka client, all on the simulated loop and network; byte-exact and reproducible."""

from __future__ import annotations

import time

import aiokafka.conn  # type: ignore[import-untyped]
import pytest

from sim.clock import LoopClock
from sim.loop import SimLoop, run_simulation
from sim.pins import pinned_aiokafka
from sim.rng import SeededRng
from sim.smoke import SmokeOptions, run_smoke
from tests.sim.processes import run_sim

FAULTY_SEEDS = range(1, 9)
RUN_TIMEOUT_S = 60


def test_acks_1_and_all_come_back_byte_exact() -> None:
    options = SmokeOptions(seed=11)
    result = run_smoke(options)
    assert result.problems == []
    assert result.acked == 2 * options.records_per_ack_mode
    assert result.unacked == 0
    assert result.consumed == result.acked  # no faults, no retries: no duplicates
    lines = result.trace.text()
    assert "net.deliver" in lines and "client.ack acks=all" in lines


def test_clients_retry_through_delays_resets_clogs_and_a_partition() -> None:
    resets = 0
    for seed in FAULTY_SEEDS:
        result = run_smoke(SmokeOptions.faulty(seed))
        assert result.problems == [], (seed, result.problems)
        assert result.acked + result.unacked == 2 * SmokeOptions(seed).records_per_ack_mode
        assert result.consumed >= result.acked
        resets += result.resets
    assert resets > 0, "the faulty network never reset a connection: the faults are not exercised"


def _run_in_new_process(seed: int) -> str:
    done = run_sim(
        "smoke", "--seed", str(seed), "--trace", "--faulty-network", timeout_s=RUN_TIMEOUT_S
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow  # in make test-all: make test stays under 3 minutes
def test_one_seed_gives_byte_identical_traces_in_separate_processes() -> None:
    first, second = _run_in_new_process(7), _run_in_new_process(7)
    assert first.startswith("sim run seed=7 ")
    assert "net.reset" in first  # the run went through client retries
    assert first.count("\n") > 100
    assert first == second


def test_aiokafka_reads_the_simulation_clock_and_seed_only_while_pinned() -> None:
    async def main(loop: SimLoop) -> tuple[float, float, list[int]]:
        clock = LoopClock(loop, start_wall_ms=5_000)
        await clock.sleep_ms(1_500)
        with pinned_aiokafka(clock, SeededRng(1)):
            draws = [aiokafka.conn.random.randint(0, 1_000) for _ in range(5)]
            return aiokafka.conn.time.monotonic(), aiokafka.conn.time.time(), draws

    monotonic_s, wall_s, draws = run_simulation(main)
    assert (monotonic_s, wall_s) == (1.5, 6.5)
    assert run_simulation(main)[2] == draws  # the same seed, the same draws
    assert aiokafka.conn.time is time  # restored afterwards
