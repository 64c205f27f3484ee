"""Phase 10: ack modes. acks=all is answered only once the object holding the record is in
the object store and its rows are committed; acks=1 and acks=0 data become durable within
the flush interval; the object count per second does not grow with the partition count."""

from __future__ import annotations

import socket
import sqlite3
import time
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamhouse.errors import ErrorCode
from streamhouse.kafka.sentinels import NO_OFFSET
from tests.e2e.conftest import Agent, start_agent
from tests.fixtures.kafka_wire import (
    RAW_CALL_TIMEOUT_S,
    api_versions_request,
    produce_answers,
    produce_request,
    request_frame,
)

FLUSH_INTERVAL_MS = 100
TIMEOUT_S = 30
PRODUCE_WINDOW_S = 2.0
INVALID_REQUIRED_ACKS = ErrorCode.INVALID_REQUIRED_ACKS


def _durable_end(data_dir: Path, topic: str, partition: int) -> int:
    uri = f"file:{data_dir / 'metadata.db'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        row = db.execute(
            "SELECT durable_end_offset FROM partitions WHERE topic = ? AND partition = ?",
            (topic, partition),
        ).fetchone()
    return int(row[0]) if row else 0


def _object_keys_covering(data_dir: Path, topic: str, offset: int) -> list[str]:
    uri = f"file:{data_dir / 'metadata.db'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        rows = db.execute(
            "SELECT object_key FROM segments WHERE topic = ? AND base_offset <= ? "
            "AND last_offset >= ?",
            (topic, offset, offset),
        ).fetchall()
    return [row[0] for row in rows]


def _objects(data_dir: Path) -> set[Path]:
    return set((data_dir / "objects").rglob("*.obj"))


def _create(agent: Agent, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(TIMEOUT_S)


def test_acks_all_answers_after_object_and_rows(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "data", "--flush-interval-ms", str(FLUSH_INTERVAL_MS))
    try:
        _create(agent, "durable", 1)
        checked: list[int] = []

        def on_delivery(error: object, message: object) -> None:
            assert error is None, error
            offset = message.offset()  # type: ignore[attr-defined]
            assert _durable_end(agent.data_dir, "durable", 0) > offset
            [key] = _object_keys_covering(agent.data_dir, "durable", offset)
            assert (agent.data_dir / "objects" / key).is_file()
            checked.append(offset)

        producer = Producer({"bootstrap.servers": agent.bootstrap, "acks": "all"})
        for index in range(20):
            producer.produce("durable", value=b"v%d" % index, partition=0, on_delivery=on_delivery)
            producer.poll(0)
            time.sleep(0.01)
        assert producer.flush(TIMEOUT_S) == 0
        assert sorted(checked) == list(range(20))
    finally:
        assert agent.stop() == 0


def test_acks_1_and_0_become_durable_within_the_flush_interval(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "data", "--flush-interval-ms", str(FLUSH_INTERVAL_MS))
    try:
        _create(agent, "quick", 2)
        for partition, acks in ((0, "1"), (1, "0")):
            producer = Producer({"bootstrap.servers": agent.bootstrap, "acks": acks})
            for index in range(10):
                producer.produce("quick", value=b"x%d" % index, partition=partition)
            assert producer.flush(TIMEOUT_S) == 0
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            ends = [_durable_end(agent.data_dir, "quick", p) for p in (0, 1)]
            if ends == [10, 10]:
                break
            time.sleep(FLUSH_INTERVAL_MS / 1000)
        assert ends == [10, 10]
    finally:
        assert agent.stop() == 0


def _object_rate_per_s(data_dir: Path, topic: str) -> float:
    """Objects per second holding `topic`, from their creation times in metadata."""
    uri = f"file:{data_dir / 'metadata.db'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        rows = db.execute(
            "SELECT DISTINCT o.key, o.created_ms FROM objects o JOIN segments s "
            "ON s.object_key = o.key WHERE s.topic = ?",
            (topic,),
        ).fetchall()
    times = sorted(created_ms for _, created_ms in rows)
    assert len(times) >= 3, times
    return (len(times) - 1) / max((times[-1] - times[0]) / 1000, 1e-3)


def _produce_for_a_while(agent: Agent, topic: str, partitions: int) -> None:
    _create(agent, topic, partitions)
    producer = Producer({"bootstrap.servers": agent.bootstrap, "acks": "1", "linger.ms": 1})
    stop_at = time.monotonic() + PRODUCE_WINDOW_S
    index = 0
    while time.monotonic() < stop_at:
        producer.produce(topic, value=b"p" * 100, partition=index % partitions)
        producer.poll(0)
        index += 1
        if index % 100 == 0:
            time.sleep(0.005)
    assert producer.flush(TIMEOUT_S) == 0


