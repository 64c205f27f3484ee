"""The REST proxy's v3 API against a real agent: cluster, brokers, topics (create, configs,
delete, confirmed by confluent-kafka's AdminClient), partitions."""

from __future__ import annotations

import base64
import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from tests.unit.rest_world import (
    call,
    call_streaming,
    concatenated_json,
    read_back,
    rest_port,
    start_rest_agent,
)
from tests.unit.sasl_world import AgentThread

CLIENT_TIMEOUT_S = 20
CLUSTER = "/v3/clusters/streamhouse-default"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    directory: Path = tmp_path_factory.mktemp("rest-v3")
    running = start_rest_agent(directory / "data")
    yield running
    running.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_cluster_and_brokers(agent: AgentThread) -> None:
    port = rest_port(agent)
    clusters = call(port, "GET", "/v3/clusters")
    assert clusters.status == 200, clusters.raw
    assert [c["cluster_id"] for c in clusters.json["data"]] == ["streamhouse-default"]
    brokers = call(port, "GET", CLUSTER + "/brokers/")  # a trailing slash is the same route
    assert brokers.status == 200
    (broker,) = brokers.json["data"]
    assert broker["port"] == agent.port
    assert call(port, "GET", "/v3/clusters/other").status == 404
    assert call(port, "GET", "/docs").status == 200
    described = call(port, "GET", "/openapi.json").json
    assert "ack=none|leader|durable" in described["info"]["description"]
    assert "/topics/{topic}" in described["paths"]


def test_topic_create_configs_delete_round_trip(agent: AgentThread) -> None:
    port = rest_port(agent)
    name = unique("v3-topic")
    created = call(
        port,
        "POST",
        CLUSTER + "/topics",
        {
            "topic_name": name,
            "partitions_count": 3,
            "configs": [{"name": "retention.ms", "value": "60000"}],
        },
    )
    assert created.status == 201, created.raw
    assert created.json["partitions_count"] == 3
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    listed = admin.list_topics(timeout=CLIENT_TIMEOUT_S)
    assert len(listed.topics[name].partitions) == 3

    altered = call(
        port,
        "POST",
        CLUSTER + f"/topics/{name}/configs:alter",
        {"data": [{"name": "cleanup.policy", "value": "compact"}]},
    )
    assert altered.status == 204, altered.raw
    assert (
        call(
            port, "PUT", CLUSTER + f"/topics/{name}/configs/retention.ms", {"value": "120000"}
        ).status
        == 204
    )
    resource = ConfigResource("topic", name)
    configs = admin.describe_configs([resource])[resource].result(CLIENT_TIMEOUT_S)
    assert configs["cleanup.policy"].value == "compact"
    assert configs["retention.ms"].value == "120000"
    one = call(port, "GET", CLUSTER + f"/topics/{name}/configs/cleanup.policy")
    assert one.json["value"] == "compact" and one.json["is_default"] is False
    listed_configs = call(port, "GET", CLUSTER + f"/topics/{name}/configs")
    assert "retention.ms" in {c["name"] for c in listed_configs.json["data"]}

    partitions = call(port, "GET", CLUSTER + f"/topics/{name}/partitions")
    assert [p["partition_id"] for p in partitions.json["data"]] == [0, 1, 2]
    assert call(port, "GET", CLUSTER + f"/topics/{name}/partitions/7").status == 404

    assert call(port, "DELETE", CLUSTER + f"/topics/{name}").status == 204
    assert name not in admin.list_topics(timeout=CLIENT_TIMEOUT_S).topics
    missing = call(port, "GET", CLUSTER + f"/topics/{name}")
    assert missing.status == 404 and missing.json["error_code"] == 404


def test_create_refusals_are_4xx(agent: AgentThread) -> None:
    port = rest_port(agent)
    name = unique("dup")
    assert call(port, "POST", CLUSTER + "/topics", {"topic_name": name}).status == 201
    again = call(port, "POST", CLUSTER + "/topics", {"topic_name": name})
    assert again.status == 400, again.raw
    bad = call(port, "POST", CLUSTER + "/topics", b"{not json")
    assert bad.status == 400 and "message" in bad.json
    assert call(port, "POST", CLUSTER + "/topics", {"topic_name": "bad name!"}).status == 400


def create(agent: AgentThread, partitions: int = 1) -> str:
    name = unique("records")
    answer = call(
        rest_port(agent),
        "POST",
        CLUSTER + "/topics",
        {"topic_name": name, "partitions_count": partitions},
    )
    assert answer.status == 201, answer.raw
    return name


