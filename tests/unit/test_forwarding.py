"""REST and gRPC serve every partition of the cluster: two agents share one SQLite store and one
bucket (processes 0 and 1 of one data directory), and agent A's ProduceService and FetchService
serve the partitions agent B leads by asking B over its Kafka listener. What A was told is what
a Kafka consumer reads; reads on A of B's partitions are byte-exact, leave out aborted
transactions reading committed, and tell B's offsets. On a SASL listener there is no forwarding:
a partition led elsewhere is refused naming its leader."""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamhouse.engine.produce import Ack, NewRecord
from streamhouse.errors import ErrorCode, OffsetOutOfRange
from streamhouse.names import TopicPartition as Tp
from tests.unit.sasl_world import (
    SECRET,
    USER,
    AgentThread,
    InTestAuthenticator,
    agent_settings,
)
from tests.unit.test_produce_fetch_services import CLIENT_TIMEOUT_S, call, engine

PARTITIONS = 8  # a new topic lands all on one agent about 1 time in 128 (4: 1 in 8, a 10 s wait)
SPLIT_WAIT_S = 10  # for a new topic's partitions to be led by both agents
SPLIT_TOPIC_TRIES = 6  # topics tried: each lands all on one agent with odds about 1 in 128
POLL_S = 0.2


def _pair(data_dir: Path, protocol: str = "PLAINTEXT") -> tuple[AgentThread, AgentThread]:
    """Processes 0 and 1 of one data directory, as `streamhouse agent --processes 2` runs them
    (not yet started)."""
    settings = dataclasses.replace(agent_settings(data_dir, protocol), processes=2)
    authenticator = InTestAuthenticator({USER: SECRET}) if protocol != "PLAINTEXT" else None
    return (
        AgentThread(dataclasses.replace(settings, process_index=0), authenticator),
        AgentThread(dataclasses.replace(settings, process_index=1), authenticator),
    )


@contextlib.contextmanager
def running_pair(data_dir: Path) -> Iterator[tuple[AgentThread, AgentThread]]:
    """Processes 0 and 1 of `data_dir`, started in turn and stopped in reverse."""
    a, b = _pair(data_dir)
    a.start()
    try:
        b.start()
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AgentThread, AgentThread]]:
    with running_pair(tmp_path_factory.mktemp("pair")) as pair:
        yield pair


def _within(timeout_s: float, holds: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if holds():
            return
        time.sleep(POLL_S)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def _led_by(a: AgentThread, b: AgentThread, topic: str) -> list[int] | None:
    """The partitions of `topic` agent A's directory says B leads, once each agent leads some
    of them; None if that is not so within SPLIT_WAIT_S (the balance is of all partitions, so
    a topic's may all belong on one agent)."""
    partitions = [Tp(topic, p) for p in range(PARTITIONS)]
    led: list[int] = []
    deadline = time.monotonic() + SPLIT_WAIT_S
    while time.monotonic() < deadline:
        leaders = [call(a, engine(a).admin.current_leader(tp, fresh=True)) for tp in partitions]
        agents = [hint[0].agent_id if hint else "" for hint in leaders]
        led[:] = [p for p, agent in enumerate(agents) if agent == engine(b).agent_id]
        if 0 < len(led) < PARTITIONS and set(agents) == {engine(a).agent_id, engine(b).agent_id}:
            return led
        time.sleep(POLL_S)
    return None


def _new_topic(a: AgentThread, b: AgentThread) -> tuple[str, list[int]]:
    """A new topic some of whose partitions each agent leads (a topic all of whose
    partitions land on one agent, which the cluster-wide balance allows, is left aside)."""
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    for _ in range(SPLIT_TOPIC_TRIES):
        name = f"fwd-{uuid.uuid4().hex[:8]}"
        admin.create_topics([NewTopic(name, PARTITIONS)])[name].result(CLIENT_TIMEOUT_S)
        led_by_b = _led_by(a, b, name)
        if led_by_b is not None:
            return name, led_by_b
    raise AssertionError(f"no topic of {SPLIT_TOPIC_TRIES} was split between the agents")


def _consume(bootstrap: str, topic: str, partition: int, expected: int) -> list[object]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
    found: list[object] = []
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    try:
        while len(found) < expected and time.monotonic() < deadline:
            message = consumer.poll(POLL_S)
            if message is not None and message.error() is None:
                found.append(message)
    finally:
        consumer.close()
    return found


@pytest.mark.parametrize("ack", [Ack.NONE, Ack.LEADER, Ack.DURABLE])
def test_produce_on_a_to_every_partition_lands_where_a_kafka_consumer_reads_it(
    agents: tuple[AgentThread, AgentThread], ack: Ack
) -> None:
    a, b = agents
    topic, led_by_b = _new_topic(a, b)
    records = [
        NewRecord(f"k{i}".encode(), f"value-{i}".encode(), (("h", b"\x00\x01"),), i % PARTITIONS)
        for i in range(3 * PARTITIONS)
    ]
    produced = call(a, engine(a).produce.produce(topic, records, ack))
    assert [r.error for r in produced] == [None] * len(records)
    assert [(r.partition, r.offset) for r in produced] == [
        (i % PARTITIONS, i // PARTITIONS) for i in range(len(records))
    ]
    for partition in led_by_b:
        found = _consume(a.bootstrap, topic, partition, 3)
        told = [
            (r.offset, records[i].value) for i, r in enumerate(produced) if r.partition == partition
        ]
        assert [(m.offset(), m.value()) for m in found] == told  # type: ignore[attr-defined]


def test_reads_on_a_of_bs_partition_are_byte_exact_with_offsets(
    agents: tuple[AgentThread, AgentThread],
) -> None:
    a, b = agents
    topic, led_by_b = _new_topic(a, b)
    tp = Tp(topic, led_by_b[0])
    producer = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0})
    sent = [(f"k{i}".encode(), bytes(range(i, i + 40)), [("n", str(i).encode())]) for i in range(5)]
    for key, value, headers in sent:
        producer.produce(topic, value, key, partition=tp.partition, headers=headers)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0

    read = call(a, engine(a).fetch.read(tp, 0, 1024 * 1024))
    assert [(r.partition, r.offset, r.key, r.value, r.headers) for r in read.records] == [
        (tp.partition, i, key, value, tuple(headers))
        for i, (key, value, headers) in enumerate(sent)
    ]
    assert (read.next_offset, read.high_watermark, read.log_start_offset) == (5, 5, 0)
    later = call(a, engine(a).fetch.read(tp, 3, 1024 * 1024))
    assert [r.offset for r in later.records] == [3, 4]
    offsets = call(a, engine(a).fetch.offsets(tp))
    assert (offsets.log_start_offset, offsets.high_watermark, offsets.last_stable_offset) == (
        0,
        5,
        5,
    )
    with pytest.raises(OffsetOutOfRange, match=engine(b).agent_id):  # as a local read
        call(a, engine(a).fetch.read(tp, 99, 1024))
    past_end = call(a, engine(a).fetch.wait_for_data({tp: 5}, 200))
    assert past_end is False
    assert call(a, engine(a).fetch.wait_for_data({tp: 4}, 10_000)) is True


