"""Phase 16: Kafka, REST and gRPC serve the same data. Records produced through each door (a
Kafka client, REST v2, REST v3's records endpoint, gRPC unary and streaming) are read back
byte-exact, with the offsets their producer was told, through the others; a REST consumer
instance and a Kafka consumer share one group's partitions and committed offsets; an Avro
value produced over REST with an inline schema is read by confluent-kafka's AvroDeserializer
from the agent's own registry. Against a real agent process on free loopback ports."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from streamhouse.server.grpc import streamhouse_pb2 as pb
from streamhouse.server.grpc import streamhouse_pb2_grpc as rpc
from tests.e2e.conftest import Agent, start_agent
from tests.unit.rest_world import V2_BINARY, V2_JSON, Answer, call, concatenated_json

V2_AVRO = "application/vnd.kafka.avro.v2+json"

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
    data_dir = tmp_path_factory.mktemp("phase16") / "data"
    with start_agent(data_dir, "--group-initial-rebalance-delay-ms", "300") as running:
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


def read_kafka(agent: Agent, topic: str, count: int, partitions: int = 1) -> list[Row]:
    """The first `count` records of the topic's first `partitions` partitions, as a Kafka
    consumer reads them from offset 0."""
    consumer = Consumer(
        {
            "bootstrap.servers": agent.bootstrap,
            "group.id": "phase16-reader",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([KafkaPartition(topic, p, 0) for p in range(partitions)])
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


# --- a REST consumer instance and a Kafka consumer in one group -------------------------------


class RestMember:
    """A REST v2 consumer instance of a group, by its path on the agent's REST door."""

    def __init__(self, agent: Agent, group: str, **config: Any) -> None:
        self.port = agent.rest_port
        name = f"rest-{uuid.uuid4().hex[:6]}"
        body = {"name": name, "auto.offset.reset": "earliest", **config}
        created = call(self.port, "POST", f"/consumers/{group}", body, V2_JSON)
        assert created.status == 200, created.raw
        self.path = f"/consumers/{group}/instances/{name}"

    def send(self, method: str, path: str, body: Any = None) -> Answer:
        return call(self.port, method, self.path + path, body, V2_JSON)

    def assigned(self) -> set[int]:
        answer = self.send("GET", "/assignments")
        assert answer.status == 200, answer.raw
        return {p["partition"] for p in answer.json["partitions"]}

    def records(self, accept: str = V2_BINARY) -> list[Any]:
        path = f"{self.path}/records?timeout=200"
        answer = call(self.port, "GET", path, headers={"Accept": accept})
        assert answer.status == 200, answer.raw
        return list(answer.json)