def test_one_record_and_its_delivery_report(agent: AgentThread) -> None:
    port = rest_port(agent)
    topic = create(agent, partitions=2)
    record = {
        "partition_id": 1,
        "key": {"type": "STRING", "data": "user-1"},
        "value": {"type": "BINARY", "data": base64.b64encode(b"\x00\x01payload").decode()},
        "headers": [{"name": "trace", "value": base64.b64encode(b"t1").decode()}],
        "timestamp": "2026-01-02T03:04:05.678Z",
    }
    answer = call(port, "POST", CLUSTER + f"/topics/{topic}/records?ack=leader", record)
    assert answer.status == 200, answer.raw
    report = answer.json
    assert report["error_code"] == 200
    assert (report["topic_name"], report["partition_id"], report["offset"]) == (topic, 1, 0)
    assert report["key"] == {"type": "STRING", "size": 6}
    assert report["value"] == {"type": "BINARY", "size": 9}
    assert report["timestamp"] == "2026-01-02T03:04:05.678Z"
    (message,) = read_back(agent.bootstrap, topic, 1, 1)
    assert (message.key(), message.value()) == (b"user-1", b"\x00\x01payload")
    assert message.headers() == [("trace", b"t1")]
    assert message.timestamp()[1] == 1767323045678
    missing = call(port, "POST", CLUSTER + "/topics/no-such/records", record)
    assert missing.status == 404 and missing.json["error_code"] == 404


def test_streamed_records_get_one_report_each_in_order(agent: AgentThread) -> None:
    port = rest_port(agent)
    topic = create(agent)
    records = [{"value": {"type": "JSON", "data": {"n": index}}} for index in range(20)]
    text = "".join(json.dumps(record) for record in records).encode()
    chunks = [text[start : start + 37] for start in range(0, len(text), 37)]  # records split
    chunks.append(b'{"value": {"type": "BINARY", "data": "not base64!"}}')
    answer = call_streaming(port, CLUSTER + f"/topics/{topic}/records", chunks)
    assert answer.status == 200, answer.raw
    reports = concatenated_json(answer.raw)
    assert len(reports) == 21
    assert [r["offset"] for r in reports[:20]] == list(range(20))
    assert {r["error_code"] for r in reports[:20]} == {200}
    assert reports[20]["error_code"] == 42202
    found = read_back(agent.bootstrap, topic, 0, 20)
    assert [json.loads(m.value()) for m in found] == [{"n": index} for index in range(20)]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_a_stream_keeps_reading_records_sent_after_its_first_report(agent: AgentThread) -> None:
    """The client waits for the first delivery report before it sends the second record: the
    answer has started by then, and the second record must still be read (not taken by a
    listener for the client going away)."""
    port = rest_port(agent)
    topic = create(agent)
    first, second = (
        json.dumps({"value": {"type": "JSON", "data": {"n": n}}}).encode() for n in (1, 2)
    )
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT_S) as connection:
        head = (
            f"POST {CLUSTER}/topics/{topic}/records HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        connection.sendall(head.encode() + _chunk(first))
        received = b""
        while b'"offset"' not in received:
            data = connection.recv(65536)
            assert data, f"closed before the first report: {received!r}"
            received += data
        connection.sendall(_chunk(second) + b"0\r\n\r\n")
        while not received.endswith(b"0\r\n\r\n"):
            data = connection.recv(65536)
            assert data, f"closed before the answer ended: {received!r}"
            received += data
    assert received.count(b'"error_code":200') + received.count(b'"error_code": 200') == 2


def test_group_lag_after_a_kafka_consumer_commits(agent: AgentThread) -> None:
    port = rest_port(agent)
    topic = create(agent, partitions=2)
    group = unique("lagging")
    producer = Producer({"bootstrap.servers": agent.bootstrap})
    for index in range(10):
        producer.produce(topic, value=b"%d" % index, partition=index % 2)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0
    consumer = Consumer({"bootstrap.servers": agent.bootstrap, "group.id": group})
    try:
        committed = [TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 1)]
        consumer.commit(offsets=committed, asynchronous=False)
    finally:
        consumer.close()
    groups = call(port, "GET", CLUSTER + "/consumer-groups")
    assert group in {g["consumer_group_id"] for g in groups.json["data"]}
    assert call(port, "GET", CLUSTER + f"/consumer-groups/{group}").status == 200
    lags = call(port, "GET", CLUSTER + f"/consumer-groups/{group}/lags")
    assert lags.status == 200, lags.raw
    found = {
        (lag["partition_id"], lag["current_offset"], lag["log_end_offset"], lag["lag"])
        for lag in lags.json["data"]
    }
    assert found == {(0, 4, 5, 1), (1, 1, 5, 4)}
    summary = call(port, "GET", CLUSTER + f"/consumer-groups/{group}/lag-summary").json
    assert (summary["total_lag"], summary["max_lag"], summary["max_lag_partition_id"]) == (5, 4, 1)
    one = call(port, "GET", CLUSTER + f"/consumer-groups/{group}/lags/{topic}/partitions/0")
    assert one.json["lag"] == 1
    assert call(port, "GET", CLUSTER + "/consumer-groups/no-such-group").status == 404
