"""gRPC Consume as a member of a consumer group, beside a confluent-kafka consumer of the same
group on a real agent: the two split a 2-partition topic and together read every record once;
Commit naming the stream's member commits with its generation and confluent's committed() sees
it; the member leaves when the stream ends and the Kafka consumer takes both partitions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import grpc
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaPartition

from streamhouse.server.grpc import streamhouse_pb2 as pb
from streamhouse.server.grpc import streamhouse_pb2_grpc as rpc
from tests.unit.grpc_world import GrpcAgentThread, channel, run, start_agent

POLL_S = 0.25
ROUNDS_MAX = 80
CLIENT_TIMEOUT_S = 20
RECORDS = 20


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcAgentThread]:
    started = start_agent(tmp_path_factory.mktemp("grpc-group"))
    yield started
    assert started.agent is not None and started.agent.failure.error is None
    started.stop()


def produce(world: GrpcAgentThread, topic: str, sent: set[tuple[int, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": world.bootstrap})
    for partition, value in sorted(sent):
        producer.produce(topic, value=value, partition=partition)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0


@pytest.mark.slow  # in make test-all: make test stays under 3 minutes
def test_a_grpc_member_and_a_kafka_consumer_split_a_topic_and_commit(
    world: GrpcAgentThread,
) -> None:
    topic, group = f"gg-{uuid.uuid4().hex[:8]}", f"group-{uuid.uuid4().hex[:8]}"
    sent = {(index % 2, b"value-%d" % index) for index in range(RECORDS)}
    kafka = Consumer(
        {
            "bootstrap.servers": world.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )

    async def scenario() -> None:
        async with channel(world) as ch:
            records = rpc.RecordsStub(ch)
            await rpc.AdminStub(ch).CreateTopic(pb.CreateTopicRequest(name=topic, partitions=2))
            request = pb.ConsumeRequest(topic=topic, group=group, position=pb.START_EARLIEST)
            stream = records.Consume(request)
            first = await stream.read()
            assert isinstance(first, pb.ConsumeResponse) and not first.records
            member = first.member
            assert member

            kafka.subscribe([topic])
            for _ in range(ROUNDS_MAX):  # the gRPC member rejoins on its own; Kafka polls
                await asyncio.to_thread(kafka.poll, POLL_S)
                if len(kafka.assignment()) == 1:
                    break
            kafka_partitions = {tp.partition for tp in kafka.assignment()}
            assert len(kafka_partitions) == 1

            await asyncio.to_thread(produce, world, topic, sent)
            read_grpc: list[pb.ConsumedRecord] = []

            async def drain() -> None:  # read() as above: a call takes one reading style
                while isinstance(message := await stream.read(), pb.ConsumeResponse):
                    read_grpc.extend(message.records)

            draining = asyncio.create_task(drain())
            read_kafka: list[tuple[int | None, bytes | None]] = []
            for _ in range(ROUNDS_MAX):
                if len(read_grpc) + len(read_kafka) >= RECORDS:
                    break
                message = await asyncio.to_thread(kafka.poll, POLL_S)
                if message is not None and message.error() is None:
                    read_kafka.append((message.partition(), message.value()))
            grpc_rows = {(r.partition, r.value) for r in read_grpc}
            assert len(read_grpc) + len(read_kafka) == RECORDS
            assert grpc_rows | set(read_kafka) == sent
            grpc_partitions = {r.partition for r in read_grpc}
            assert len(grpc_partitions) == 1 and not grpc_partitions & kafka_partitions

            (partition,) = grpc_partitions
            end = max(r.offset for r in read_grpc) + 1
            offsets = [pb.PartitionOffset(topic=topic, partition=partition, offset=end)]
            answer = await records.Commit(
                pb.CommitRequest(group=group, member=member, offsets=offsets)
            )
            assert [(r.partition, r.HasField("error")) for r in answer.results] == [
                (partition, False)
            ]
            found = await asyncio.to_thread(
                kafka.committed, [KafkaPartition(topic, partition)], CLIENT_TIMEOUT_S
            )
            assert [tp.offset for tp in found] == [end]
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await records.Commit(
                    pb.CommitRequest(group=group, member="no-such-member", offsets=offsets)
                )
            assert refused.value.code() is grpc.StatusCode.NOT_FOUND

            stream.cancel()  # the member leaves: the Kafka consumer takes both partitions
            await asyncio.gather(draining, return_exceptions=True)
            for _ in range(ROUNDS_MAX):
                await asyncio.to_thread(kafka.poll, POLL_S)
                if len(kafka.assignment()) == 2:
                    break
            assert len(kafka.assignment()) == 2

    try:
        run(scenario)
    finally:
        kafka.close()
