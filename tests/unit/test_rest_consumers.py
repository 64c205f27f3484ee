"""The REST proxy's v2 consumer instances against a real agent, beside confluent-kafka clients on
its Kafka door: a REST instance and a Kafka consumer in one group split a topic's partitions
and together read every record once; committed offsets are shared both ways; seeks and
positions; records byte-exact (binary) and parsed (json); refusals in Confluent's codes (40403
for a deleted or expired instance on every route, 40902, 40903, 42204, 40601)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.unit.rest_world import (
    V2_BINARY,
    V2_EMBEDDED_JSON,
    V2_JSON,
    Answer,
    call,
    rest_port,
    start_rest_agent,
)
from tests.unit.sasl_world import AgentThread

CLIENT_TIMEOUT_S = 20
ROUNDS_MAX = 80  # of polls in the bounded loops below
POLL_S = 0.25
READ_TIMEOUT_MS = 250


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    directory: Path = tmp_path_factory.mktemp("rest-consumers")
    running = start_rest_agent(directory / "data")
    yield running
    running.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_topic(agent: AgentThread, partitions: int) -> str:
    name = unique("rc")
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    admin.create_topics([NewTopic(name, partitions)])[name].result(CLIENT_TIMEOUT_S)
    return name


def produce(
    agent: AgentThread, topic: str, records: Sequence[tuple[int, bytes | None, bytes]]
) -> None:
    producer = Producer({"bootstrap.servers": agent.bootstrap})
    for partition, key, value in records:
        producer.produce(topic, value=value, key=key, partition=partition)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0


def kafka_consumer(agent: AgentThread, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": agent.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )


class Instance:
    """One REST consumer instance, by its base path."""

    def __init__(self, port: int, group: str, name: str) -> None:
        self.port = port
        self.base = f"/consumers/{group}/instances/{name}"

    def post(self, path: str, body: Any = None) -> Answer:
        return call(self.port, "POST", self.base + path, body, V2_JSON)

    def get(self, path: str, body: Any = None) -> Answer:
        return call(self.port, "GET", self.base + path, body, V2_JSON)

    def records(self, accept: str = V2_BINARY, timeout_ms: int = READ_TIMEOUT_MS) -> list[Any]:
        answer = call(
            self.port,
            "GET",
            f"{self.base}/records?timeout={timeout_ms}",
            headers={"Accept": accept},
        )
        assert answer.status == 200, answer.raw
        assert answer.headers["content-type"].startswith(accept)
        found: list[Any] = answer.json
        return found

    def delete(self) -> Answer:
        return call(self.port, "DELETE", self.base)


def create(port: int, group: str, **config: Any) -> Instance:
    body = {"name": unique("inst"), "auto.offset.reset": "earliest", **config}
    answer = call(port, "POST", f"/consumers/{group}", body, V2_JSON)
    assert answer.status == 200, answer.raw
    assert answer.json["instance_id"] == body["name"]
    assert answer.json["base_uri"] == (
        f"http://127.0.0.1:{port}/consumers/{group}/instances/{body['name']}"
    )
    return Instance(port, group, body["name"])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.slow  # in make test-all: make test stays under 3 minutes
def test_rest_instance_and_kafka_consumer_split_partitions_and_read_each_record_once(
    agent: AgentThread,
) -> None:
    port = rest_port(agent)
    topic = new_topic(agent, 2)
    group = unique("split")
    rest = create(port, group, **{"auto.commit.enable": "false"})
    assert rest.post("/subscription", {"topics": [topic]}).status == 204
    assert rest.get("/subscription").json == {"topics": [topic]}
    kafka = kafka_consumer(agent, group)
    kafka.subscribe([topic])
    try:
        rest_partitions: list[int] = []
        for _ in range(ROUNDS_MAX):  # both members of one generation, a partition each
            kafka.poll(POLL_S)
            rest.records(timeout_ms=0)  # a read is also where the instance notices its share
            rest_partitions = [p["partition"] for p in rest.get("/assignments").json["partitions"]]
            if len(rest_partitions) == 1 and len(kafka.assignment()) == 1:
                break
        kafka_partitions = [tp.partition for tp in kafka.assignment()]
        assert len(rest_partitions) == 1 and len(kafka_partitions) == 1
        assert sorted(rest_partitions + kafka_partitions) == [0, 1]

        sent = {(index % 2, b"value-%d" % index) for index in range(20)}
        produce(agent, topic, [(partition, None, value) for partition, value in sorted(sent)])
        read_rest: list[tuple[int | None, bytes | None]] = []
        read_kafka: list[tuple[int | None, bytes | None]] = []
        for _ in range(ROUNDS_MAX):
            if len(read_rest) + len(read_kafka) >= len(sent):
                break
            message = kafka.poll(POLL_S)
            if message is not None and message.error() is None:
                read_kafka.append((message.partition(), message.value()))
            for record in rest.records():
                read_rest.append((record["partition"], base64.b64decode(record["value"])))
        assert len(read_rest) + len(read_kafka) == len(sent)
        assert set(read_rest) | set(read_kafka) == sent
        assert {p for p, _ in read_rest} == set(rest_partitions)
        assert {p for p, _ in read_kafka} == set(kafka_partitions)
    finally:
        kafka.close()
        rest.delete()


def test_committed_offsets_are_shared_with_kafka_consumers_both_ways(agent: AgentThread) -> None:
    port = rest_port(agent)
    topic = new_topic(agent, 1)
    group = unique("commits")
    produce(agent, topic, [(0, None, b"r%d" % index) for index in range(10)])
    partition = {"topic": topic, "partition": 0}

    rest = create(port, group, **{"auto.commit.enable": "false"})
    assert rest.post("/assignments", {"partitions": [partition]}).status == 204
    assert rest.get("/assignments").json == {"partitions": [partition]}
    assert rest.post("/offsets", {"offsets": [{**partition, "offset": 4}]}).status == 204
    committed = rest.get("/offsets", {"partitions": [partition]}).json
    assert committed == {"offsets": [{**partition, "offset": 4, "metadata": ""}]}
    assert rest.delete().status == 204

    kafka = kafka_consumer(agent, group)
    try:  # a fresh Kafka consumer of the group starts where the REST instance committed
        kafka.assign([KafkaPartition(topic, 0)])
        first = None
        for _ in range(ROUNDS_MAX):
            first = kafka.poll(POLL_S)
            if first is not None and first.error() is None:
                break
        assert first is not None and (first.offset(), first.value()) == (4, b"r4")
        kafka.commit(offsets=[KafkaPartition(topic, 0, 7)], asynchronous=False)
    finally:
        kafka.close()

    rest = create(port, group)  # auto commit on: it commits what it read when deleted
    assert rest.post("/subscription", {"topics": [topic]}).status == 204
    read: list[Any] = []
    for _ in range(ROUNDS_MAX):
        read += rest.records()
        if len(read) >= 3:
            break
    assert [(r["offset"], base64.b64decode(r["value"])) for r in read] == [
        (7, b"r7"),
        (8, b"r8"),
        (9, b"r9"),
    ]
    assert rest.delete().status == 204
    checker = kafka_consumer(agent, group)
    try:
        found = checker.committed([KafkaPartition(topic, 0)], timeout=CLIENT_TIMEOUT_S)
        assert [tp.offset for tp in found] == [10]
    finally:
        checker.close()


def test_seeks_positions_and_records_byte_exact(agent: AgentThread) -> None:
    port = rest_port(agent)
    topic = new_topic(agent, 1)
    sent = [(0, b"k\x00%d" % index, bytes([index, 0, 255]) * (index + 1)) for index in range(5)]
    produce(agent, topic, sent)
    expected = [
        {"topic": topic, "key": b64(key or b""), "value": b64(value), "partition": 0, "offset": at}
        for at, (_, key, value) in enumerate(sent)
    ]
    partition = {"topic": topic, "partition": 0}
    rest = create(port, unique("seeks"), **{"auto.offset.reset": "latest"})
    try:
        assert rest.post("/assignments", {"partitions": [partition]}).status == 204
        assert rest.records() == []  # latest: after the five
        assert rest.post("/positions/beginning", {"partitions": [partition]}).status == 204
        assert rest.records() == expected
        assert rest.post("/positions", {"offsets": [{**partition, "offset": 2}]}).status == 204
        assert rest.records() == expected[2:]
        assert rest.post("/positions/end", {"partitions": [partition]}).status == 204
        assert rest.records() == []
        unassigned = {"topic": topic, "partition": 1}
        refused = rest.post("/positions/beginning", {"partitions": [unassigned]})
        assert (refused.status, refused.json["error_code"]) == (409, 40903)
    finally:
        rest.delete()


def test_json_records_and_a_format_accept_mismatch(agent: AgentThread) -> None:
    port = rest_port(agent)
    topic = new_topic(agent, 1)
    values = [{"n": 1, "s": "ä"}, [1, 2], "text", None]
    produce(agent, topic, [(0, b'"k"', json.dumps(value).encode()) for value in values])
    rest = create(port, unique("json"), format="json")
    try:
        assert rest.post("/subscription", {"topics": [topic]}).status == 204
        read: list[Any] = []
        for _ in range(ROUNDS_MAX):
            read += rest.records(V2_EMBEDDED_JSON)
            if len(read) >= len(values):
                break
        assert [(r["key"], r["value"], r["offset"]) for r in read] == [
            ("k", value, at) for at, value in enumerate(values)
        ]
        mismatch = call(port, "GET", rest.base + "/records", headers={"Accept": V2_BINARY})
        assert mismatch.status == 406
        assert mismatch.json["error_code"] == 40601
    finally:
        rest.delete()


def gone_everywhere(rest: Instance, topic: str) -> None:
    partition = {"topic": topic, "partition": 0}
    answers = [
        rest.post("/subscription", {"topics": [topic]}),
        rest.get("/subscription"),
        call(rest.port, "DELETE", rest.base + "/subscription"),
        rest.post("/assignments", {"partitions": [partition]}),
        rest.get("/assignments"),
        rest.post("/positions", {"offsets": [{**partition, "offset": 0}]}),
        rest.post("/positions/beginning", {"partitions": [partition]}),
        rest.post("/positions/end", {"partitions": [partition]}),
        call(rest.port, "GET", rest.base + "/records", headers={"Accept": V2_BINARY}),
        rest.post("/offsets"),
        rest.get("/offsets", {"partitions": [partition]}),
        rest.delete(),
    ]
    for answer in answers:
        assert answer.status == 404, answer.raw
        assert answer.json == {"error_code": 40403, "message": "Consumer instance not found."}


def test_deleted_and_expired_instances_are_40403_on_every_route(agent: AgentThread) -> None:
    port = rest_port(agent)
    topic = new_topic(agent, 1)
    deleted = create(port, unique("gone"))
    assert deleted.post("/subscription", {"topics": [topic]}).status == 204
    assert deleted.delete().status == 204
    gone_everywhere(deleted, topic)

    expired = create(port, unique("idle"))
    assert agent.agent is not None and agent._loop is not None
    consumers = agent.agent.consumers

    async def expire() -> int:  # the agent's own sweep, with an idle bound the test can wait out
        idle_ms = consumers.instance_idle_ms
        consumers.instance_idle_ms = 1
        try:
            await asyncio.sleep(0.01)
            return await consumers.sweep()
        finally:
            consumers.instance_idle_ms = idle_ms

    swept = asyncio.run_coroutine_threadsafe(expire(), agent._loop).result(CLIENT_TIMEOUT_S)
    assert swept >= 1
    gone_everywhere(expired, topic)


def test_refusals_in_confluent_codes(agent: AgentThread) -> None:
    port = rest_port(agent)
    group = unique("refusals")
    rest = create(port, group)
    try:
        again = call(port, "POST", f"/consumers/{group}", {"name": rest.base.split("/")[-1]})
        assert (again.status, again.json["error_code"]) == (409, 40902)
        for body in ({"auto.offset.reset": "sometimes"}, {"format": "string"}, {"format": "xml"}):
            bad = call(port, "POST", f"/consumers/{group}", body, V2_JSON)
            assert (bad.status, bad.json["error_code"]) == (422, 42204), body
        pattern = rest.post("/subscription", {"topic_pattern": "rc-.*"})
        assert (pattern.status, pattern.json["error_code"]) == (409, 40903)
        topic = new_topic(agent, 1)
        assert rest.post("/subscription", {"topics": [topic]}).status == 204
        both = rest.post("/assignments", {"partitions": [{"topic": topic, "partition": 0}]})
        assert (both.status, both.json["error_code"]) == (409, 40903)
        missing = rest.get("/offsets", {"partitions": [{"topic": unique("none"), "partition": 0}]})
        assert missing.status == 200 and missing.json == {"offsets": []}
    finally:
        rest.delete()
