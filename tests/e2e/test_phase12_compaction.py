"""Phase 12: compaction and retention, seen by real clients.

So far: a compacted topic refuses a record without a key with Kafka's INVALID_RECORD (the
record errors named, as Produce v8+ answers them), its batch is not appended, and the other
partitions of the same request are."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition
from typer.testing import CliRunner

from streamhouse.cli import agent_client
from streamhouse.cli.streamctl import app
from streamhouse.kafka import codec
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.entities import build
from streamhouse.kafka.records import SimpleRecord, build_batch
from tests.e2e.agent_storage import agent_metrics, partition_storage
from tests.e2e.conftest import Agent, start_agent, within
from tests.fixtures.kafka_wire import PRODUCE_TIMEOUT_MS, PRODUCE_VERSION, raw_call

WAIT_S = 20
ADMIN_TIMEOUT_S = 15
ACKS_ALL = -1
INVALID_RECORD = 87
KEYLESS_MESSAGE = "Compacted topic cannot accept message without key in topic partition {}."


def _create(agent: Agent, *topics: NewTopic) -> None:
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    for future in admin.create_topics(list(topics)).values():
        future.result(ADMIN_TIMEOUT_S)


def _read_all(agent: Agent, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    consumer = Consumer(
        {
            "bootstrap.servers": agent.bootstrap,
            "group.id": f"p12-{topic}",
            "enable.auto.commit": False,
        }
    )
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=WAIT_S)
    consumer.assign([TopicPartition(topic, 0, 0)])
    found = []
    while len(found) < high:
        message = consumer.poll(WAIT_S)
        assert message is not None and message.error() is None, message
        found.append((message.offset(), message.key(), message.value()))
    consumer.close()
    return found


def test_confluent_kafka_is_refused_a_record_without_a_key(agent: Agent) -> None:
    _create(agent, NewTopic("p12-table", 1, config={"cleanup.policy": "compact"}))
    producer = Producer({"bootstrap.servers": agent.bootstrap, "retries": 0, "acks": "all"})
    outcomes: dict[bytes, KafkaError | None] = {}

    def delivered(error: KafkaError | None, message: object) -> None:
        outcomes[message.value()] = error  # type: ignore[attr-defined]

    producer.produce("p12-table", b"keyed", key=b"k", on_delivery=delivered)
    producer.flush(WAIT_S)
    producer.produce("p12-table", b"no key", on_delivery=delivered)
    assert producer.flush(WAIT_S) == 0
    assert outcomes[b"keyed"] is None
    refused = outcomes[b"no key"]
    assert refused is not None and refused.code() == KafkaError.INVALID_RECORD, refused
    assert not refused.retriable()
    assert _read_all(agent, "p12-table") == [(0, b"k", b"keyed")]


def test_the_other_partitions_of_the_request_are_appended(agent: Agent) -> None:
    _create(
        agent,
        NewTopic("p12-compacted", 1, config={"cleanup.policy": "compact,delete"}),
        NewTopic("p12-plain", 1),
    )
    keyless = build_batch([SimpleRecord(b"k", b"v"), SimpleRecord(None, b"no key")])
    request = build(
        codec.request_schema(ApiKey.PRODUCE, PRODUCE_VERSION),
        {
            "acks": ACKS_ALL,
            "timeout": PRODUCE_TIMEOUT_MS,
            "topic_data": [
                {"name": name, "partition_data": [{"index": 0, "records": keyless}]}
                for name in ("p12-compacted", "p12-plain")
            ],
        },
    )
    answers = {
        topic.name: topic.partition_responses[0]
        for topic in raw_call(agent.port, request).responses
    }
    refused, appended = answers["p12-compacted"], answers["p12-plain"]
    message = KEYLESS_MESSAGE.format("p12-compacted-0")
    assert int(refused.error_code) == INVALID_RECORD
    assert [(e.batch_index, e.batch_index_error_message) for e in refused.record_errors] == [
        (1, message)
    ]
    assert refused.error_message == (
        "One or more records have been rejected due to 1 record errors in total, and only "
        f"showing the first three errors at most: [RecordError(batchIndex=1, message='{message}')]"
    )
    assert (int(appended.error_code), appended.base_offset) == (0, 0)
    assert _read_all(agent, "p12-plain") == [(0, b"k", b"v"), (1, None, b"no key")]
    assert _read_all(agent, "p12-compacted") == []


# --- the log-compaction test: many duplicate keys and some tombstones, compacted while
# --- producers keep writing, checked as Kafka's own log-compaction tester checks a topic

KEYS = 40
ROUNDS = 25  # values per key
DELETED = 5  # keys whose last record is a tombstone
DELETE_RETENTION_MS = 2_000
Produced = tuple[int, bytes, bytes | None]  # offset, key, value
CLEANING_S = 60
TAILING_S = 60  # the tailing reader's bound: the whole test
COMPACTION_COUNTERS = ("rounds", "bytes_read", "bytes_written", "records_removed")


@pytest.fixture
def compacting_agent(tmp_path: Path) -> Iterator[Agent]:
    with start_agent(tmp_path / "data", "--compaction-interval-ms", "300") as running:
        yield running
        running.stop_cleanly()


def _produce_keyed(
    agent: Agent, topic: str, records: list[tuple[bytes, bytes | None]], timestamp_ms: int = 0
) -> list[Produced]:
    """The records, acks=all, each delivery's offset noted; CreateTime `timestamp_ms` (0:
    the producer's now)."""
    producer = Producer({"bootstrap.servers": agent.bootstrap, "acks": "all", "linger.ms": 20})
    delivered: list[Produced] = []
    failures: list[KafkaError] = []

    def noted(error: KafkaError | None, message: Any) -> None:
        if error is not None:
            failures.append(error)
        else:
            delivered.append((message.offset(), message.key(), message.value()))

    for key, value in records:
        producer.produce(
            topic, value, key=key, partition=0, timestamp=timestamp_ms, on_delivery=noted
        )
        producer.poll(0)
    assert producer.flush(WAIT_S) == 0
    assert failures == []
    return delivered


