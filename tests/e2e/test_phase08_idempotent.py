"""Phase 8: idempotent producers. Each client library produces with idempotence on (its
defaults otherwise); retried batches never duplicate, order holds, sequence state survives a
restart (from the WAL and from the object store), and a raw duplicate, an out-of-order batch
and a fenced epoch get Kafka's answers."""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

from aiokafka import AIOKafkaProducer
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer
from confluent_kafka import TopicPartition as ConfluentPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer

from streamhouse.errors import ErrorCode
from streamhouse.kafka.records import SimpleRecord, build_batch
from tests.e2e.conftest import Agent, start_agent

RECORDS = 2_000
WAIT_S = 30


def _read_all(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"p8-{topic}", "enable.auto.commit": False}
    )
    consumer.assign([ConfluentPartition(topic, 0, OFFSET_BEGINNING)])
    found: list[bytes] = []
    for _ in range(count * 2):
        message = consumer.poll(1 if len(found) >= count else WAIT_S)
        if message is None:
            break
        assert message.error() is None, message.error()
        found.append(message.value())
    consumer.close()
    return found


def _values(prefix: str) -> list[bytes]:
    return [f"{prefix}-{index}".encode() for index in range(RECORDS)]


def test_confluent_idempotent_producer(agent: Agent) -> None:
    producer = Producer(
        {
            "bootstrap.servers": agent.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "batch.num.messages": 100,
        }
    )
    for value in _values("c"):
        producer.produce("p8-confluent", value=value, partition=0)
    assert producer.flush(WAIT_S) == 0
    assert _read_all(agent.bootstrap, "p8-confluent", RECORDS) == _values("c")


def test_kafka_python_defaults_to_idempotence(agent: Agent) -> None:
    producer = KafkaProducer(bootstrap_servers=agent.bootstrap, linger_ms=5)
    futures = [producer.send("p8-kafka-python", value=v, partition=0) for v in _values("k")]
    producer.flush(WAIT_S)
    assert [f.get(WAIT_S).offset for f in futures] == list(range(RECORDS))
    producer.close()
    assert _read_all(agent.bootstrap, "p8-kafka-python", RECORDS) == _values("k")


