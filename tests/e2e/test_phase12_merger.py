"""Phase 12, the object merger against real agents on local storage.

Records go to three partitions in many small flushes (each acks=all before the next, so
each flush is an object of its own holding a block of every partition), with keys, headers,
CreateTime timestamps and lz4 batches. Then the agent restarts with a short merge interval:
each partition's run of small blocks becomes one object (streamhouse_merge_* rise,
`streamctl topics describe --http` shows one object a partition). It restarts again, cold
(no WAL tail, no block cache), with a short reconcile grace: confluent-kafka and
kafka-python read exactly what they read before the merge, at the same offsets, and again
once the released flush objects have left the bucket."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as CTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, TopicPartition
from typer.testing import CliRunner

from streamhouse.cli.streamctl import app
from tests.e2e.agent_storage import agent_metrics, bucket_objects
from tests.e2e.conftest import Agent, poll_messages, start_agent, within

TOPIC = "p12-merged"
PARTITIONS = 3
FLUSHES = 12  # acks=all rounds: objects of their own, a small block of every partition each
RECORDS_PER_BATCH = 3
TIMEOUT_S = 20
BASE_TIMESTAMP_MS = 1_700_000_000_000
# Read is (partition, offset, key, value, headers, timestamp)
Read = tuple[int, int, bytes | None, bytes | None, tuple[tuple[str, bytes], ...], int]
MERGING = ("--merge-interval-ms", "300", "--merge-run-rows-min", "4")
RECONCILING = ("--reconcile-interval-ms", "300", "--reconcile-grace-ms", "1000")
RECONCILE_OFF = ("--reconcile-interval-ms", "0")


def _produce_in_flushes(agent: Agent) -> int:
    """FLUSHES rounds of a batch to every partition, each acknowledged before the next;
    returns how many records went."""
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(TIMEOUT_S)
    producer = Producer(
        {
            "bootstrap.servers": agent.bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
        }
    )
    failures: list[object] = []
    count = 0
    for flush in range(FLUSHES):
        for partition in range(PARTITIONS):
            for index in range(RECORDS_PER_BATCH):
                count += 1
                producer.produce(
                    TOPIC,
                    key=None if index == 0 else b"k-%d-%d" % (flush, index),
                    value=b"p%d-f%d-r%d-" % (partition, flush, index) * (flush + 1),
                    headers=[("flush", b"%d" % flush), ("n", bytes([count % 256]))],
                    timestamp=BASE_TIMESTAMP_MS + count,
                    partition=partition,
                    on_delivery=lambda error, _: error and failures.append(error),
                )
        assert producer.flush(TIMEOUT_S) == 0
    assert failures == []
    return count


def _confluent_reads(agent: Agent, count: int) -> list[Read]:
    consumer = Consumer(
        {
            "bootstrap.servers": agent.bootstrap,
            "group.id": "p12-merger",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([CTopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    found: list[Read] = [
        (
            message.partition(),
            message.offset(),
            message.key(),
            message.value(),
            tuple(message.headers() or ()),
            message.timestamp()[1],
        )
        for message in poll_messages(consumer, count, TIMEOUT_S)
    ]
    consumer.close()
    return sorted(found)


def _kafka_python_reads(agent: Agent, count: int) -> list[Read]:
    consumer = KafkaConsumer(
        bootstrap_servers=agent.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        consumer_timeout_ms=TIMEOUT_S * 1000,
    )
    consumer.assign([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
    consumer.seek_to_beginning()
    found: list[Read] = []
    for message in consumer:
        headers = tuple((name, value) for name, value in message.headers)
        found.append(
            (
                message.partition,
                message.offset,
                message.key,
                message.value,
                headers,
                message.timestamp,
            )
        )
        if len(found) == count:
            break
    consumer.close()
    return sorted(found)


def _both_read(agent: Agent, count: int) -> list[Read]:
    """What both clients read from the beginning: the same records."""
    read = _confluent_reads(agent, count)
    assert len(read) == count
    assert _kafka_python_reads(agent, count) == read
    return read


def _described(agent: Agent) -> dict[int, dict[str, Any]]:
    """`streamctl topics describe --http ... -o json`: each partition's row."""
    command = ["topics", "describe", TOPIC, "-o", "json"]
    command += ["--bootstrap", agent.bootstrap, "--http", agent.http_base]
    described = CliRunner().invoke(app, command)
    assert described.exit_code == 0, described.output
    return {row["partition"]: row for row in json.loads(described.stdout)["partitions"]}


def _objects_by_partition(agent: Agent) -> dict[int, int]:
    return {partition: row["objects"] for partition, row in _described(agent).items()}


def test_merged_objects_read_back_byte_identical_cold_and_after_the_old_ones_go(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with start_agent(data, "--merge-interval-ms", "0", *RECONCILE_OFF) as writer:
        count = _produce_in_flushes(writer)
        before = _both_read(writer, count)
        flushed = _described(writer)
        writer.stop_cleanly()
    assert [read[:2] for read in before] == [
        (p, offset) for p in range(PARTITIONS) for offset in range(count // PARTITIONS)
    ]
    assert all(row["objects"] >= FLUSHES for row in flushed.values()), flushed
    flush_objects = bucket_objects(data)
    assert len(flush_objects) >= FLUSHES

    with start_agent(data, *MERGING, *RECONCILE_OFF) as merging:
        within(
            TIMEOUT_S,
            lambda: _objects_by_partition(merging) == dict.fromkeys(range(PARTITIONS), 1),
            "every partition merged into one object",
        )
        metrics = agent_metrics(merging)
        merged = _described(merging)
        merging.stop_cleanly()
    assert metrics["streamhouse_merge_swaps_total"] == PARTITIONS
    assert metrics["streamhouse_merge_rows_replaced_total"] >= PARTITIONS * FLUSHES
    assert metrics["streamhouse_merge_bytes_rewritten_total"] > 0
    assert metrics["streamhouse_merge_object_bytes_written_total"] > 0
    assert metrics["streamhouse_merge_swaps_refused_total"] == 0
    assert metrics["streamhouse_merge_swaps_abandoned_total"] == 0
    for partition, row in merged.items():
        shown = flushed[partition]
        assert (row["log start"], row["high watermark"]) == (0, shown["high watermark"])
        assert row["bytes"] > 0
    # released, not yet deleted (no reconciler ran): the merged objects came beside them
    merged_objects = bucket_objects(data) - flush_objects
    assert len(merged_objects) == PARTITIONS
    assert flush_objects <= bucket_objects(data)

    shutil.rmtree(data / "local")  # the WAL and all local state but metadata and bucket
    with start_agent(data, "--merge-interval-ms", "0", *RECONCILING) as cold:
        assert _both_read(cold, count) == before
        within(
            TIMEOUT_S,
            lambda: bucket_objects(data) == merged_objects,
            "released flush objects deleted",
        )
        assert _both_read(cold, count) == before
        assert agent_metrics(cold)["streamhouse_reconcile_orphans_deleted_total"] == len(
            flush_objects
        )
        cold.stop_cleanly()