def test_reading_committed_on_a_leaves_out_bs_aborted_transaction(
    agents: tuple[AgentThread, AgentThread],
) -> None:
    a, b = agents
    topic, led_by_b = _new_topic(a, b)
    tp = Tp(topic, led_by_b[0])
    producer = Producer(
        {"bootstrap.servers": a.bootstrap, "transactional.id": f"t-{uuid.uuid4().hex[:6]}"}
    )
    producer.init_transactions(CLIENT_TIMEOUT_S)
    for outcome, values in ((False, [b"aborted-1", b"aborted-2"]), (True, [b"kept"])):
        producer.begin_transaction()
        for value in values:
            producer.produce(topic, value, partition=tp.partition)
        producer.flush(CLIENT_TIMEOUT_S)
        if outcome:
            producer.commit_transaction(CLIENT_TIMEOUT_S)
        else:
            producer.abort_transaction(CLIENT_TIMEOUT_S)

    # EndTxn answers before the markers are written: the commit becomes stable soon after
    seen: list[list[bytes | None]] = []

    def committed_read() -> bool:
        read = call(a, engine(a).fetch.read(tp, 0, 1024 * 1024, read_committed=True))
        seen.append([r.value for r in read.records])
        return seen[-1] == [b"kept"]

    _within(CLIENT_TIMEOUT_S, committed_read, "the committed record readable")
    assert all(values in ([], [b"kept"]) for values in seen), seen  # never an aborted one
    committed = call(a, engine(a).fetch.read(tp, 0, 1024 * 1024, read_committed=True))
    everything = call(a, engine(a).fetch.read(tp, 0, 1024 * 1024, read_committed=False))
    assert [r.value for r in everything.records] == [b"aborted-1", b"aborted-2", b"kept"]
    offsets = call(a, engine(a).fetch.offsets(tp))
    assert offsets.last_stable_offset == offsets.high_watermark == committed.next_offset


def test_a_sasl_listener_refuses_forwarding_naming_the_leader(tmp_path: Path) -> None:
    a, b = _pair(tmp_path / "sasl", "SASL_PLAINTEXT")
    a.start()
    try:
        b.start()
        try:
            topic = f"fwd-{uuid.uuid4().hex[:8]}"
            call(a, engine(a).admin.create_topic(topic, PARTITIONS))
            led_by_b = _led_by(a, b, topic)
            record = NewRecord(None, b"v", partition=led_by_b[0])
            (produced,) = call(a, engine(a).produce.produce(topic, [record], Ack.LEADER))
            assert produced.error is not None
            assert produced.error.code is ErrorCode.NOT_LEADER_OR_FOLLOWER
            assert engine(b).agent_id in str(produced.error)
            assert "SASL_PLAINTEXT" in str(produced.error)
        finally:
            b.stop()
    finally:
        a.stop()