def test_aiokafka_idempotent_producer(agent: Agent) -> None:
    async def produce() -> list[int]:
        producer = AIOKafkaProducer(bootstrap_servers=agent.bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            sent = [await producer.send("p8-aiokafka", v, partition=0) for v in _values("a")]
            return [(await future).offset for future in sent]
        finally:
            await producer.stop()

    assert asyncio.run(asyncio.wait_for(produce(), WAIT_S)) == list(range(RECORDS))
    assert _read_all(agent.bootstrap, "p8-aiokafka", RECORDS) == _values("a")


# --- raw batches: what the agent answers a duplicate, a gap and a fenced epoch ---------------


class RawProducer:
    """Produce v9 requests with hand-built idempotent batches on one connection."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
        self._correlation = 0

    def init_producer_id(self) -> tuple[int, int]:
        body = struct.pack(">hi", -1, 60_000)  # v1: null transactional id, timeout
        response = self._call(22, 1, body)
        _throttle, error, producer_id, epoch = struct.unpack(">ihqh", response[:16])
        assert error == 0
        return producer_id, epoch

    def send(
        self,
        topic: str,
        producer_id: int,
        epoch: int,
        sequence: int,
        count: int,
        acks: int = -1,
        transactional: bool = False,
    ) -> tuple[int, int]:
        """Produce `count` records as one batch; returns (error code, base offset)."""
        records = [SimpleRecord(b"k", b"v%d" % (sequence + i)) for i in range(count)]
        batch = build_batch(
            records,
            producer_id=producer_id,
            producer_epoch=epoch,
            base_sequence=sequence,
            is_transactional=transactional,
        )
        name = topic.encode()
        body = (
            struct.pack(">hhi", -1, acks, 30_000)  # v3+: no transactional id, acks, timeout
            + struct.pack(">ih", 1, len(name))
            + name
            + struct.pack(">iii", 1, 0, len(batch))
            + batch
        )
        response = self._call(0, 7, body)
        # topics[1] name, partitions[1]: index, error, base_offset, ...
        pos = 4 + 2 + len(name) + 4
        _index, error, base_offset = struct.unpack(">ihq", response[pos : pos + 14])
        return int(error), int(base_offset)

    def _call(self, api_key: int, version: int, body: bytes) -> bytes:
        self._correlation += 1
        header = struct.pack(">hhih", api_key, version, self._correlation, 2) + b"p8"
        frame = header + body
        self._sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", self._recv(4))[0]
        payload = self._recv(size)
        assert struct.unpack(">i", payload[:4])[0] == self._correlation
        return payload[4:]

    def _recv(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self._sock.recv(size - len(data))
            assert chunk, "the agent closed the connection"
            data += chunk
        return data

    def close(self) -> None:
        self._sock.close()


def test_duplicates_gaps_and_fenced_epochs_get_kafkas_answers(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "data")
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    admin.create_topics([NewTopic("p8-raw", 1, 1)])["p8-raw"].result(WAIT_S)
    raw = RawProducer(agent.port)
    try:
        producer_id, epoch = raw.init_producer_id()
        assert raw.send("p8-raw", producer_id, epoch, 0, 3) == (0, 0)
        assert raw.send("p8-raw", producer_id, epoch, 3, 2) == (0, 3)
        assert raw.send("p8-raw", producer_id, epoch, 0, 3) == (0, 0)  # a retry: same offsets
        gap = raw.send("p8-raw", producer_id, epoch, 9, 1)
        assert gap[0] == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
        other, _ = raw.init_producer_id()
        assert other != producer_id
        assert raw.send("p8-raw", other, 0, 4, 1)[0] == ErrorCode.UNKNOWN_PRODUCER_ID
        assert raw.send("p8-raw", producer_id, epoch + 1, 0, 1) == (0, 5)  # a bumped epoch
        fenced = raw.send("p8-raw", producer_id, epoch, 5, 1)
        assert fenced[0] == ErrorCode.INVALID_PRODUCER_EPOCH
    finally:
        raw.close()
        assert agent.stop() == 0
    # After a clean stop the state comes back from the metadata store (objects were flushed).
    agent = start_agent(tmp_path / "data")
    raw = RawProducer(agent.port)
    try:
        assert raw.send("p8-raw", producer_id, epoch + 1, 0, 1) == (0, 5)  # still a duplicate
        assert raw.send("p8-raw", producer_id, epoch + 1, 1, 1) == (0, 6)
    finally:
        raw.close()
        assert agent.stop() == 0
    assert _read_after_restart(tmp_path) == [b"v0", b"v1", b"v2", b"v3", b"v4", b"v0", b"v1"]


def _read_after_restart(tmp_path: Path) -> list[bytes]:
    agent = start_agent(tmp_path / "data")
    try:
        return _read_all(agent.bootstrap, "p8-raw", 7)
    finally:
        assert agent.stop() == 0


def test_sequence_state_comes_back_from_the_wal_after_a_kill(tmp_path: Path) -> None:
    slow_flush = ("--flush-interval-ms", "600000")
    agent = start_agent(tmp_path / "data", *slow_flush)
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    admin.create_topics([NewTopic("p8-wal", 1, 1)])["p8-wal"].result(WAIT_S)
    raw = RawProducer(agent.port)
    producer_id, epoch = raw.init_producer_id()
    assert raw.send("p8-wal", producer_id, epoch, 0, 2, acks=1) == (0, 0)
    assert raw.send("p8-wal", producer_id, epoch, 2, 2, acks=1) == (0, 2)
    raw.close()
    agent.process.kill()  # nothing was flushed: only the WAL knows these batches
    agent.process.wait(WAIT_S)
    agent = start_agent(tmp_path / "data", *slow_flush)
    raw = RawProducer(agent.port)
    try:
        assert raw.send("p8-wal", producer_id, epoch, 2, 2, acks=1) == (0, 2)  # a duplicate
        assert raw.send("p8-wal", producer_id, epoch, 4, 1, acks=1) == (0, 4)
    finally:
        raw.close()
        assert agent.stop() == 0
