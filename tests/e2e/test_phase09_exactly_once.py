"""Phase 9's consume-transform-produce loop: a confluent-kafka consumer and transactional
producer move N records from topic A to topic B in transactions that carry the consumer's
offsets (send_offsets_to_transaction), while the agent is SIGKILLed twice in the middle of a
transaction and restarted on the same data directory and port. A read_committed consumer then
finds every record of A in B exactly once, in order, and the group's committed offset is N:
the transactions open at the kills were aborted (their records never seen), the committed
ones kept."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer
from confluent_kafka import TopicPartition as ConfluentPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamhouse.testing.agent_process import AgentProcess
from streamhouse.testing.network import free_loopback_port
from tests.e2e.conftest import start_agent

RECORDS = 300
PER_TRANSACTION = 20
KILL_AT = (100, 200)  # records moved when the agent is SIGKILLed mid-transaction
WAIT_S = 30
GROUP = "p9-eos"
INPUT, OUTPUT = "p9-eos-in", "p9-eos-out"


def _transformed(value: bytes) -> bytes:
    return value.upper()


@contextmanager
def _loop_clients(bootstrap: str) -> Iterator[tuple[Consumer, Producer]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": GROUP,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.assign([ConfluentPartition(INPUT, 0)])  # from the group's committed offset
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "p9-eos-tx"})
    producer.init_transactions(WAIT_S)  # fences (and aborts) the one before a kill
    try:
        yield consumer, producer
    finally:
        consumer.close()


def _move_batch(consumer: Consumer, producer: Producer, agent: AgentProcess | None) -> int:
    """One transaction of up to PER_TRANSACTION records; with `agent`, it is SIGKILLed after
    half of them are produced (the commit then fails). Returns the records committed."""
    producer.begin_transaction()
    moved = 0
    deadline = time.monotonic() + WAIT_S
    while moved < PER_TRANSACTION and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None or message.error() is not None:
            continue
        producer.produce(OUTPUT, _transformed(message.value()), partition=0)
        moved += 1
        if agent is not None and moved == PER_TRANSACTION // 2:
            assert producer.flush(WAIT_S) == 0
            agent.kill()
            raise KafkaException("killed mid-transaction")
    producer.send_offsets_to_transaction(
        consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), WAIT_S
    )
    producer.commit_transaction(WAIT_S)
    return moved


def _read_committed(bootstrap: str) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "p9-eos-check",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.assign([ConfluentPartition(OUTPUT, 0, OFFSET_BEGINNING)])
    found: list[bytes] = []
    quiet_until = time.monotonic() + WAIT_S
    while time.monotonic() < quiet_until:
        message = consumer.poll(0.5)
        if message is None:
            if len(found) >= RECORDS:  # then a while with nothing more: no duplicates late
                quiet_until = min(quiet_until, time.monotonic() + 2)
            continue
        assert message.error() is None, message.error()
        found.append(message.value())
    consumer.close()
    return found


def test_consume_transform_produce_exactly_once_across_two_sigkills(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = ("--kafka-port", str(free_loopback_port()))
    agent = start_agent(data_dir, *port)
    try:
        admin = AdminClient({"bootstrap.servers": agent.bootstrap})
        for future in admin.create_topics([NewTopic(INPUT, 1), NewTopic(OUTPUT, 1)]).values():
            future.result(WAIT_S)
        source = Producer({"bootstrap.servers": agent.bootstrap, "acks": "all"})
        for index in range(RECORDS):
            source.produce(INPUT, f"record-{index}".encode(), partition=0)
        assert source.flush(WAIT_S) == 0
        committed, kills = 0, list(KILL_AT)
        while committed < RECORDS:
            killed = False
            with _loop_clients(agent.bootstrap) as (consumer, producer):
                try:
                    while committed < RECORDS:
                        killed = bool(kills) and committed >= kills[0]
                        committed += _move_batch(consumer, producer, agent if killed else None)
                except KafkaException:
                    assert killed, "only a kill may fail a transaction"
                    kills.pop(0)
            if killed:
                agent = start_agent(data_dir, *port)  # restarted: the loop resumes
        assert not kills
        expected = [_transformed(f"record-{index}".encode()) for index in range(RECORDS)]
        assert _read_committed(agent.bootstrap) == expected
        check = Consumer({"bootstrap.servers": agent.bootstrap, "group.id": GROUP})
        (offset,) = check.committed([ConfluentPartition(INPUT, 0)], WAIT_S)
        check.close()
        assert offset.offset == RECORDS
        agent.stop_cleanly()
    finally:
        agent.kill()
