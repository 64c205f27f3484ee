"""Phase 12, retention: a real agent checking retention every 200 ms and reconciling every
300 ms with a one-second grace, on local storage.

Records are produced with old CreateTime timestamps (no waiting for them to age), each batch
acknowledged acks=all before the next, so each lies in an object of its own. Once the topic's
retention.ms or retention.bytes is set, the earliest offset moves forward (ListOffsets from
confluent-kafka and kafka-python); consumers positioned below it are reset as their
auto.offset.reset says and read exactly the records that stay, byte-exact; the objects that
held only deleted records leave the bucket a grace later; and `streamctl topics describe`
shows the partition's new log start, bytes and objects."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as CTopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin import NewTopic as CNewTopic
from kafka import KafkaConsumer, TopicPartition
from typer.testing import CliRunner

from streamhouse.cli.streamctl import app
from tests.e2e.agent_storage import agent_metrics, bucket_objects
from tests.e2e.conftest import Agent, poll_messages, start_agent, within

TIMEOUT_S = 20
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
OLD_BATCHES = 3
RECENT = 4
VALUE_BYTES = 1_000  # random: compressed, a row stays about this size


@pytest.fixture
def retaining_agent(tmp_path: Path) -> Iterator[Agent]:
    with start_agent(
        tmp_path / "data",
        "--retention-check-interval-ms",
        "200",
        "--reconcile-interval-ms",
        "300",
        "--reconcile-grace-ms",
        "1000",
    ) as running:
        yield running
        running.stop_cleanly()


def _create(agent: Agent, topic: str) -> AdminClient:
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    admin.create_topics([CNewTopic(topic, 1, 1)])[topic].result(TIMEOUT_S)
    return admin


def _set_config(admin: AdminClient, topic: str, name: str, value: str) -> None:
    entry = ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource("topic", topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(TIMEOUT_S)


def _produce(agent: Agent, topic: str, batches: list[list[tuple[bytes, bytes, int]]]) -> None:
    """Each batch of (key, value, timestamp) acknowledged acks=all before the next."""
    producer = Producer({"bootstrap.servers": agent.bootstrap, "acks": "all", "linger.ms": 5})
    failures: list[object] = []
    for batch in batches:
        for key, value, timestamp in batch:
            producer.produce(
                topic,
                key=key,
                value=value,
                timestamp=timestamp,
                partition=0,
                on_delivery=lambda error, _: error and failures.append(error),
            )
        assert producer.flush(TIMEOUT_S) == 0
    assert failures == []


def _watermarks(consumer: Any, topic: str) -> tuple[int, int]:
    low, high = consumer.get_watermark_offsets(CTopicPartition(topic, 0), timeout=TIMEOUT_S)
    return int(low), int(high)


def _confluent(agent: Agent, reset: str) -> Any:
    return Consumer(
        {
            "bootstrap.servers": agent.bootstrap,
            "group.id": f"phase12-{reset}",
            "enable.auto.commit": False,
            "auto.offset.reset": reset,
        }
    )


def _confluent_reads(agent: Agent, topic: str, count: int) -> list[tuple[int, bytes, bytes, int]]:
    """What a confluent-kafka consumer assigned at offset 0 reads (reset to earliest)."""
    consumer = _confluent(agent, "earliest")
    consumer.assign([CTopicPartition(topic, 0, 0)])
    found = [
        (message.offset(), message.key(), message.value(), message.timestamp()[1])
        for message in poll_messages(consumer, count, TIMEOUT_S)
    ]
    consumer.close()
    return found


def _kafka_python_at_zero(agent: Agent, topic: str, reset: str) -> KafkaConsumer:
    """A kafka-python consumer assigned partition 0 and seeking offset 0."""
    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(
        bootstrap_servers=agent.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset=reset,
        consumer_timeout_ms=TIMEOUT_S * 1000,
    )
    consumer.assign([tp])
    consumer.seek(tp, 0)
    return consumer


def _kafka_python_reads(
    agent: Agent, topic: str, count: int
) -> list[tuple[int, bytes, bytes, int]]:
    """What kafka-python reads after seeking to offset 0 (reset to earliest)."""
    consumer = _kafka_python_at_zero(agent, topic, "earliest")
    found = []
    for message in consumer:
        found.append((message.offset, message.key, message.value, message.timestamp))
        if len(found) == count:
            break
    consumer.close()
    return found


def _latest_reset_position(agent: Agent, topic: str) -> int:
    """Where kafka-python with auto_offset_reset=latest is moved from offset 0 (below the log
    start): nothing is produced meanwhile, so it is the end, reached without a record."""
    tp = TopicPartition(topic, 0)
    consumer = _kafka_python_at_zero(agent, topic, "latest")
    position = 0
    for _ in range(TIMEOUT_S * 5):
        assert consumer.poll(timeout_ms=200) == {}
        position = consumer.position(tp)
        if position != 0:
            break
    consumer.close()
    return int(position)


def test_retention_by_time_moves_the_log_start_and_frees_the_bucket(
    retaining_agent: Agent,
) -> None:
    agent, topic = retaining_agent, "phase12-time"
    admin = _create(agent, topic)
    now_ms = int(time.time() * 1000)  # the agent's wall clock: it runs on this host
    old = [
        [(b"k%d" % i, b"old-%d" % i, now_ms - 2 * DAY_MS + i) for i in range(b * 2, b * 2 + 2)]
        for b in range(OLD_BATCHES)
    ]
    recent = [(b"k%d" % i, b"recent-%d" % i, now_ms - 1_000 + i) for i in range(RECENT)]
    data = agent.data_dir
    _produce(agent, topic, old)
    old_objects = bucket_objects(data)
    _produce(agent, topic, [recent])
    recent_objects = bucket_objects(data) - old_objects
    assert len(old_objects) >= OLD_BATCHES and recent_objects
    first_kept = 2 * OLD_BATCHES
    end = first_kept + RECENT

    _set_config(admin, topic, "retention.ms", str(HOUR_MS))
    watcher = _confluent(agent, "earliest")
    within(TIMEOUT_S, lambda: _watermarks(watcher, topic) == (first_kept, end), "log start moved")
    watcher.close()
    tp = TopicPartition(topic, 0)
    probe = KafkaConsumer(bootstrap_servers=agent.bootstrap, group_id=None)
    assert probe.beginning_offsets([tp]) == {tp: first_kept}
    assert probe.end_offsets([tp]) == {tp: end}
    probe.close()

    expected = [
        (first_kept + i, key, value, timestamp) for i, (key, value, timestamp) in enumerate(recent)
    ]
    assert _confluent_reads(agent, topic, RECENT) == expected
    assert _kafka_python_reads(agent, topic, RECENT) == expected
    assert _latest_reset_position(agent, topic) == end
    # the objects of the old batches go a grace after their rows went; the recent one stays
    within(TIMEOUT_S, lambda: bucket_objects(data) == recent_objects, "released objects deleted")
    metrics = agent_metrics(agent)
    assert metrics["streamhouse_retention_segments_deleted_total"] == len(old_objects)
    assert metrics["streamhouse_retention_bytes_deleted_total"] > 0
    assert metrics["streamhouse_retention_passes_total"] >= 1
    assert metrics["streamhouse_retention_passes_failed_total"] == 0


def test_retention_by_bytes_keeps_the_newest_rows_within_the_limit(
    retaining_agent: Agent,
) -> None:
    agent, topic = retaining_agent, "phase12-bytes"
    admin = _create(agent, topic)
    now_ms = int(time.time() * 1000)  # the agent's wall clock: it runs on this host
    batches = [[(b"k%d" % i, os.urandom(VALUE_BYTES), now_ms + i)] for i in range(8)]
    _produce(agent, topic, batches)
    data = agent.data_dir
    assert len(bucket_objects(data)) == len(batches)

    # rows of about 1 KB: at least 3.5 KB stays, and no row more than needed: the newest four
    _set_config(admin, topic, "retention.bytes", str(7 * VALUE_BYTES // 2))
    watcher = _confluent(agent, "earliest")
    within(TIMEOUT_S, lambda: _watermarks(watcher, topic) == (4, 8), "log start moved")
    watcher.close()

    expected = [
        (offset, key, value, timestamp)
        for offset, [(key, value, timestamp)] in enumerate(batches)
        if offset >= 4
    ]
    assert _kafka_python_reads(agent, topic, 4) == expected
    assert _confluent_reads(agent, topic, 4) == expected
    within(TIMEOUT_S, lambda: len(bucket_objects(data)) == 4, "released objects deleted")

    # streamctl topics describe shows where the partition stands now
    env = {"STREAMHOUSE_BOOTSTRAP": agent.bootstrap, "STREAMHOUSE_HTTP": agent.http_base}
    described = CliRunner().invoke(app, ["topics", "describe", topic, "-o", "json"], env=env)
    assert described.exit_code == 0, described.output
    [shown] = json.loads(described.stdout)["partitions"]
    assert (shown["log start"], shown["high watermark"], shown["objects"]) == (4, 8, 4)
    assert 7 * VALUE_BYTES // 2 <= shown["bytes"] < 7 * VALUE_BYTES // 2 + VALUE_BYTES
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(agent.http_base + "/api/v1/topics/nope/partitions")
    assert refused.value.code == 404
    assert json.loads(refused.value.read())["error"] == "UNKNOWN_TOPIC_OR_PARTITION"
