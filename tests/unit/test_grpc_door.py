"""The gRPC door against a real agent (served from a thread) over real grpc.aio channels:
produce over gRPC read back byte-exact by a Kafka client and the other way round, admin
calls, health and reflection, the error mapping, and an agent that keeps serving after bad
requests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaPartition
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from streamhouse.server.grpc import streamhouse_pb2 as pb
from streamhouse.server.grpc import streamhouse_pb2_grpc as rpc
from streamhouse.server.grpc_door import GRPC_MESSAGE_BYTES_MAX
from tests.unit.grpc_world import GrpcAgentThread, channel, run, start_agent

POLL_S = 0.5
POLLS_MAX = 60
TIMESTAMP_MS = 1_700_000_000_000
IDLE_MS = 300  # a test's Consume stream ends once it has read everything there is
Row = tuple[object, ...]  # a record as compared: partition, offset, timestamp, key, value, headers


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcAgentThread]:
    started = start_agent(tmp_path_factory.mktemp("grpc"))
    yield started
    stop = started.stop
    assert started.agent is not None and started.agent.failure.error is None
    stop()


def create(world: GrpcAgentThread, topic: str, partitions: int = 2) -> None:
    async def scenario() -> None:
        async with channel(world) as ch:
            await rpc.AdminStub(ch).CreateTopic(
                pb.CreateTopicRequest(name=topic, partitions=partitions)
            )

    run(scenario)


def kafka_read(world: GrpcAgentThread, topic: str, partitions: int, count: int) -> list[Row]:
    """`count` records of the topic as a Kafka consumer sees them, by partition and offset."""
    consumer = Consumer(
        {"bootstrap.servers": world.bootstrap, "group.id": "reader", "enable.auto.commit": False}
    )
    consumer.assign([KafkaPartition(topic, p, 0) for p in range(partitions)])
    seen: list[Row] = []
    try:
        for _ in range(POLLS_MAX):
            if len(seen) >= count:
                break
            message = consumer.poll(POLL_S)
            if message is None or message.error():
                continue
            seen.append(
                (
                    message.partition(),
                    message.offset(),
                    message.timestamp()[1],
                    message.key(),
                    message.value(),
                    tuple(message.headers() or ()),
                )
            )
    finally:
        consumer.close()
    return sorted(seen)


RECORDS = [
    pb.Record(
        key=b"k\x00\xff",
        value=b"v" * 1000,
        headers=[pb.Header(key="h", value=b"\x00\x01"), pb.Header(key="null")],
        partition=0,
        timestamp_ms=TIMESTAMP_MS,
    ),
    pb.Record(value=b"", partition=1, timestamp_ms=TIMESTAMP_MS + 1),  # null key, empty value
    pb.Record(key=b"tombstone", partition=1, timestamp_ms=TIMESTAMP_MS + 2),  # null value
]


def expected(results: list[tuple[int, int]]) -> list[Row]:
    """What a Kafka consumer must see of RECORDS placed at these (partition, offset)s."""
    rows = []
    for record, (partition, offset) in zip(RECORDS, results, strict=True):
        headers = tuple((h.key, h.value if h.HasField("value") else None) for h in record.headers)
        key = record.key if record.HasField("key") else None
        value = record.value if record.HasField("value") else None
        rows.append((partition, offset, record.timestamp_ms, key, value, headers))
    return sorted(rows)


@pytest.mark.parametrize(
    "ack", [pb.ACK_UNSPECIFIED, pb.ACK_NONE, pb.ACK_LEADER, pb.ACK_DURABLE], ids=pb.Ack.Name
)
def test_unary_produce_is_read_back_exactly_by_a_kafka_consumer(
    world: GrpcAgentThread, ack: pb.Ack.ValueType
) -> None:
    topic = f"unary-{pb.Ack.Name(ack).lower().replace('_', '-')}"
    create(world, topic)

    async def scenario() -> pb.ProduceResponse:
        async with channel(world) as ch:
            request = pb.ProduceRequest(topic=topic, records=RECORDS, ack=ack)
            return await rpc.RecordsStub(ch).Produce(request)

    answer = run(scenario)
    assert answer.topic == topic
    assert [r.HasField("error") for r in answer.results] == [False] * len(RECORDS)
    placed = [(r.partition, r.offset) for r in answer.results]
    assert placed == [(0, 0), (1, 0), (1, 1)]
    assert kafka_read(world, topic, 2, len(RECORDS)) == expected(placed)


def test_a_produce_stream_answers_every_record_once_the_client_half_closes(
    world: GrpcAgentThread,
) -> None:
    create(world, "streamed")

    async def scenario() -> pb.ProduceStreamResponse:
        async with channel(world) as ch:
            requests = [
                pb.ProduceRequest(topic="streamed", records=RECORDS, ack=ack)
                for ack in (pb.ACK_LEADER, pb.ACK_DURABLE)
            ]
            return await rpc.RecordsStub(ch).ProduceStream(iter(requests))

    summary = run(scenario)
    assert (summary.records_produced, summary.records_refused) == (6, 0)
    first, second = ([(r.partition, r.offset) for r in s.results] for s in summary.responses)
    assert first == [(0, 0), (1, 0), (1, 1)]
    assert second == [(0, 1), (1, 2), (1, 3)]
    assert kafka_read(world, "streamed", 2, 6) == sorted(expected(first) + expected(second))


def test_records_a_kafka_producer_wrote_are_consumed_exactly_over_grpc(
    world: GrpcAgentThread,
) -> None:
    create(world, "from-kafka")
    producer = Producer({"bootstrap.servers": world.bootstrap, "acks": "all"})
    sent: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]] = [
        (0, b"a", b"1", [("h", b"x")]),
        (1, None, b"2", []),
        (0, b"c", None, [("n", None)]),
    ]
    for index, (partition, key, value, headers) in enumerate(sent):
        producer.produce(
            "from-kafka",
            value=value,
            key=key,
            partition=partition,
            headers=headers,
            timestamp=TIMESTAMP_MS + index,
        )
    assert producer.flush(30) == 0

    async def scenario() -> list[pb.ConsumedRecord]:
        async with channel(world) as ch:
            request = pb.ConsumeRequest(
                topic="from-kafka", position=pb.START_EARLIEST, max_idle_ms=IDLE_MS
            )
            return [r async for m in rpc.RecordsStub(ch).Consume(request) for r in m.records]

    consumed = run(scenario)
    seen = sorted(
        (
            r.partition,
            r.offset,
            r.timestamp_ms,
            r.key if r.HasField("key") else None,
            r.value if r.HasField("value") else None,
            [(h.key, h.value if h.HasField("value") else None) for h in r.headers],
        )
        for r in consumed
    )
    assert {r.topic for r in consumed} == {"from-kafka"}
    assert seen == [
        (0, 0, TIMESTAMP_MS, b"a", b"1", [("h", b"x")]),
        (0, 1, TIMESTAMP_MS + 2, b"c", None, [("n", None)]),
        (1, 0, TIMESTAMP_MS + 1, None, b"2", []),
    ]


def test_a_consume_stream_follows_records_produced_after_it_started(
    world: GrpcAgentThread,
) -> None:
    create(world, "followed", partitions=1)

    async def scenario() -> list[bytes]:
        async with channel(world) as ch:
            records = rpc.RecordsStub(ch)
            stream = records.Consume(pb.ConsumeRequest(topic="followed", offset=0))
            await records.Produce(
                pb.ProduceRequest(topic="followed", records=[pb.Record(value=b"later")])
            )
            message = await stream.read()
            stream.cancel()
            assert isinstance(message, pb.ConsumeResponse)
            return [r.value for r in message.records]

    assert run(scenario) == [b"later"]


def test_a_consume_stream_ends_at_its_deadline(world: GrpcAgentThread) -> None:
    create(world, "quiet", partitions=1)

    async def scenario() -> grpc.StatusCode:
        async with channel(world) as ch:
            stream = rpc.RecordsStub(ch).Consume(pb.ConsumeRequest(topic="quiet"), timeout=1)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in stream:
                    pass
            return refused.value.code()

    assert run(scenario) is grpc.StatusCode.DEADLINE_EXCEEDED


def test_commit_is_seen_by_kafka_clients_and_described_with_lag(world: GrpcAgentThread) -> None:
    create(world, "committed", partitions=1)

    async def scenario() -> tuple[pb.CommitResponse, pb.DescribeGroupResponse]:
        async with channel(world) as ch:
            records = rpc.RecordsStub(ch)
            values = [pb.Record(value=b"%d" % i) for i in range(5)]
            await records.Produce(pb.ProduceRequest(topic="committed", records=values))
            offsets = [pb.PartitionOffset(topic="committed", partition=0, offset=3, metadata="m")]
            committed = await records.Commit(pb.CommitRequest(group="grpc-group", offsets=offsets))
            described = await rpc.AdminStub(ch).DescribeGroup(
                pb.DescribeGroupRequest(group_id="grpc-group")
            )
            return committed, described

    committed, described = run(scenario)
    assert [(r.topic, r.partition, r.HasField("error")) for r in committed.results] == [
        ("committed", 0, False)
    ]
    assert described.state == "Empty"
    assert [
        (o.topic, o.offset, o.metadata, o.high_watermark, o.lag) for o in described.offsets
    ] == [("committed", 3, "m", 5, 2)]
    consumer = Consumer({"bootstrap.servers": world.bootstrap, "group.id": "grpc-group"})
    try:
        [position] = consumer.committed([KafkaPartition("committed", 0)], timeout=30)
    finally:
        consumer.close()
    assert position.offset == 3


def test_admin_creates_lists_describes_and_deletes_topics(world: GrpcAgentThread) -> None:
    async def scenario() -> None:
        async with channel(world) as ch:
            admin = rpc.AdminStub(ch)
            created = await admin.CreateTopic(
                pb.CreateTopicRequest(
                    name="administered", partitions=3, configs={"cleanup.policy": "compact"}
                )
            )
            assert (created.name, created.partitions) == ("administered", 3)
            listed = await admin.ListTopics(pb.ListTopicsRequest())
            assert ("administered", 3) in [(t.name, t.partitions) for t in listed.topics]
            described = await admin.DescribeTopic(pb.DescribeTopicRequest(name="administered"))
            assert [p.partition for p in described.partitions] == [0, 1, 2]
            assert described.configs["cleanup.policy"] == "compact"
            assert described.topic_id
            groups = await admin.ListGroups(pb.ListGroupsRequest())
            assert all(g.group_id for g in groups.groups)
            await admin.DeleteTopic(pb.DeleteTopicRequest(name="administered"))
            listed = await admin.ListTopics(pb.ListTopicsRequest())
            assert "administered" not in [t.name for t in listed.topics]

    run(scenario)


def test_health_says_serving_and_reflection_lists_the_services(world: GrpcAgentThread) -> None:
    async def scenario() -> tuple[list[int], list[str]]:
        async with channel(world) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            statuses = [
                (await health.Check(health_pb2.HealthCheckRequest(service=name))).status
                for name in ("", "streamhouse.v1.Records", "streamhouse.v1.Admin")
            ]
            reflect = reflection_pb2_grpc.ServerReflectionStub(ch)
            ask = reflection_pb2.ServerReflectionRequest(list_services="")
            answers = [a async for a in reflect.ServerReflectionInfo(iter([ask]))]
            names = [s.name for s in answers[0].list_services_response.service]
            return statuses, names

    statuses, names = run(scenario)
    assert statuses == [health_pb2.HealthCheckResponse.SERVING] * 3
    assert {"streamhouse.v1.Records", "streamhouse.v1.Admin", "grpc.health.v1.Health"} <= set(names)


async def _code_of(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_refusals_answer_their_status_and_the_agent_keeps_serving(
    world: GrpcAgentThread,
) -> None:
    create(world, "refusals", partitions=1)

    async def scenario() -> dict[str, grpc.StatusCode]:
        async with channel(world) as ch:
            records, admin = rpc.RecordsStub(ch), rpc.AdminStub(ch)
            raw: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = ch.unary_unary(
                "/streamhouse.v1.Records/Produce"
            )
            huge = b"x" * (GRPC_MESSAGE_BYTES_MAX + 1)
            codes = {
                "unknown topic": await _code_of(
                    records.Produce(pb.ProduceRequest(topic="nowhere", records=[pb.Record()]))
                ),
                "unknown partition": await _code_of(
                    records.Produce(
                        pb.ProduceRequest(topic="refusals", records=[pb.Record(partition=5)])
                    )
                ),
                "describe missing": await _code_of(
                    admin.DescribeTopic(pb.DescribeTopicRequest(name="nowhere"))
                ),
                "exists": await _code_of(
                    admin.CreateTopic(pb.CreateTopicRequest(name="refusals", partitions=1))
                ),
                "bad name": await _code_of(
                    admin.CreateTopic(pb.CreateTopicRequest(name="no spaces!", partitions=1))
                ),
                "empty name": await _code_of(admin.DeleteTopic(pb.DeleteTopicRequest(name=""))),
                "malformed": await _code_of(raw(b"\xff\xff\xff\xff")),
                "oversized": await _code_of(
                    raw(
                        pb.ProduceRequest(topic="refusals").SerializeToString()
                        + pb.Record(value=huge).SerializeToString()
                    )
                ),
                "unknown ack": await _code_of(
                    records.Produce(
                        pb.ProduceRequest(topic="refusals", records=[pb.Record()], ack=9)  # type: ignore[arg-type]
                    )
                ),
                "past the end": await _code_of(
                    _first(records.Consume(pb.ConsumeRequest(topic="refusals", offset=1000)))
                ),
                "group and partitions": await _code_of(
                    _first(
                        records.Consume(
                            pb.ConsumeRequest(topic="refusals", group="g", partitions=[0])
                        )
                    )
                ),
                "missing group": await _code_of(
                    admin.DescribeGroup(pb.DescribeGroupRequest(group_id="no-such-group"))
                ),
            }
            await admin.ListTopics(pb.ListTopicsRequest())  # still serving
            return codes

    S = grpc.StatusCode
    assert run(scenario) == {
        "unknown topic": S.NOT_FOUND,
        "unknown partition": S.NOT_FOUND,
        "describe missing": S.NOT_FOUND,
        "exists": S.ALREADY_EXISTS,
        "bad name": S.INVALID_ARGUMENT,
        "empty name": S.INVALID_ARGUMENT,
        "malformed": S.INVALID_ARGUMENT,
        "oversized": S.RESOURCE_EXHAUSTED,
        "unknown ack": S.INVALID_ARGUMENT,
        "past the end": S.OUT_OF_RANGE,
        "group and partitions": S.INVALID_ARGUMENT,
        "missing group": S.NOT_FOUND,
    }
    assert world.agent is not None and world.agent.failure.error is None


async def _first(stream: grpc.aio.UnaryStreamCall) -> None:  # type: ignore[type-arg]
    async for _ in stream:
        break
    stream.cancel()


def test_a_taken_port_is_refused(world: GrpcAgentThread, tmp_path: Path) -> None:
    assert world.door is not None
    with pytest.raises(Exception, match="cannot listen for gRPC"):
        start_agent(tmp_path, grpc_port=world.door.port)
