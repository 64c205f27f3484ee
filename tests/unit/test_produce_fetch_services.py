"""The produce and read rules every door shares, against a real agent and real Kafka clients:
records placed by ProduceService land where librdkafka's murmur2 partitioner puts them and read
back byte-exact by a Kafka consumer; FetchService reads what a Kafka producer wrote, leaving
out control records and, reading committed, aborted transactions."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streamhouse.agent import Agent
from streamhouse.engine.consume import ConsumedRecord
from streamhouse.engine.produce import Ack, NewRecord
from streamhouse.errors import ErrorCode, StreamHouseError, UnknownTopicOrPartition
from streamhouse.kafka.partitioner import murmur2
from streamhouse.names import TopicPartition as Tp
from tests.unit.sasl_world import AgentThread, agent_settings

CLIENT_TIMEOUT_S = 20
PARTITIONS = 4
T = TypeVar("T")


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    running = AgentThread(agent_settings(tmp_path_factory.mktemp("agent"), "PLAINTEXT"), None)
    running.start()
    yield running
    running.stop()


def call(agent: AgentThread, coro: Coroutine[Any, Any, T]) -> T:
    """Run an engine call on the agent's own loop."""
    assert agent._loop is not None
    return asyncio.run_coroutine_threadsafe(coro, agent._loop).result(CLIENT_TIMEOUT_S)


def engine(agent: AgentThread) -> Agent:
    assert agent.agent is not None
    return agent.agent


def new_topic(agent: AgentThread, partitions: int = PARTITIONS) -> str:
    name = f"svc-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    admin.create_topics([NewTopic(name, partitions)])[name].result(CLIENT_TIMEOUT_S)
    return name


def consume_all(agent: AgentThread, topic: str, expected: int) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": agent.bootstrap,
            "group.id": f"g-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    found: list[Any] = []
    try:
        for _ in range(200):
            if len(found) >= expected:
                break
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                found.append(message)
    finally:
        consumer.close()
    return found


def read_to_end(agent: AgentThread, tp: Tp, *, read_committed: bool) -> list[ConsumedRecord]:
    """Every record from offset 0 to the end, read after read as a door would."""
    found: list[ConsumedRecord] = []
    offset = 0
    for _ in range(100):
        fetch = engine(agent).fetch
        read = call(agent, fetch.read(tp, offset, 1 << 20, read_committed=read_committed))
        found += read.records
        if read.next_offset == offset:
            return found
        offset = read.next_offset
    raise AssertionError(f"{tp} was not read to its end in 100 reads")


def test_murmur2_matches_kafkas_published_values() -> None:
    # the values Kafka's own UtilsTest expects of Utils.murmur2, as signed ints
    expected = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for data, signed in expected.items():
        assert murmur2(data) == signed & 0xFFFFFFFF


def test_keyed_records_land_where_librdkafka_puts_them(agent: AgentThread) -> None:
    topic = new_topic(agent)
    keys = [f"key-{i}".encode() for i in range(40)]
    producer = Producer({"bootstrap.servers": agent.bootstrap, "partitioner": "murmur2_random"})
    theirs: dict[bytes, int] = {}

    def delivered(_error: Any, message: Any) -> None:
        theirs[message.key()] = message.partition()

    for key in keys:
        producer.produce(topic, b"k", key, on_delivery=delivered)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0
    records = [NewRecord(key, b"v-" + key, (("h", b"1"), ("n", None))) for key in keys]
    ours = call(agent, engine(agent).produce.produce(topic, records))
    assert [r.error for r in ours] == [None] * len(keys)
    assert {key: r.partition for key, r in zip(keys, ours, strict=True)} == theirs
    assert len({r.partition for r in ours}) > 1
    read = {(m.partition(), m.offset()): m for m in consume_all(agent, topic, 2 * len(keys))}
    for key, produced in zip(keys, ours, strict=True):
        message = read[(produced.partition, produced.offset)]
        assert (message.key(), message.value()) == (key, b"v-" + key)
        assert message.headers() == [("h", b"1"), ("n", None)]
        assert message.timestamp()[1] == produced.timestamp_ms


