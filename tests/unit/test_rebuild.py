"""A lost metadata store rebuilt from the bucket alone, on real adapters (a local directory and
SQLite): the newest snapshot, then the footers of later objects; the log reads back byte for
byte, producer states and committed offsets come back, and leases start far above."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from streamhouse.agent import Agent, open_agent
from streamhouse.config import Settings
from streamhouse.engine.rebuild import Rebuilder
from streamhouse.errors import RebuildRefused
from streamhouse.io.sql.store import open_sql_metadata
from streamhouse.kafka.batch_header import with_base_offset
from streamhouse.kafka.records import SimpleRecord, build_batch
from streamhouse.log.snapshot_format import SNAPSHOT_PREFIX
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import CommittedOffset
from streamhouse.ports.snapshots import REBUILD_EPOCH_LEAP, StoreState
from tests.unit.in_process import kill, read_all

TOPIC = "orders"
PARTITIONS = 3
BATCHES = 6
PRODUCER_EPOCH = 0


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(
        data_dir=str(tmp_path / "data"), flush_interval_ms=10, kafka_port=0, http_port=-1
    ).with_overrides(**overrides)


async def _produce(
    agent: Agent, round_: int, producer_id: int, first_sequence: int
) -> dict[int, list[bytes]]:
    """One idempotent batch per partition per step, acks=all; the batches as stored."""
    stored: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    for index in range(BATCHES):
        for partition in range(PARTITIONS):
            tp = TopicPartition(TOPIC, partition)
            records = [
                SimpleRecord(
                    b"k%d" % r,
                    b"round-%d-%d-%d-%d" % (round_, partition, index, r),
                    (),
                    1_700_000_000_000 + r,
                )
                for r in range(3)
            ]
            batch = build_batch(
                records,
                producer_id=producer_id,
                producer_epoch=PRODUCER_EPOCH,
                base_sequence=first_sequence + index * 3,
            )
            result = await agent.log.append(tp, batch, durable=True)
            assert result.durable is not None
            await result.durable
            stored[partition].append(
                with_base_offset(batch, result.base_offset, result.leader_epoch)
            )
    return stored


def _lose_metadata(tmp_path: Path) -> None:
    for file in (tmp_path / "data").glob("metadata.db*"):
        file.unlink()


async def _wait_for_snapshot(agent: Agent) -> None:
    for _ in range(500):
        if agent.snapshots.stats.written:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no snapshot was written after a committed flush")


async def _snapshot_then_more_then_kill(tmp_path: Path) -> tuple[dict[int, list[bytes]], int]:
    settings = _settings(tmp_path, snapshot_interval_ms=600_000)
    agent = await open_agent(settings)
    await agent.admin.create_topic(TOPIC, PARTITIONS, {"retention.ms": "3600000"})
    producer_id = await agent.metadata.allocate_producer_id()
    first = await _produce(agent, 1, producer_id, 0)
    await _wait_for_snapshot(agent)
    await agent.metadata.commit_offsets(
        "billing", {TopicPartition(TOPIC, 0): CommittedOffset(4, 0, "m", 1)}
    )
    await agent.admin.create_topic("created-later", 2, {})
    await agent.log.append(
        TopicPartition("created-later", 1),
        build_batch([SimpleRecord(None, b"x", (), 5)]),
        durable=True,
    )
    second = await _produce(agent, 2, producer_id, BATCHES * 3)  # after the snapshot: footers only
    epoch = agent.log.led_partition(TopicPartition(TOPIC, 0)).state.leader_epoch  # type: ignore[union-attr]
    await asyncio.sleep(0.1)
    await kill(agent)
    return {p: first[p] + second[p] for p in range(PARTITIONS)}, epoch


def test_the_newest_snapshot_and_later_footers_rebuild_the_log(tmp_path: Path) -> None:
    async def scenario() -> None:
        durable, epoch = await _snapshot_then_more_then_kill(tmp_path)
        _lose_metadata(tmp_path)
        agent = await open_agent(_settings(tmp_path, snapshot_interval_ms=600_000))
        report = agent.rebuilt
        assert report is not None and report.snapshot_key is not None
        assert report.objects_new > 0 and report.segments_added > 0
        assert "created-later" in report.topics_created
        for partition in range(PARTITIONS):
            assert await read_all(agent, TopicPartition(TOPIC, partition)) == durable[partition]
        topic = await agent.metadata.get_topic(TOPIC)
        assert topic is not None and topic.configs == {"retention.ms": "3600000"}
        state = await agent.metadata.get_partition(TopicPartition(TOPIC, 0))
        assert state.leader_epoch >= epoch + REBUILD_EPOCH_LEAP
        [producer] = await agent.metadata.list_producer_states(TopicPartition(TOPIC, 0))
        assert producer.batches[-1].last_sequence == BATCHES * 3 * 2 - 1, "folded from blocks"
        # the idempotent producer's next batch is accepted, a retry of its last is a duplicate
        more = await _produce(agent, 3, producer.producer_id, BATCHES * 3 * 2)
        assert int.from_bytes(more[0][0][:8], "big") == BATCHES * 3 * 2
        await agent.close()

    asyncio.run(scenario())


def test_a_clean_shutdown_snapshot_brings_back_committed_offsets(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = _settings(tmp_path, snapshot_interval_ms=600_000)
        agent = await open_agent(settings)
        await agent.admin.create_topic(TOPIC, PARTITIONS, {})
        producer_id = await agent.metadata.allocate_producer_id()
        durable = await _produce(agent, 1, producer_id, 0)
        offset = CommittedOffset(7, 0, "meta", 1)
        await agent.metadata.commit_offsets("billing", {TopicPartition(TOPIC, 1): offset})
        await _produce(agent, 2, producer_id, BATCHES * 3)  # owes a snapshot: at shutdown
        await agent.close()
        _lose_metadata(tmp_path)
        agent = await open_agent(settings)
        assert agent.rebuilt is not None and agent.rebuilt.objects_new == 0
        assert await agent.metadata.fetch_offsets("billing") == {TopicPartition(TOPIC, 1): offset}
        assert (await read_all(agent, TopicPartition(TOPIC, 0)))[:BATCHES] == durable[0]
        await agent.close()

    asyncio.run(scenario())


def test_footers_alone_rebuild_the_log_without_any_snapshot(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = _settings(tmp_path, snapshot_interval_ms=0)
        agent = await open_agent(settings)
        await agent.admin.create_topic(TOPIC, PARTITIONS, {})
        durable = await _produce(agent, 1, await agent.metadata.allocate_producer_id(), 0)
        await agent.close()
        assert not list((tmp_path / "data" / "objects" / "metadata").rglob("*"))
        _lose_metadata(tmp_path)
        agent = await open_agent(settings)
        assert agent.rebuilt is not None and agent.rebuilt.snapshot_key is None
        topic = await agent.metadata.get_topic(TOPIC)
        assert topic is not None and topic.partition_count == PARTITIONS
        for partition in range(PARTITIONS):
            assert await read_all(agent, TopicPartition(TOPIC, partition)) == durable[partition]
        await agent.close()

    asyncio.run(scenario())


def test_a_damaged_newest_snapshot_falls_back_to_an_older_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = _settings(tmp_path, snapshot_interval_ms=1)
        agent = await open_agent(settings)
        await agent.admin.create_topic(TOPIC, PARTITIONS, {})
        durable = await _produce(agent, 1, await agent.metadata.allocate_producer_id(), 0)
        await agent.close()
        snapshots = sorted((tmp_path / "data" / "objects" / "metadata" / "snapshots").iterdir())
        assert 2 <= len(snapshots) <= settings.snapshot_keep_count, "older ones are pruned"
        newest = snapshots[-1]
        newest.write_bytes(newest.read_bytes()[:-7] + b"damaged")
        _lose_metadata(tmp_path)
        agent = await open_agent(settings)
        report = agent.rebuilt
        assert report is not None and [k for k, _ in report.snapshots_damaged] == [
            f"{SNAPSHOT_PREFIX}{newest.name}"
        ]
        assert report.snapshot_key == f"{SNAPSHOT_PREFIX}{snapshots[-2].name}"
        for partition in range(PARTITIONS):
            assert await read_all(agent, TopicPartition(TOPIC, partition)) == durable[partition]
        await agent.close()

    asyncio.run(scenario())


def test_a_store_in_use_is_never_rebuilt(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = _settings(tmp_path)
        agent = await open_agent(settings)
        assert agent.rebuilt is None, "a new cluster with an empty bucket has nothing to rebuild"
        await agent.admin.create_topic(TOPIC, 1, {})
        await agent.close()
        agent = await open_agent(settings)
        assert agent.rebuilt is None
        store = agent.metadata
        rebuilder = Rebuilder(
            agent.log._clock,
            agent.objects,
            "operator",
            snapshots=store,
            topics=store,
            leases=store,
            producers=store,
        )
        with pytest.raises(RebuildRefused, match="in use"):
            await rebuilder.rebuild()
        await agent.close()

    asyncio.run(scenario())


def test_an_agent_started_mid_rebuild_completes_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = _settings(tmp_path, snapshot_interval_ms=600_000)
        agent = await open_agent(settings)
        await agent.admin.create_topic(TOPIC, PARTITIONS, {})
        durable = await _produce(agent, 1, await agent.metadata.allocate_producer_id(), 0)
        await agent.close()
        _lose_metadata(tmp_path)
        # a rebuild that restored the snapshot and crashed before applying the footers
        store = open_sql_metadata(f"sqlite:///{tmp_path / 'data' / 'metadata.db'}")
        assert await store.begin_rebuild(None, "crashed-agent") is not None
        await store.close()
        agent = await open_agent(settings)
        assert agent.rebuilt is not None and not agent.rebuilt.began_here
        assert agent.rebuilt.completed_here
        for partition in range(PARTITIONS):
            assert await read_all(agent, TopicPartition(TOPIC, partition)) == durable[partition]
        await agent.close()

    asyncio.run(scenario())


class StaleFirstLook:
    """The real store, whose first look at its state is the one an agent took just before
    another agent rebuilt it (two agents starting together)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._looked = False

    async def store_state(self) -> StoreState:
        if not self._looked:
            self._looked = True
            return StoreState.BLANK
        state: StoreState = await self._store.store_state()
        return state

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_an_agent_that_lost_the_race_to_rebuild_starts_on_the_rebuilt_store(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        settings = _settings(tmp_path, snapshot_interval_ms=600_000)
        agent = await open_agent(settings)
        await agent.admin.create_topic(TOPIC, PARTITIONS, {})
        await _produce(agent, 1, await agent.metadata.allocate_producer_id(), 0)
        await agent.close()
        _lose_metadata(tmp_path)
        winner = await open_agent(settings)
        assert winner.rebuilt is not None
        store = winner.metadata
        late = Rebuilder(
            winner.log._clock,
            winner.objects,
            "late-agent",
            snapshots=StaleFirstLook(store),  # type: ignore[arg-type]
            topics=store,
            leases=store,
            producers=store,
        )
        assert await late.rebuild_if_needed() is None
        with pytest.raises(RebuildRefused):
            await late.rebuild()
        await winner.close()

    asyncio.run(scenario())