def _storage(agent: Agent, topic: str) -> dict[str, Any]:
    return partition_storage(agent, topic)[0]


def _cleaned_to(agent: Agent, topic: str, end: int) -> None:
    """Wait until a round has cleaned the partition up to `end` (the checkpoint)."""
    within(CLEANING_S, lambda: _storage(agent, topic)["cleaned_end_offset"] >= end, "cleaning")


def _confluent_reads(agent: Agent, topic: str, end: int) -> list[Produced]:
    """What a confluent-kafka consumer reads from offset 0 (reset to the log start when below
    it) until its position reaches `end`."""
    consumer = Consumer(
        {
            "bootstrap.servers": agent.bootstrap,
            "group.id": "p12-compacted",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    found: list[Produced] = []
    deadline = time.monotonic() + WAIT_S
    while consumer.position([TopicPartition(topic, 0)])[0].offset < end:
        assert time.monotonic() < deadline, f"read {len(found)} records, not to offset {end}"
        message = consumer.poll(0.5)
        if message is not None:
            assert message.error() is None, message.error()
            found.append((message.offset(), message.key(), message.value()))
    consumer.close()
    return found


def _kafka_python_reads(agent: Agent, topic: str, end: int) -> list[Produced]:
    """What kafka-python reads from offset 0 (reset to the log start when below it) until its
    position reaches `end`."""
    tp = KTopicPartition(topic, 0)
    consumer = KafkaConsumer(
        bootstrap_servers=agent.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    consumer.assign([tp])
    consumer.seek(tp, 0)
    found: list[Produced] = []
    deadline = time.monotonic() + WAIT_S
    while consumer.position(tp) < end:
        assert time.monotonic() < deadline, f"read {len(found)} records, not to offset {end}"
        for messages in consumer.poll(timeout_ms=500).values():
            found += [(m.offset, m.key, m.value) for m in messages]
    consumer.close()
    return found


class _TailingReader:
    """A confluent-kafka consumer reading partition 0 from offset 0 in a thread of its own
    while producers write and rounds run, until told where the log ends (bounded in time)."""

    def __init__(self, agent: Agent, topic: str) -> None:
        self.read: list[Produced] = []
        self._end: int | None = None
        self._failures: list[object] = []
        self._thread = threading.Thread(target=self._tail, args=(agent, topic), daemon=True)
        self._thread.start()

    def _tail(self, agent: Agent, topic: str) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": agent.bootstrap,
                "group.id": "p12-tail",
                "enable.auto.commit": False,
            }
        )
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + TAILING_S
        try:
            while time.monotonic() < deadline:
                end = self._end
                if (
                    end is not None
                    and consumer.position([TopicPartition(topic, 0)])[0].offset >= end
                ):
                    return
                message = consumer.poll(0.2)
                if message is None:
                    continue
                if message.error() is not None:
                    self._failures.append(message.error())
                    return
                self.read.append((message.offset(), message.key(), message.value()))
        except Exception as error:  # reported by finish(), on the test's thread
            self._failures.append(error)
        finally:
            consumer.close()

    def finish(self, end: int) -> list[Produced]:
        """Everything read once the position reached `end`."""
        self._end = end
        self._thread.join(TAILING_S)
        assert not self._thread.is_alive(), f"the tailing reader did not reach offset {end}"
        assert self._failures == []
        assert self.read and self.read[-1][0] == end - 1, self.read[-1:]
        return self.read


def _judge_tailing(produced: list[Produced], read: list[Produced]) -> None:
    """What a consumer read while the log was written and cleaned: offsets strictly
    increase, and the record at each offset is the one produced there (cleaning removes
    records, never changes one)."""
    at = {offset: (key, value) for offset, key, value in produced}
    offsets = [offset for offset, _, _ in read]
    assert offsets == sorted(set(offsets)), "offsets strictly increase"
    changed = [
        (offset, key, value) for offset, key, value in read if at.get(offset) != (key, value)
    ]
    assert changed == [], "a record read is not the one produced at its offset"


def _judge(produced: list[Produced], read: list[Produced], *, tombstones_gone: bool) -> None:
    """Kafka's log-compaction tester: the last value of every key is what was produced last
    (deleted keys absent once their tombstones may go), every record read is the one produced
    at its offset, offsets strictly increase, no key is read twice."""
    at = {offset: (key, value) for offset, key, value in produced}
    last: dict[bytes, Produced] = {}
    for record in sorted(produced):
        last[record[1]] = record
    offsets = [offset for offset, _, _ in read]
    assert offsets == sorted(set(offsets)), "offsets strictly increase"
    assert all(at[offset] == (key, value) for offset, key, value in read), "a record changed"
    keys = [key for _, key, _ in read]
    assert len(keys) == len(set(keys)), "a key read twice after cleaning"
    expected = {
        key: record for key, record in last.items() if not (tombstones_gone and record[2] is None)
    }
    assert {record[1]: record for record in read} == expected


def _create_eagerly_cleaned(agent: Agent, topic: str, policy: str, **configs: int) -> None:
    """A one-partition topic of `policy` that a round cleans as soon as any record is dirty,
    with `configs` named in Python (retention_ms: retention.ms)."""
    named = {name.replace("_", "."): str(value) for name, value in configs.items()}
    named |= {"cleanup.policy": policy, "min.cleanable.dirty.ratio": "0.01"}
    _create(agent, NewTopic(topic, 1, config=named))


def _compaction_counters(agent: Agent) -> dict[str, float]:
    metrics = agent_metrics(agent)
    return {name: metrics[f"streamhouse_compaction_{name}_total"] for name in COMPACTION_COUNTERS}


def test_a_compacted_topic_keeps_the_last_value_of_every_key(
    compacting_agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, topic = compacting_agent, "p12-compacted"
    _create_eagerly_cleaned(agent, topic, "compact", delete_retention_ms=DELETE_RETENTION_MS)
    assert _compaction_counters(agent) == dict.fromkeys(COMPACTION_COUNTERS, 0)
    tailing = _TailingReader(agent, topic)
    produced: list[Produced] = []
    # written in waves while rounds run every 300 ms: each wave cleaned behind the producer,
    # and read by the tailing reader as it comes (it has read the first before the rest go)
    for wave in range(ROUNDS):
        values = [(b"key-%02d" % k, b"wave-%02d-of-key-%02d" % (wave, k)) for k in range(KEYS)]
        produced += _produce_keyed(agent, topic, values)
        if wave == 0:
            within(WAIT_S, lambda: len(tailing.read) > 0, "the tailing reader reading")
    tombstones = [(b"key-%02d" % k, None) for k in range(DELETED)]
    produced += _produce_keyed(agent, topic, tombstones)
    end = max(offset for offset, _, _ in produced) + 1
    _cleaned_to(agent, topic, end)
    for reads in (_confluent_reads(agent, topic, end), _kafka_python_reads(agent, topic, end)):
        _judge(produced, reads, tombstones_gone=False)
    cleaned = _compaction_counters(agent)
    assert cleaned["rounds"] >= 1 and 0 < cleaned["bytes_written"] < cleaned["bytes_read"]
    # every record but the last of each key (the tombstones stay, for now) went
    assert cleaned["records_removed"] >= len(produced) - KEYS, cleaned
    storage = _storage(agent, topic)
    assert storage["compacted_ms"] is not None and storage["dirty_ratio"] == 0.0
    env = {"STREAMHOUSE_BOOTSTRAP": agent.bootstrap, "STREAMHOUSE_HTTP": agent.http_base}
    described = CliRunner().invoke(app, ["topics", "describe", topic, "-o", "json"], env=env)
    assert described.exit_code == 0, described.output
    [shown] = json.loads(described.stdout)["partitions"]
    assert (shown["cleaned to"], shown["dirty ratio"]) == (end, 0.0)
    assert shown["last compaction"].startswith(time.strftime("%Y-%m-%d", time.gmtime()))
    # the table's headers whole: the console's width was fixed at import (from COLUMNS, if set)
    monkeypatch.setattr(agent_client.console, "width", 200)
    table = CliRunner().invoke(app, ["topics", "describe", topic], env=env)
    assert "dirty ratio" in table.stdout and "last compaction" in table.stdout

    # past the tombstones' horizon, a little more data makes the log dirty: they go
    time.sleep(DELETE_RETENTION_MS / 1000 + 0.5)
    produced += _produce_keyed(agent, topic, [(b"late", b"dirt")])
    end = max(offset for offset, _, _ in produced) + 1
    _cleaned_to(agent, topic, end)
    for reads in (_confluent_reads(agent, topic, end), _kafka_python_reads(agent, topic, end)):
        _judge(produced, reads, tombstones_gone=True)
    assert len(reads) == KEYS - DELETED + 1 < len(produced)
    tailed = tailing.finish(end)
    _judge_tailing(produced, tailed)
    assert set(tailed) - set(reads), "the tailing reader read records a round removed later"
    final = _compaction_counters(agent)
    assert final["rounds"] > cleaned["rounds"] and final["bytes_read"] > cleaned["bytes_read"]
    assert final["bytes_written"] > cleaned["bytes_written"]
    assert final["records_removed"] >= cleaned["records_removed"] + DELETED, (cleaned, final)


# --- cleanup.policy=compact,delete: cleaned, and its log start moved by retention.ms

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
OLD_WAVES = 3
KEYS_EACH = 5


@pytest.fixture
def compacting_and_retaining_agent(tmp_path: Path) -> Iterator[Agent]:
    """Rounds every 300 ms, retention every 200 ms, and a rewrite's blocks one batch each, so
    a cleaned row never holds an old batch beside a recent one: retention judges a row by its
    newest record, and rows of old batches only must stay old whichever service comes first."""
    with start_agent(
        tmp_path / "data",
        "--compaction-interval-ms",
        "300",
        "--retention-check-interval-ms",
        "200",
        "--merge-interval-ms",
        "0",
        "--merge-block-bytes-max",
        "1",
    ) as running:
        yield running
        running.stop_cleanly()


def test_a_compact_delete_topic_is_cleaned_and_its_old_records_expire(
    compacting_and_retaining_agent: Agent,
) -> None:
    agent, topic = compacting_and_retaining_agent, "p12-compact-delete"
    _create_eagerly_cleaned(agent, topic, "compact,delete", retention_ms=HOUR_MS)
    before = _compaction_counters(agent)
    # two days old: keys old-* (last values among them: compaction alone keeps those) and
    # both-* (written again below), each acknowledged before the next wave
    old_ms = int(time.time() * 1000) - 2 * DAY_MS  # the agent's wall clock: on this host
    produced: list[Produced] = []
    for wave in range(OLD_WAVES):
        records = [
            (b"%s-%d" % (kind, k), b"%s-%d-old-%d" % (kind, k, wave))
            for kind in (b"old", b"both")
            for k in range(KEYS_EACH)
        ]
        produced += _produce_keyed(agent, topic, records, old_ms + wave)
    first_recent = len(produced)
    # recent: a key written once first (its batch is where the log starts once the old ones
    # go), then both-* again and new-*, with duplicates
    produced += _produce_keyed(agent, topic, [(b"recent-first", b"stays")])
    for wave in range(OLD_WAVES):
        records = [
            (b"%s-%d" % (kind, k), b"%s-%d-new-%d" % (kind, k, wave))
            for kind in (b"both", b"new")
            for k in range(KEYS_EACH)
        ]
        produced += _produce_keyed(agent, topic, records)
    end = len(produced)
    assert [offset for offset, _, _ in produced] == list(range(end))

    _cleaned_to(agent, topic, end)
    within(WAIT_S, lambda: _storage(agent, topic)["log_start_offset"] == first_recent, "log start")
    probe = Consumer({"bootstrap.servers": agent.bootstrap, "group.id": "p12-compact-delete"})
    assert probe.get_watermark_offsets(TopicPartition(topic, 0), timeout=WAIT_S) == (
        first_recent,
        end,
    )
    probe.close()
    tp = KTopicPartition(topic, 0)
    listing = KafkaConsumer(bootstrap_servers=agent.bootstrap)
    assert listing.beginning_offsets([tp]) == {tp: first_recent}
    listing.close()
    recent = [record for record in produced if record[0] >= first_recent]
    for reads in (_confluent_reads(agent, topic, end), _kafka_python_reads(agent, topic, end)):
        # the last value of each key of the records retention kept, and no old-* key at all
        _judge(recent, reads, tombstones_gone=False)
        assert len(reads) == 1 + 2 * KEYS_EACH < len(recent)
    after = _compaction_counters(agent)
    assert after["rounds"] > before["rounds"]
    assert after["records_removed"] >= len(recent) - len(reads)
    retention = agent_metrics(agent)
    assert retention["streamhouse_retention_segments_deleted_total"] >= 1
    assert retention["streamhouse_retention_bytes_deleted_total"] > 0
