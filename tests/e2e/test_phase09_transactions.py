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

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioPartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Producer,
)
from confluent_kafka import TopicPartition as ConfluentPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaPartition
from typer.testing import CliRunner

from streamhouse.cli.streamctl import app
from streamhouse.errors import ErrorCode, PeerUnreachable
from streamhouse.io.kafka_client import KafkaClient
from streamhouse.io.kafka_peer import StreamsMarkerSender
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.control_records import TxnMarker
from streamhouse.names import TopicPartition
from streamhouse.testing.network import free_loopback_port
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
    for value in _values(prefix):
        producer.produce(topic, value=value, partition=partition)
    assert producer.flush(WAIT_S) == 0


def _values(prefix: str) -> list[bytes]:
    return [f"{prefix}-{index}".encode() for index in range(RECORDS)]


def _open_transaction(bootstrap: str, topic: str, prefix: str, **extra: Any) -> Producer:
    """Topic `topic` created, and a producer (transactional id `<topic>-tx`) that has sent
    RECORDS values `<prefix>-<index>` to its partition 0 in a transaction left open."""
    _create(bootstrap, topic)
    producer = _producer(bootstrap, f"{topic}-tx", **extra)
    producer.begin_transaction()
    _send(producer, topic, prefix)
    return producer


def _read_uncommitted(bootstrap: str, topic: str, count: int) -> list[bytes]:
    return _confluent_read(bootstrap, topic, count, "read_uncommitted")