def test_object_rate_is_flat_from_1_to_100_partitions(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "data", "--flush-interval-ms", str(FLUSH_INTERVAL_MS))
    try:
        _produce_for_a_while(agent, "narrow", 1)
        _produce_for_a_while(agent, "wide", 100)
        time.sleep(3 * FLUSH_INTERVAL_MS / 1000)
        narrow = _object_rate_per_s(agent.data_dir, "narrow")
        wide = _object_rate_per_s(agent.data_dir, "wide")
    finally:
        assert agent.stop() == 0
    # at most one object per flush interval (a flush may be due right after the previous
    # one ends), whatever the partition count
    ceiling = 1.5 * 1000 / FLUSH_INTERVAL_MS
    assert narrow <= ceiling and wide <= ceiling, (narrow, wide, ceiling)


def test_acks_outside_0_1_all_are_refused_on_every_partition(agent: Agent) -> None:
    answers = produce_answers(agent.port, ["acks-a", "acks-b"], acks=2)
    assert answers == {
        "acks-a": (INVALID_REQUIRED_ACKS, NO_OFFSET),
        "acks-b": (INVALID_REQUIRED_ACKS, NO_OFFSET),
    }


PIPELINED_RECORDS = 300  # well past the 64 requests in flight the agent once read ahead
PIPELINE_FLUSH_INTERVAL_MS = 10_000


def test_acks_all_requests_pipeline_into_one_flush_window(tmp_path: Path) -> None:
    """A producer sending one record per request at acks=all: the agent reads (and appends)
    every request while the first still waits for its flush window, so a consumer sees all of
    them before any is acknowledged."""
    flags = ("--flush-interval-ms", str(PIPELINE_FLUSH_INTERVAL_MS))
    agent = start_agent(tmp_path / "data", *flags)
    try:
        _create(agent, "pipelined", 1)
        producer = Producer(
            {
                "bootstrap.servers": agent.bootstrap,
                "acks": "all",
                "linger.ms": 0,
                "batch.num.messages": 1,
                "enable.idempotence": False,
            }
        )
        acked_at: list[float] = []
        for index in range(PIPELINED_RECORDS):
            producer.produce(
                "pipelined",
                str(index).encode(),
                partition=0,
                on_delivery=lambda *_: acked_at.append(time.monotonic()),
            )
        producer.poll(0)
        consumer = Consumer(
            {"bootstrap.servers": agent.bootstrap, "group.id": "p", "fetch.wait.max.ms": 50}
        )
        consumer.assign([TopicPartition("pipelined", 0, OFFSET_BEGINNING)])
        seen = 0
        deadline = time.monotonic() + TIMEOUT_S
        while seen < PIPELINED_RECORDS and time.monotonic() < deadline:
            seen += sum(1 for m in consumer.consume(500, 0.2) if m.error() is None)
        all_read_at = time.monotonic()
        consumer.close()
        assert seen == PIPELINED_RECORDS
        assert producer.flush(TIMEOUT_S) == 0
        assert len(acked_at) == PIPELINED_RECORDS
        assert all_read_at <= min(acked_at), "requests were held back behind the first acks"
    finally:
        agent.stop_cleanly()


def _closed_after_acks_0_produce(port: int, topic: str) -> bool:
    """Send an acks=0 Produce to `topic`, then an ApiVersions: False if that is answered, True
    if the agent closed the connection instead."""
    with socket.create_connection(("127.0.0.1", port), timeout=RAW_CALL_TIMEOUT_S) as sock:
        sock.sendall(request_frame(produce_request([topic], acks=0), correlation_id=1))
        sock.sendall(request_frame(api_versions_request(0), correlation_id=2))
        try:
            return sock.recv(65536) == b""
        except ConnectionResetError:
            return True


def test_an_acks_0_produce_that_is_refused_closes_its_connection(agent: Agent) -> None:
    """Kafka's answer to acks=0 errors: the client sees the connection drop and refreshes its
    metadata instead of sending on into nothing."""
    _create(agent, "zero-acks", 1)
    assert not _closed_after_acks_0_produce(agent.port, "zero-acks")
    assert _closed_after_acks_0_produce(agent.port, "no-such-topic")