@pytest.mark.parametrize("ack", list(Ack))
def test_each_ack_mode_answers_offsets_in_record_order(agent: AgentThread, ack: Ack) -> None:
    topic = new_topic(agent, partitions=2)
    records = [
        NewRecord(None, f"{i}".encode(), partition=i % 2, timestamp_ms=1_000 + i) for i in range(6)
    ]
    produced = call(agent, engine(agent).produce.produce(topic, records, ack))
    assert [(r.partition, r.offset, r.timestamp_ms) for r in produced] == [
        (i % 2, i // 2, 1_000 + i) for i in range(6)
    ]
    for _ in range(100):  # acks=none answers before the WAL write is synced
        if call(agent, engine(agent).fetch.offsets(Tp(topic, 1))).high_watermark == 3:
            break
        time.sleep(0.05)
    read = call(agent, engine(agent).fetch.read(Tp(topic, 1), 1, 1 << 20))
    assert [(r.offset, r.value, r.timestamp_ms) for r in read.records] == [
        (1, b"3", 1_003),
        (2, b"5", 1_005),
    ]
    assert read.next_offset == 3 == read.high_watermark


def test_keyless_records_spread_and_refusals_are_clear(agent: AgentThread) -> None:
    topic = new_topic(agent)
    produced = call(agent, engine(agent).produce.produce(topic, [NewRecord(None, b"x")] * 8))
    assert {r.partition for r in produced} == set(range(PARTITIONS))
    with pytest.raises(UnknownTopicOrPartition):
        missing = f"missing-{uuid.uuid4().hex[:6]}"
        call(agent, engine(agent).produce.produce(missing, [NewRecord(None, b"x")]))
    with pytest.raises(UnknownTopicOrPartition, match="partitions 0-3, not 9"):
        call(agent, engine(agent).produce.produce(topic, [NewRecord(None, b"x", partition=9)]))
    choices = r"ack must be one of none\|leader\|durable"
    with pytest.raises(StreamHouseError, match=choices) as refused:
        Ack.parse("sometimes")
    assert refused.value.code == ErrorCode.INVALID_REQUIRED_ACKS


def test_reads_leave_out_markers_and_aborted_records(agent: AgentThread) -> None:
    topic = new_topic(agent, partitions=1)
    producer = Producer(
        {"bootstrap.servers": agent.bootstrap, "transactional.id": f"t-{uuid.uuid4().hex[:6]}"}
    )
    producer.init_transactions(CLIENT_TIMEOUT_S)
    for outcome, values in (("commit", [b"a", b"b"]), ("abort", [b"c"]), ("commit", [b"d"])):
        producer.begin_transaction()
        for value in values:
            producer.produce(topic, value)
        producer.flush(CLIENT_TIMEOUT_S)
        if outcome == "commit":
            producer.commit_transaction(CLIENT_TIMEOUT_S)
        else:
            producer.abort_transaction(CLIENT_TIMEOUT_S)
    tp = Tp(topic, 0)
    for _ in range(100):  # the markers are written after EndTxn is answered
        if call(agent, engine(agent).fetch.offsets(tp)).last_stable_offset == 7:  # 4 + 3 markers
            break
        time.sleep(0.05)
    committed = read_to_end(agent, tp, read_committed=True)
    assert [(r.offset, r.value) for r in committed] == [(0, b"a"), (1, b"b"), (5, b"d")]
    everything = read_to_end(agent, tp, read_committed=False)
    assert [r.value for r in everything] == [b"a", b"b", b"c", b"d"]
    # a(0) b(1) COMMIT(2) c(3) ABORT(4) d(5) COMMIT(6)
    assert [r.offset for r in everything] == [0, 1, 3, 5]
    later = call(agent, engine(agent).fetch.read(tp, 1, 1 << 20))
    assert later.records[0].offset == 1  # not the batch's first record, 0
