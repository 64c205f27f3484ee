"""Restart after the lease moved on: the WAL's batches of the old epoch are dropped, counted
(also on /metrics) and logged, never appended at new offsets; the partition goes on from
its durable end in the new epoch."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import generate_latest

from streamhouse.config import Settings
from streamhouse.engine.log_store import LogStore
from streamhouse.kafka.batch_header import parse_header
from streamhouse.kafka.records import SimpleRecord, build_batch
from streamhouse.names import TopicPartition
from streamhouse.server.kafka_listener import ListenerStats
from streamhouse.server.metrics import AgentGauges, agent_registry
from tests.unit.log_world import LogWorld

TP = TopicPartition("t", 0)
SETTINGS = Settings()
OLD_BATCHES = 3


class World(LogWorld):
    """agent-a's disk across restarts; the metadata store other agents share."""

    def __init__(self) -> None:
        super().__init__(SETTINGS, seed=17)

    async def start(self) -> LogStore:
        return await self.open(TP.topic, 1, "agent-a")

    async def lease_taken_meanwhile(self, *, released: bool) -> int:
        """While agent-a is down its lease expires and agent-b takes it; returns b's epoch."""
        self.store_clock.advance_ms(SETTINGS.lease_ttl_ms)
        lease = await self.metadata.acquire_lease(TP, "agent-b", SETTINGS.lease_ttl_ms)
        assert lease is not None
        if released:
            await self.metadata.release_lease(TP, "agent-b")
        return lease.epoch


async def _write_acked_batches(world: World) -> int:
    """agent-a acknowledges OLD_BATCHES acks=1 batches (in its WAL, never flushed), then
    stops without flushing; returns their epoch."""
    log = await world.start()
    for index in range(OLD_BATCHES):
        result = await log.append(TP, _batch(b"old-%d" % index), durable=False)
        await result.synced
        log.confirm_leader_ack(result)
    epoch = result.leader_epoch
    await log.close(flush=False)
    return epoch


def _batch(value: bytes) -> bytes:
    return build_batch([SimpleRecord(None, value, (), 5)])


def _dropped_metric(log: LogStore) -> float:
    registry = agent_registry(log, lambda: AgentGauges(kafka_connections=0), ListenerStats())
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("streamhouse_recovery_dropped_batches_total "):
            return float(line.split()[1])
    raise AssertionError("no streamhouse_recovery_dropped_batches_total on /metrics")


def test_old_epoch_batches_are_dropped_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        world = World()
        old_epoch = await _write_acked_batches(world)
        taken_epoch = await world.lease_taken_meanwhile(released=True)
        with caplog.at_level(logging.WARNING, logger="streamhouse.recovery"):
            log = await world.start()
        new_epoch = (await log.partition(TP)).state.leader_epoch
        assert new_epoch == taken_epoch + 1 > old_epoch
        assert (log.recovery.dropped_batches, log.recovery.replayed_batches) == (OLD_BATCHES, 0)
        assert _dropped_metric(log) == OLD_BATCHES
        (message,) = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
        assert f"dropped {OLD_BATCHES} WAL batch(es) of {TP}" in message
        assert f"epoch(s) {old_epoch}:" in message and f"at epoch {new_epoch}" in message

        # Never appended at new offsets: the log restarts at its durable end, in the new epoch.
        assert (await log.partition(TP)).state.log_end_offset == 0
        result = await log.append(TP, _batch(b"new"), durable=False)
        await result.synced
        assert result.base_offset == 0
        read = await log.reads.read(TP, 0, 1 << 20)
        assert read.high_watermark == 1
        headers = [parse_header(batch) for batch in read.batches]
        assert [(h.base_offset, h.partition_leader_epoch) for h in headers] == [(0, new_epoch)]
        assert b"old" not in b"".join(read.batches)

    asyncio.run(main())


def test_batches_of_a_partition_another_agent_leads_are_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        world = World()
        old_epoch = await _write_acked_batches(world)
        await world.lease_taken_meanwhile(released=False)  # agent-b still leads at restart
        with caplog.at_level(logging.WARNING, logger="streamhouse.recovery"):
            log = await world.start()
        assert log.recovery.dropped_batches == OLD_BATCHES
        assert log.led_partition(TP) is None
        (message,) = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
        assert f"epoch(s) {old_epoch}: this agent leads it no more" in message

    asyncio.run(main())


def test_a_restart_in_the_same_epoch_keeps_its_batches() -> None:
    async def main() -> None:
        world = World()
        await _write_acked_batches(world)
        log = await world.start()  # nobody took the lease: same epoch, batches replayed
        assert (log.recovery.dropped_batches, log.recovery.replayed_batches) == (0, OLD_BATCHES)
        assert _dropped_metric(log) == 0
        assert (await log.reads.read(TP, 0, 1 << 20)).high_watermark == OLD_BATCHES

    asyncio.run(main())
