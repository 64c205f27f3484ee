"""Phase 9, read_committed: aborted transactions are invisible to read_committed consumers of
all three client libraries and visible to read_uncommitted ones, read from the in-memory tail,
after a SIGKILL (from the WAL) and after a clean restart (from objects alone, the aborted ranges
from the metadata store); an open transaction holds the last stable offset, and ListOffsets
answers by isolation level."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition as AioPartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    Message,
    Producer,
)
from confluent_kafka import TopicPartition as ConfluentPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaPythonPartition

from streamhouse.testing.agent_process import AgentProcess
from streamhouse.testing.network import free_loopback_port
from tests.e2e.conftest import start_agent

WAIT_S = 30
TXN_TIMEOUT_MS = 20_000


@dataclass
class RestartableAgent:
    """An agent on fixed ports, so clients keep their bootstrap across SIGKILL and restart."""

    data_dir: Path
    kafka_port: int = field(default_factory=free_loopback_port)
    http_port: int = field(default_factory=free_loopback_port)
    process: AgentProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def start(self) -> None:
        ports = ("--kafka-port", str(self.kafka_port), "--http-port", str(self.http_port))
        self.process = start_agent(self.data_dir, *ports)

    def kill_and_restart(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop_cleanly()


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[RestartableAgent]:
    agent = RestartableAgent(tmp_path / "data")
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


def _create(bootstrap: str, *topics: tuple[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions) for name, partitions in topics])
    for future in futures.values():
        future.result(WAIT_S)


def _transactional(bootstrap: str, transactional_id: str) -> Producer:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": TXN_TIMEOUT_MS,
            "linger.ms": 5,
        }
    )
    producer.init_transactions(WAIT_S)
    return producer


def _consume(
    bootstrap: str,
    topic: str,
    partitions: int,
    isolation: str,
    expected: int,
    wait_s: float = WAIT_S,
) -> list[Message]:
    """Every record of `topic` from the beginning, until `expected` came and nothing more
    does for a second (or `wait_s` passed)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"p9-reader-{topic}-{isolation}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    consumer.assign([ConfluentPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    found: list[Message] = []
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        message = consumer.poll(1 if len(found) >= expected else 0.5)
        if message is None:
            if len(found) >= expected:
                break
            continue
        if message.error() is None:
            found.append(message)
    consumer.close()
    return found


# --- aborted transactions and read_committed -------------------------------------------------


def _committed_aborted_committed(bootstrap: str, topic: str) -> None:
    producer = _transactional(bootstrap, f"{topic}-writer")
    for name, commit in (("c1", True), ("a", False), ("c2", True)):
        producer.begin_transaction()
        for index in range(10):
            producer.produce(topic, value=f"{name}-{index}".encode(), partition=index % 2)
        producer.flush(WAIT_S)
        if commit:
            producer.commit_transaction(WAIT_S)
        else:
            producer.abort_transaction(WAIT_S)


def _expected(*names: str) -> set[bytes]:
    return {f"{name}-{index}".encode() for name in names for index in range(10)}


def _aiokafka_values(bootstrap: str, topic: str, isolation: str, expected: int) -> set[bytes]:
    async def read() -> set[bytes]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False
        )
        await consumer.start()
        try:
            partitions = [AioPartition(topic, p) for p in range(2)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            found: set[bytes] = set()
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                fresh = [r.value for records in batches.values() for r in records]
                found.update(v for v in fresh if v is not None)
                if len(found) >= expected and not fresh:
                    break
            return found
        finally:
            await consumer.stop()

    return asyncio.run(read())


def _kafka_python_values(bootstrap: str, topic: str, isolation: str, expected: int) -> set[bytes]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False
    )
    partitions = [KafkaPythonPartition(topic, p) for p in range(2)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    found: set[bytes] = set()
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        fresh = [r.value for rs in consumer.poll(timeout_ms=500).values() for r in rs]
        found.update(v for v in fresh if v is not None)
        if len(found) >= expected and not fresh:
            break
    consumer.close()
    return found


def _confluent_values(bootstrap: str, topic: str, isolation: str, expected: int) -> set[bytes]:
    messages = _consume(bootstrap, topic, 2, isolation, expected)
    values = [m.value() for m in messages]
    assert len(values) == len(set(values))  # no duplicates, no control records as data
    return {v for v in values if v is not None}


READERS = {
    "confluent-kafka": _confluent_values,
    "aiokafka": _aiokafka_values,
    "kafka-python": _kafka_python_values,
}


def _check_isolation(bootstrap: str, topic: str) -> None:
    for name, read in READERS.items():
        committed = read(bootstrap, topic, "read_committed", 20)
        assert committed == _expected("c1", "c2"), name
        everything = read(bootstrap, topic, "read_uncommitted", 30)
        assert everything == _expected("c1", "a", "c2"), name


def test_aborted_transactions_are_invisible_to_read_committed(
    restartable: RestartableAgent,
) -> None:
    _create(restartable.bootstrap, ("p9-isolation", 2))
    _committed_aborted_committed(restartable.bootstrap, "p9-isolation")
    _check_isolation(restartable.bootstrap, "p9-isolation")  # from the in-memory tail
    restartable.kill_and_restart()  # from the WAL
    _check_isolation(restartable.bootstrap, "p9-isolation")
    assert restartable.process is not None
    restartable.process.stop_cleanly()  # everything flushed: from objects alone
    restartable.start()
    _check_isolation(restartable.bootstrap, "p9-isolation")


def test_an_open_transaction_holds_read_committed_and_list_offsets_back(
    restartable: RestartableAgent,
) -> None:
    bootstrap = restartable.bootstrap
    _create(bootstrap, ("p9-open", 1))
    producer = _transactional(bootstrap, "p9-open-writer")
    producer.begin_transaction()
    producer.produce("p9-open", value=b"pending", partition=0)
    producer.flush(WAIT_S)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tp = ConfluentPartition("p9-open", 0)

    def latest(isolation: IsolationLevel) -> int:
        answer = admin.list_offsets({tp: OffsetSpec.latest()}, isolation_level=isolation)
        return int(answer[tp].result(WAIT_S).offset)

    assert latest(IsolationLevel.READ_UNCOMMITTED) == 1
    assert latest(IsolationLevel.READ_COMMITTED) == 0
    # (well within the transaction's timeout, which would abort it)
    assert _consume(bootstrap, "p9-open", 1, "read_committed", 1, wait_s=3) == []
    producer.commit_transaction(WAIT_S)  # answered once decided; the markers follow
    deadline = time.monotonic() + WAIT_S
    while latest(IsolationLevel.READ_COMMITTED) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert latest(IsolationLevel.READ_COMMITTED) == 2  # past the marker
    (message,) = _consume(bootstrap, "p9-open", 1, "read_committed", 1)
    assert message.value() == b"pending"
