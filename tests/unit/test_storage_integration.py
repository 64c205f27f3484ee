"""The whole storage engine on real adapters: local disk, SQLite or PostgreSQL, a local
directory or S3 (moto's server). Batches come back byte for byte after a clean restart
(from objects) and after a kill (from the WAL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streamhouse.agent import Agent, open_agent
from streamhouse.config import Settings
from streamhouse.kafka.batch_header import with_base_offset
from streamhouse.kafka.records import SimpleRecord, build_batch
from streamhouse.names import TopicPartition
from tests.unit.in_process import kill, read_all

TOPIC = "orders"
PARTITIONS = 3
BATCHES_PER_PARTITION = 20
RECORDS_PER_BATCH = 5


def _batch(partition: int, index: int) -> bytes:
    records = [
        SimpleRecord(
            b"key-%d" % r if r % 2 else None,
            None if r == 3 else b"value-%d-%d-%d" % (partition, index, r) * 7,
            (("trace", b"t%d" % r), ("empty", None)),
            1_700_000_000_000 + index * 10 + r,
        )
        for r in range(RECORDS_PER_BATCH)
    ]
    return build_batch(records)


async def _produce(agent: Agent, *, durable: bool) -> dict[int, list[bytes]]:
    """Append every batch; returns, per partition, the batches as stored (offsets assigned)."""
    stored: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    waits = []
    for index in range(BATCHES_PER_PARTITION):
        for partition in range(PARTITIONS):
            batch = _batch(partition, index)
            result = await agent.log.append(
                TopicPartition(TOPIC, partition), batch, durable=durable
            )
            leader_epoch = agent.log.led_partition(TopicPartition(TOPIC, partition))
            assert leader_epoch is not None
            stored[partition].append(
                with_base_offset(batch, result.base_offset, leader_epoch.state.leader_epoch)
            )
            waits.append(result.durable if durable else result.synced)
    await asyncio.gather(*waits)
    return stored


async def _scenario(settings: Settings) -> None:
    agent = await open_agent(settings)
    await agent.admin.create_topic(TOPIC, PARTITIONS)
    durable = await _produce(agent, durable=True)
    assert agent.log.flusher.stats.objects_put >= 1
    await agent.close()

    agent = await open_agent(settings)  # tail empty: everything is read from objects
    for partition in range(PARTITIONS):
        assert await read_all(agent, TopicPartition(TOPIC, partition)) == durable[partition]
    assert agent.log.reads.objects.block_reads > 0
    synced = await _produce(agent, durable=False)
    await kill(agent)

    agent = await open_agent(settings)  # replays the WAL
    assert agent.log.recovery.replayed_batches == PARTITIONS * BATCHES_PER_PARTITION
    for partition in range(PARTITIONS):
        assert (
            await read_all(agent, TopicPartition(TOPIC, partition))
            == durable[partition] + synced[partition]
        )
    await agent.close()


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(
        data_dir=str(tmp_path / "data"), flush_interval_ms=20, kafka_port=0
    ).with_overrides(**overrides)


def test_embedded_defaults(tmp_path: Path) -> None:
    asyncio.run(_scenario(_settings(tmp_path)))
    assert (tmp_path / "data" / "metadata.db").exists()
    assert list((tmp_path / "data" / "objects" / "orgs" / "default" / "objects").rglob("*.obj"))


def test_s3_and_postgres(
    tmp_path: Path, moto_s3_with_credentials: str, postgres_database_url: str
) -> None:
    settings = _settings(
        tmp_path,
        metadata_url=postgres_database_url,
        object_store_url=f"s3://integration-{tmp_path.name.lower().replace('_', '-')}/agents",
        s3_endpoint_url=moto_s3_with_credentials,
    )
    asyncio.run(_scenario(settings))
