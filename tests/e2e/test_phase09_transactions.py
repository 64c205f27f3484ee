"""Phase 9 (the coordinator's part): confluent-kafka transactional producers against a real
agent. Commit and abort end with a marker in each partition (the log end moves past it);
send_offsets_to_transaction commits the group's offsets with the transaction; a second
producer with the same transactional.id fences the first; a transaction past its timeout
is aborted; an agent SIGKILLed after EndTxn(commit) completes the commit once restarted;
DescribeTransactions and ListTransactions answer (through streamctl).

read_committed consumers and the LSO are the log side's (on main); here records are read
read_uncommitted (clients skip control records) and markers seen through the log end.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Producer,
)
from confluent_kafka import TopicPartition as ConfluentPartition
from confluent_kafka.admin import AdminClient, NewTopic
from typer.testing import CliRunner

from streamhouse.cli.streamctl import app
from tests.e2e.conftest import Agent, start_agent, within

WAIT_S = 30
RECORDS = 10


def _create(bootstrap: str, *topics: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(t, partitions) for t in topics])
    for future in futures.values():
        future.result(WAIT_S)


def _producer(bootstrap: str, transactional_id: str, **extra: Any) -> Producer:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": transactional_id, **extra}
    )
    producer.init_transactions(WAIT_S)
    return producer


def _send(producer: Producer, topic: str, prefix: str, partition: int = 0) -> None:
    for index in range(RECORDS):
        producer.produce(topic, value=f"{prefix}-{index}".encode(), partition=partition)
    assert producer.flush(WAIT_S) == 0


def _read_uncommitted(bootstrap: str, topic: str, count: int, partition: int = 0) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"p9-reader-{topic}",
            "enable.auto.commit": False,
            "isolation.level": "read_uncommitted",
        }
    )
    consumer.assign([ConfluentPartition(topic, partition, OFFSET_BEGINNING)])
    found: list[bytes] = []
    deadline = time.monotonic() + WAIT_S
    while len(found) < count and time.monotonic() < deadline:
        message = consumer.poll(1)
        if message is None:
            continue
        assert message.error() is None, message.error()
        found.append(message.value())
    consumer.close()
    return found


def _log_end(bootstrap: str, topic: str, partition: int = 0) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "p9-offsets"})
    _, high = consumer.get_watermark_offsets(ConfluentPartition(topic, partition), WAIT_S)
    consumer.close()
    return int(high)


def _streamctl(bootstrap: str, *args: str) -> Any:
    """streamctl in-process (Typer's runner), as the other streamctl tests run it."""
    done = CliRunner().invoke(app, [*args, "--bootstrap", bootstrap])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout) if "--output" in args else done.stdout


def _describe(bootstrap: str, transactional_id: str) -> dict[str, Any]:
    described: dict[str, Any] = _streamctl(
        bootstrap, "transactions", "describe", transactional_id, "--output", "json"
    )
    return described


def test_commit_and_abort_end_with_markers(agent: Agent) -> None:
    _create(agent.bootstrap, "p9-basic")
    producer = _producer(agent.bootstrap, "p9-basic-tx")
    producer.begin_transaction()
    _send(producer, "p9-basic", "committed")
    producer.commit_transaction(WAIT_S)
    producer.begin_transaction()
    _send(producer, "p9-basic", "aborted")
    producer.abort_transaction(WAIT_S)
    within(WAIT_S, lambda: _log_end(agent.bootstrap, "p9-basic") == 2 * RECORDS + 2, "markers")
    values = _read_uncommitted(agent.bootstrap, "p9-basic", 2 * RECORDS)
    assert values[:RECORDS] == [f"committed-{i}".encode() for i in range(RECORDS)]
    assert len(values) == 2 * RECORDS  # control records are never data
    described = _describe(agent.bootstrap, "p9-basic-tx")
    assert described["state"] == "CompleteAbort" and described["producer epoch"] == 0
    listed = _streamctl(agent.bootstrap, "transactions", "list", "--output", "json")
    assert [row["transactional id"] for row in listed] == ["p9-basic-tx"]