def _confluent_read(bootstrap: str, topic: str, count: int, isolation: str) -> list[bytes]:
    """Up to `count` values of partition 0 from its start, as an `isolation` reader sees it."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"p9-reader-{topic}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    consumer.assign([ConfluentPartition(topic, 0, OFFSET_BEGINNING)])
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
    assert values[:RECORDS] == _values("committed")
    assert len(values) == 2 * RECORDS  # control records are never data
    described = _describe(agent.bootstrap, "p9-basic-tx")
    assert described["state"] == "CompleteAbort" and described["producer epoch"] == 0
    listed = _streamctl(agent.bootstrap, "transactions", "list", "--output", "json")
    assert [row["transactional id"] for row in listed] == ["p9-basic-tx"]
    for filters, found in (
        (["--state", "Ongoing"], []),
        (["--state", "CompleteAbort", "--state", "Ongoing"], ["p9-basic-tx"]),
        (["--producer-id", str(described["producer id"])], ["p9-basic-tx"]),
        (["--producer-id", str(described["producer id"] + 1)], []),
    ):
        filtered = _streamctl(agent.bootstrap, "transactions", "list", *filters, "--output", "json")
        assert [row["transactional id"] for row in filtered] == found, filters
    with urllib.request.urlopen(f"{agent.http_base}/metrics", timeout=WAIT_S) as page:
        metrics = page.read().decode()
    for line in (
        "streamhouse_transactions_committed_total 1.0",
        "streamhouse_transactions_aborted_total 1.0",
        "streamhouse_transactions_markers_written_total 2.0",
        "streamhouse_transactions_open 0.0",
    ):
        assert line in metrics.splitlines(), line


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
    assert _read_uncommitted(agent.bootstrap, "p9-out", RECORDS) == _values("input")


def test_a_second_producer_with_the_same_id_fences_the_first(agent: Agent) -> None:
    zombie = _open_transaction(agent.bootstrap, "p9-zombie", "zombie")
    successor = _producer(agent.bootstrap, "p9-zombie-tx")  # aborts the zombie's transaction
    with pytest.raises(KafkaException) as raised:
        zombie.commit_transaction(WAIT_S)
    assert raised.value.args[0].fatal(), raised.value
    successor.begin_transaction()
    _send(successor, "p9-zombie", "successor")
    successor.commit_transaction(WAIT_S)
    within(  # the markers are written after the commit is answered
        WAIT_S,
        lambda: _describe(agent.bootstrap, "p9-zombie-tx")["state"] == "CompleteCommit",
        "the successor's commit completed",
    )
    assert (
        _describe(agent.bootstrap, "p9-zombie-tx")["producer epoch"] == 2
    )  # one bump for the abort, one for the new producer


def test_a_transaction_past_its_timeout_is_aborted(agent: Agent) -> None:
    timeout = {"transaction.timeout.ms": 2000, "message.timeout.ms": 2000}
    producer = _open_transaction(agent.bootstrap, "p9-timeout", "late", **timeout)
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
        producer = _open_transaction(first.bootstrap, "p9-crash", "kept")
        producer.commit_transaction(WAIT_S)
        # decided, its markers not durable yet: the restarted coordinator must finish it
        assert _describe(first.bootstrap, "p9-crash-tx")["state"] == "PrepareCommit"
        first.kill()
    with start_agent(data_dir) as restarted:
        within(
            WAIT_S,
            lambda: _describe(restarted.bootstrap, "p9-crash-tx")["state"] == "CompleteCommit",
            "the decided commit completed after the restart",
        )
        assert _log_end(restarted.bootstrap, "p9-crash") >= RECORDS + 1
        assert _read_uncommitted(restarted.bootstrap, "p9-crash", RECORDS) == _values("kept")
        restarted.stop_cleanly()


def test_aiokafka_and_kafka_python_transactional_producers(agent: Agent) -> None:
    _create(agent.bootstrap, "p9-clients")

    async def aiokafka_transactions() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=agent.bootstrap, transactional_id="p9-aiokafka-tx"
        )
        await producer.start()
        try:
            async with producer.transaction():
                for value in _values("aiokafka"):
                    await producer.send("p9-clients", value, partition=0)
        finally:
            await producer.stop()

    asyncio.run(aiokafka_transactions())
    producer = KafkaProducer(bootstrap_servers=agent.bootstrap, transactional_id="p9-python-tx")
    producer.init_transactions()
    producer.begin_transaction()
    for value in _values("python"):
        producer.send("p9-clients", value, partition=0)
    producer.commit_transaction()
    producer.close()
    within(WAIT_S, lambda: _log_end(agent.bootstrap, "p9-clients") == 2 * RECORDS + 2, "markers")
    values = _read_uncommitted(agent.bootstrap, "p9-clients", 2 * RECORDS)
    assert values == _values("aiokafka") + _values("python")


def test_streamctl_aborts_a_hanging_transaction_with_a_marker(agent: Agent) -> None:
    """Named by its producer, or by the offset where it began (found with DescribeProducers),
    as kafka-transactions.sh names it; a wrong offset finds nothing."""
    producer = _open_transaction(agent.bootstrap, "p9-hanging", "hanging")
    described = _describe(agent.bootstrap, "p9-hanging-tx")
    abort = ["transactions", "abort", "--topic", "p9-hanging", "--partition", "0"]
    by_producer = ["--producer-id", str(described["producer id"]), "--producer-epoch", "0"]
    assert "aborted producer" in _streamctl(agent.bootstrap, *abort, *by_producer)
    assert _log_end(agent.bootstrap, "p9-hanging") == RECORDS + 1
    producer.abort_transaction(WAIT_S)
    producer.begin_transaction()
    _send(producer, "p9-hanging", "again")  # begins after the markers of both aborts
    wrong = CliRunner().invoke(app, [*abort, "--start-offset", "0", "--bootstrap", agent.bootstrap])
    assert wrong.exit_code == 1 and "no producer" in wrong.output
    start = str(RECORDS + 2)
    assert "aborted producer" in _streamctl(agent.bootstrap, *abort, "--start-offset", start)
    assert _log_end(agent.bootstrap, "p9-hanging") == 2 * RECORDS + 3
    producer.abort_transaction(WAIT_S)


def test_the_marker_sender_writes_markers_at_another_agent(agent: Agent) -> None:
    """The coordinator's asyncio WriteTxnMarkers client (io/kafka_peer.py), as it reaches a
    partition led by another agent; an agent that does not answer is PeerUnreachable."""
    producer = _open_transaction(agent.bootstrap, "p9-peer", "peer")
    producer_id = _describe(agent.bootstrap, "p9-peer-tx")["producer id"]
    host, _, port = agent.bootstrap.rpartition(":")
    sender = StreamsMarkerSender(timeout_ms=5_000)
    tp = TopicPartition("p9-peer", 0)
    marker = TxnMarker(producer_id, 0, committed=False, coordinator_epoch=0)
    missing = TopicPartition("p9-peer", 7)
    codes = asyncio.run(sender.send_markers(host, int(port), marker, [tp, missing]))
    assert codes == {tp: ErrorCode.NONE, missing: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}
    assert _log_end(agent.bootstrap, "p9-peer") == RECORDS + 1
    with pytest.raises(PeerUnreachable):
        asyncio.run(sender.send_markers(host, free_loopback_port(), marker, [tp]))
    producer.abort_transaction(WAIT_S)


def _confluent_read_committed(bootstrap: str, topic: str, count: int) -> list[bytes]:
    return _confluent_read(bootstrap, topic, count, "read_committed")


async def _aiokafka_read_committed(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = AioPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        found: list[bytes] = []
        deadline = time.monotonic() + WAIT_S
        while len(found) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(tp, timeout_ms=500)
            found += [message.value for message in batches.get(tp, []) if message.value]
        return found
    finally:
        await consumer.stop()


def _kafka_python_read_committed(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    tp = KafkaPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    found: list[bytes] = []
    deadline = time.monotonic() + WAIT_S
    while len(found) < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            found += [record.value for record in records]
    consumer.close()
    return found


def test_aborted_transactions_are_invisible_to_read_committed_consumers(agent: Agent) -> None:
    producer = _open_transaction(agent.bootstrap, "p9-isolation", "first")
    producer.commit_transaction(WAIT_S)
    for prefix, commit in (("aborted", False), ("last", True)):
        producer.begin_transaction()
        _send(producer, "p9-isolation", prefix)
        if commit:
            producer.commit_transaction(WAIT_S)
        else:
            producer.abort_transaction(WAIT_S)
    committed = _values("first") + _values("last")
    everything = _values("first") + _values("aborted") + _values("last")
    # the aborted records lie between the committed ones: the first 2 * RECORDS read are
    # the committed ones only if every aborted one was skipped
    bootstrap, topic, wanted = agent.bootstrap, "p9-isolation", 2 * RECORDS
    assert _confluent_read_committed(bootstrap, topic, wanted) == committed
    assert asyncio.run(_aiokafka_read_committed(bootstrap, topic, wanted)) == committed
    assert _kafka_python_read_committed(bootstrap, topic, wanted) == committed
    assert _read_uncommitted(bootstrap, topic, 3 * RECORDS) == everything


def test_add_partitions_v4_verifies_without_adding(agent: Agent) -> None:
    """AddPartitionsToTxn v4's batched form with verify_only (KIP-890), as a partition leader
    asks it: a partition in the open transaction is NONE, one outside INVALID_TXN_STATE, an
    older epoch fenced; nothing is added."""
    producer = _open_transaction(agent.bootstrap, "p9-verify", "verified")
    _create(agent.bootstrap, "p9-verify-other")
    producer_id = _describe(agent.bootstrap, "p9-verify-tx")["producer id"]
    host, _, port = agent.bootstrap.rpartition(":")

    def verify(epoch: int) -> dict[str, int]:
        topics = [{"name": "p9-verify", "partitions": [0]}]
        topics.append({"name": "p9-verify-other", "partitions": [0]})
        transaction = {
            "transactional_id": "p9-verify-tx",
            "producer_id": producer_id,
            "producer_epoch": epoch,
            "verify_only": True,
            "topics": topics,
        }
        with KafkaClient(host, int(port), WAIT_S) as client:
            answer = client.call(ApiKey.ADD_PARTITIONS_TO_TXN, {"transactions": [transaction]})
        (result,) = answer.results_by_transaction
        return {
            topic.name: int(part.partition_error_code)
            for topic in result.topic_results
            for part in topic.results_by_partition
        }

    assert verify(0) == {
        "p9-verify": ErrorCode.NONE,
        "p9-verify-other": ErrorCode.INVALID_TXN_STATE,
    }
    fenced = dict.fromkeys(("p9-verify", "p9-verify-other"), ErrorCode.PRODUCER_FENCED)
    assert verify(5) == fenced
    assert _describe(agent.bootstrap, "p9-verify-tx")["partitions"] == ["p9-verify-0"]
    producer.abort_transaction(WAIT_S)
