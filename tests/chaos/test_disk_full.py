"""Chaos: the agent's WAL filesystem fills up while clients produce (a small tmpfs mounted on
its data directory, filled by another file). Produce is answered KAFKA_STORAGE_ERROR, the
agent keeps running and serving reads, nothing acknowledged is lost, and once space returns
produce works again without a restart."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer

from sim.history import ACKS_ALL, ACKS_LEADER, FAULT_DISK_FULL, FAULT_HEAL
from tests.chaos.conftest import MakeWorld
from tests.chaos.run import Nemesis, Plan, run_clean
from tests.chaos.world import ChaosAgent, ChaosWorld, in_thread

FILESYSTEM_BYTES = 48 * 1024 * 1024
FILL_CHUNK_BYTES = 256 * 1024
WARM_UP_S = 3
FULL_S = 8
AFTER_S = 3
PROBE_TIMEOUT_S = 20
PROBE_TOPIC = "chaos-probe"  # not the workload's: its records are in no client's history
PROBE_VALUE_BYTES = 64 * 1024  # past the slack of the WAL file's last page


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of FILESYSTEM_BYTES, unmounted afterwards. Mounting needs root (or
    CAP_SYS_ADMIN), which CI has; without it the test fails saying so."""
    mount_point = tmp_path / "small-fs"
    mount_point.mkdir()
    size = f"size={FILESYSTEM_BYTES}"
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"cannot mount a small tmpfs (needs root): {result.stderr}", pytrace=False)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(directory: Path) -> Path:
    """Write a file until the filesystem has no byte left; the file."""
    filler = directory / "filler"
    chunk = b"\0" * FILL_CHUNK_BYTES
    with open(filler, "wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
                break
        while True:  # the last partial chunk's worth, byte by byte in halves
            size = len(chunk) // 2
            if size == 0:
                break
            chunk = chunk[:size]
            try:
                out.write(chunk)
            except OSError:
                continue
    return filler


def _produce_once(bootstrap: str) -> KafkaError | None:
    """One record with no retries: the error it is answered, or None when acknowledged."""
    outcome: list[KafkaError | None] = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "retries": 0,
            "message.timeout.ms": PROBE_TIMEOUT_S * 1000,
        }
    )
    value = b"p" * PROBE_VALUE_BYTES
    producer.produce(PROBE_TOPIC, value, on_delivery=lambda e, _m: outcome.append(e))
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    while not outcome and time.monotonic() < deadline:
        producer.poll(0.1)
    assert outcome, "the probe was never answered"
    return outcome[0]


def _nemesis(agent: ChaosAgent, probes: list[KafkaError | None]) -> Nemesis:
    async def fill_then_free(world: ChaosWorld) -> None:
        await in_thread(world.create_topic, PROBE_TOPIC, 1)
        await asyncio.sleep(WARM_UP_S)
        filler = await in_thread(_fill, agent.data_dir)
        world.fault(FAULT_DISK_FULL, agent.name, f"{filler} took the last byte")
        probes.append(await in_thread(_produce_once, world.bootstrap))
        await asyncio.sleep(FULL_S)
        assert agent.process is not None
        agent.process.check_alive()
        os.remove(filler)
        world.fault(FAULT_HEAL, agent.name)
        await asyncio.sleep(AFTER_S)
        probes.append(await in_thread(_produce_once, world.bootstrap))

    return fill_then_free


def test_wal_disk_full(make_world: MakeWorld, small_filesystem: Path) -> None:
    world = make_world(agents=1)
    (agent,) = world.agents
    agent.data_dir = small_filesystem / "agent"
    world.start_all()
    probes: list[KafkaError | None] = []
    plan = Plan(
        producers=((ACKS_ALL, True), (ACKS_LEADER, False)),
        records_per_producer=300,
        partitions=3,
    )
    run_clean(world, plan, _nemesis(agent, probes))
    full, freed = probes
    assert full is not None and full.code() == KafkaError.KAFKA_STORAGE_ERROR, full
    assert freed is None, f"produce still refused after space returned: {freed}"
    assert agent.process is not None
    log = agent.process.log_path.read_text(errors="replace")
    assert "WAL write failed (disk full" in log, log[-3000:]
    assert "WAL writes succeed again" in log, log[-3000:]