def test_a_rest_instance_and_a_kafka_consumer_share_a_group(agent: Agent) -> None:
    topic = create_topic(agent, partitions=2)
    group = f"shared-{uuid.uuid4().hex[:6]}"
    rest = RestMember(agent, group, **{"auto.commit.enable": "false"})
    assert rest.send("POST", "/subscription", {"topics": [topic]}).status == 204
    kafka = Consumer(
        {
            "bootstrap.servers": agent.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    kafka.subscribe([topic])
    try:
        for _ in range(POLLS_MAX):  # until each member holds one of the two partitions
            kafka.poll(POLL_S)
            mine = {tp.partition for tp in kafka.assignment()}
            if len(mine) == 1 and rest.assigned() == {0, 1} - mine:
                break
        else:
            raise AssertionError(f"no split: kafka {kafka.assignment()}, rest {rest.assigned()}")
        produced = produce_keyed(agent, topic, 20)
        read: dict[tuple[int, int], bytes] = {}
        for _ in range(POLLS_MAX):
            if len(read) >= len(produced):
                break
            message = kafka.poll(POLL_S)
            if message is not None and message.error() is None:
                read[(message.partition(), message.offset())] = message.value()
            for record in rest.records():
                where = (record["partition"], record["offset"])
                assert where not in read, f"{where} read by both members"
                read[where] = base64.b64decode(record["value"])
        assert read == produced
        kafka.commit(asynchronous=False)
        assert rest.send("POST", "/offsets").status == 204  # everything it consumed
    finally:
        kafka.close()
        rest.send("DELETE", "")
    fresh = Consumer({"bootstrap.servers": agent.bootstrap, "group.id": group})
    try:
        committed = fresh.committed([KafkaPartition(topic, p) for p in (0, 1)], TIMEOUT_S)
    finally:
        fresh.close()
    ends = {p: 1 + max(o for q, o in produced if q == p) for p in (0, 1)}
    assert {tp.partition: tp.offset for tp in committed} == ends


def produce_keyed(agent: Agent, topic: str, count: int) -> dict[tuple[int, int], bytes]:
    """`count` records over the topic's partitions by key; where each landed and its value."""
    producer = Producer({"bootstrap.servers": agent.bootstrap, "acks": "all"})
    landed: dict[tuple[int, int], bytes] = {}

    def delivered(error: Any, message: Any) -> None:
        assert error is None, error
        landed[(message.partition(), message.offset())] = message.value()

    for index in range(count):
        producer.produce(topic, f"v{index}".encode(), f"k{index}".encode(), on_delivery=delivered)
    assert producer.flush(TIMEOUT_S) == 0
    assert {p for p, _ in landed} == {0, 1}, "the keys did not spread over both partitions"
    return landed


# --- Avro through REST and the registry -----------------------------------------------------

USER_SCHEMA = {
    "type": "record",
    "name": "User",
    "fields": [
        {"name": "name", "type": "string"},
        {"name": "age", "type": ["null", "int"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
    ],
}
USERS = [
    {"name": "ada", "age": {"int": 36}, "tags": ["math"]},
    {"name": "grace", "age": None, "tags": []},
]
PLAIN_USERS = [
    {"name": "ada", "age": 36, "tags": ["math"]},
    {"name": "grace", "age": None, "tags": []},
]  # as a deserializer gives them: unions resolved


def test_avro_through_rest_is_read_by_confluents_deserializer(agent: Agent) -> None:
    topic = create_topic(agent)
    body = {"value_schema": json.dumps(USER_SCHEMA), "records": [{"value": u} for u in USERS]}
    answer = call(agent.rest_port, "POST", f"/topics/{topic}", body, V2_AVRO)
    assert answer.status == 200, answer.raw
    schema_id = answer.json["value_schema_id"]
    assert isinstance(schema_id, int)
    assert [o["offset"] for o in answer.json["offsets"]] == [0, 1]
    registry = SchemaRegistryClient({"url": agent.registry_url})
    assert registry.get_latest_version(f"{topic}-value").schema_id == schema_id
    deserialize = AvroDeserializer(registry)
    consumer = Consumer(
        {
            "bootstrap.servers": agent.bootstrap,
            "group.id": "avro-reader",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([KafkaPartition(topic, 0, 0)])
    values: list[Any] = []
    try:
        for _ in range(POLLS_MAX):
            if len(values) >= len(USERS):
                break
            message = consumer.poll(POLL_S)
            if message is not None and message.error() is None:
                where = SerializationContext(topic, MessageField.VALUE)
                values.append(deserialize(message.value(), where))
    finally:
        consumer.close()
    assert values == PLAIN_USERS
    rest = RestMember(agent, f"avro-{uuid.uuid4().hex[:6]}", format="avro")
    try:
        assert rest.send("POST", "/subscription", {"topics": [topic]}).status == 204
        read: list[Any] = []
        for _ in range(POLLS_MAX):
            if len(read) >= len(USERS):
                break
            read += rest.records("application/vnd.kafka.avro.v2+json")
    finally:
        rest.send("DELETE", "")
    assert [r["value"] for r in read] == USERS