def test_send_offsets_to_transaction_commits_the_groups_offsets(agent: Agent) -> None:
    _create(agent.bootstrap, "p9-in", "p9-out")
    source = Producer({"bootstrap.servers": agent.bootstrap})
    _send(source, "p9-in", "input")
    consumer = Consumer(
        {
            "bootstrap.servers": agent.bootstrap,
            "group.id": "p9-loop",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe(["p9-in"])
    producer = _producer(agent.bootstrap, "p9-loop-tx")
    moved = 0
    deadline = time.monotonic() + WAIT_S
    producer.begin_transaction()
    while moved < RECORDS and time.monotonic() < deadline:
        message = consumer.poll(1)
        if message is None or message.error() is not None:
            continue
        producer.produce("p9-out", value=message.value(), partition=0)
        moved += 1
    assert moved == RECORDS
    producer.send_offsets_to_transaction(
        consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), WAIT_S
    )
    producer.commit_transaction(WAIT_S)
    (committed,) = consumer.committed([ConfluentPartition("p9-in", 0)], WAIT_S)
    assert committed.offset == RECORDS
    consumer.close()
    assert _read_uncommitted(agent.bootstrap, "p9-out", RECORDS) == [
        f"input-{i}".encode() for i in range(RECORDS)
    ]


def test_a_second_producer_with_the_same_id_fences_the_first(agent: Agent) -> None:
    _create(agent.bootstrap, "p9-zombie")
    zombie = _producer(agent.bootstrap, "p9-zombie-tx")
    zombie.begin_transaction()
    _send(zombie, "p9-zombie", "zombie")
    successor = _producer(agent.bootstrap, "p9-zombie-tx")  # aborts the zombie's transaction
    with pytest.raises(KafkaException) as raised:
        zombie.commit_transaction(WAIT_S)
    assert raised.value.args[0].fatal(), raised.value
    successor.begin_transaction()
    _send(successor, "p9-zombie", "successor")
    successor.commit_transaction(WAIT_S)
    described = _describe(agent.bootstrap, "p9-zombie-tx")
    assert described["state"] == "CompleteCommit"
    assert described["producer epoch"] == 2  # one bump for the abort, one for the new producer


def test_a_transaction_past_its_timeout_is_aborted(agent: Agent) -> None:
    _create(agent.bootstrap, "p9-timeout")
    timeout = {"transaction.timeout.ms": 2000, "message.timeout.ms": 2000}
    producer = _producer(agent.bootstrap, "p9-timeout-tx", **timeout)
    producer.begin_transaction()
    _send(producer, "p9-timeout", "late")
    within(
        WAIT_S,
        lambda: _describe(agent.bootstrap, "p9-timeout-tx")["state"] == "CompleteAbort",
        "the timed-out transaction aborted",
    )
    assert _describe(agent.bootstrap, "p9-timeout-tx")["producer epoch"] == 1
    with pytest.raises(KafkaException):
        producer.commit_transaction(WAIT_S)
    assert _log_end(agent.bootstrap, "p9-timeout") == RECORDS + 1  # the abort marker


def test_a_commit_decided_before_a_sigkill_completes_after_the_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    slow_flush = ("--flush-interval-ms", "3000")  # markers wait this long to be durable
    with start_agent(data_dir, *slow_flush) as first:
        _create(first.bootstrap, "p9-crash")
        producer = _producer(first.bootstrap, "p9-crash-tx")
        producer.begin_transaction()
        _send(producer, "p9-crash", "kept")
        producer.commit_transaction(WAIT_S)
        first.kill()
    with start_agent(data_dir) as restarted:
        within(
            WAIT_S,
            lambda: _describe(restarted.bootstrap, "p9-crash-tx")["state"] == "CompleteCommit",
            "the decided commit completed after the restart",
        )
        assert _log_end(restarted.bootstrap, "p9-crash") >= RECORDS + 1
        assert _read_uncommitted(restarted.bootstrap, "p9-crash", RECORDS) == [
            f"kept-{i}".encode() for i in range(RECORDS)
        ]
        restarted.stop_cleanly()
