"""The REST proxy's v2 API against a real agent, with confluent-kafka on the Kafka door: records
produced over HTTP (binary and json, each ack mode) read back byte-exact at the offsets the
door reported; records produced by confluent-kafka seen in v2 metadata and offsets; refusals
in Confluent's shape (40401, 40402, 400, 413, 415); a fuzz of bodies never answered 5xx."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamhouse.server.rest_common import REQUEST_BYTES_MAX
from tests.unit.rest_world import (
    V2_BINARY,
    V2_EMBEDDED_JSON,
    call,
    read_back,
    rest_port,
    start_rest_agent,
)
from tests.unit.sasl_world import AgentThread

CLIENT_TIMEOUT_S = 20
FUZZ_EXAMPLES = 60


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    directory: Path = tmp_path_factory.mktemp("rest-v2")
    running = start_rest_agent(directory / "data")
    yield running
    running.stop()


def new_topic(agent: AgentThread, partitions: int = 1) -> str:
    name = f"rest-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    admin.create_topics([NewTopic(name, partitions)])[name].result(CLIENT_TIMEOUT_S)
    return name


@pytest.mark.parametrize("ack", ["none", "leader", "durable"])
def test_binary_records_read_back_byte_exact(agent: AgentThread, ack: str) -> None:
    port = rest_port(agent)
    topic = new_topic(agent)
    payloads = [bytes([index, 0, 255, index]) * (index + 1) for index in range(5)]
    body = {
        "records": [
            {
                "key": base64.b64encode(b"k%d" % index).decode(),
                "value": base64.b64encode(payload).decode(),
                "headers": [{"name": "h", "value": base64.b64encode(b"\x00hv").decode()}],
            }
            for index, payload in enumerate(payloads)
        ]
    }
    answer = call(port, "POST", f"/topics/{topic}?ack={ack}", body, V2_BINARY)
    assert answer.status == 200, answer.raw
    offsets = answer.json["offsets"]
    assert [o["error_code"] for o in offsets] == [None] * 5
    assert [o["offset"] for o in offsets] == [0, 1, 2, 3, 4]
    found = read_back(agent.bootstrap, topic, 0, 5)
    assert [m.value() for m in found] == payloads
    assert [m.key() for m in found] == [b"k%d" % index for index in range(5)]
    assert [m.offset() for m in found] == [o["offset"] for o in offsets]
    assert found[0].headers() == [("h", b"\x00hv")]


@pytest.mark.parametrize("ack", ["none", "leader", "durable"])
def test_json_records_to_a_partition(agent: AgentThread, ack: str) -> None:
    port = rest_port(agent)
    topic = new_topic(agent, partitions=3)
    values = [{"n": 1, "text": "é"}, [1, 2, None], "plain", 42]
    body = {"records": [{"key": {"id": i}, "value": v} for i, v in enumerate(values)]}
    answer = call(
        port,
        "POST",
        f"/topics/{topic}/partitions/2",
        body,
        V2_EMBEDDED_JSON,
        headers={"X-Streamhouse-Ack": ack},
    )
    assert answer.status == 200, answer.raw
    assert {o["partition"] for o in answer.json["offsets"]} == {2}
    found = read_back(agent.bootstrap, topic, 2, len(values))
    assert [json.loads(m.value()) for m in found] == values
    assert [m.offset() for m in found] == [o["offset"] for o in answer.json["offsets"]]


def test_kafka_records_seen_in_v2_metadata_and_offsets(agent: AgentThread) -> None:
    port = rest_port(agent)
    topic = new_topic(agent, partitions=2)
    producer = Producer({"bootstrap.servers": agent.bootstrap})
    for index in range(7):
        producer.produce(topic, value=b"v%d" % index, partition=1)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0
    assert topic in call(port, "GET", "/topics").json
    described = call(port, "GET", f"/topics/{topic}/")
    assert described.status == 200
    assert [p["partition"] for p in described.json["partitions"]] == [0, 1]
    assert "cleanup.policy" in described.json["configs"]
    offsets = call(port, "GET", f"/topics/{topic}/partitions/1/offsets")
    assert offsets.json == {"beginning_offset": 0, "end_offset": 7}
    assert call(port, "GET", f"/topics/{topic}/partitions/0/offsets").json["end_offset"] == 0
    assert call(port, "GET", f"/topics/{topic}/partitions/1").json["leader"] >= 0
    assert call(port, "GET", "/brokers").json["brokers"]


def test_refusals_in_confluent_shape(agent: AgentThread) -> None:
    port = rest_port(agent)
    topic = new_topic(agent)
    record = {"records": [{"value": base64.b64encode(b"x").decode()}]}
    missing = call(port, "GET", "/topics/no-such-topic")
    assert (missing.status, missing.json["error_code"]) == (404, 40401)
    missing = call(port, "POST", "/topics/no-such-topic", record, V2_BINARY)
    assert (missing.status, missing.json["error_code"]) == (404, 40401)
    no_partition = call(port, "GET", f"/topics/{topic}/partitions/9")
    assert (no_partition.status, no_partition.json["error_code"]) == (404, 40402)
    no_partition = call(port, "POST", f"/topics/{topic}/partitions/9", record, V2_BINARY)
    assert (no_partition.status, no_partition.json["error_code"]) == (404, 40402)
    malformed = call(port, "POST", f"/topics/{topic}", b'{"records": [', V2_BINARY)
    assert malformed.status == 400 and malformed.json["message"]
    not_base64 = call(port, "POST", f"/topics/{topic}", {"records": [{"value": "@@"}]}, V2_BINARY)
    assert not_base64.status == 422 and not_base64.json["error_code"] == 42202
    not_ascii = call(port, "POST", f"/topics/{topic}", {"records": [{"value": "é"}]}, V2_BINARY)
    assert not_ascii.status == 422 and not_ascii.json["error_code"] == 42202  # found by the fuzz
    wrong_type = call(port, "POST", f"/topics/{topic}", record, "text/plain")
    assert (wrong_type.status, wrong_type.json["error_code"]) == (415, 415)
    bad_ack = call(port, "POST", f"/topics/{topic}?ack=sometimes", record, V2_BINARY)
    assert bad_ack.status == 400 and "ack" in bad_ack.json["message"]
    oversized = call(port, "POST", f"/topics/{topic}", b" " * (REQUEST_BYTES_MAX + 1), V2_BINARY)
    assert (oversized.status, oversized.json["error_code"]) == (413, 413)
    assert call(port, "GET", "/no/such/route").status == 404


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
RECORD_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "key": JSON_VALUES,
        "value": JSON_VALUES,
        "partition": st.integers(-2, 3) | JSON_VALUES,
        "partition_id": st.integers(-2, 3) | JSON_VALUES,
        "headers": JSON_VALUES,
        "timestamp": st.text(max_size=12) | JSON_VALUES,
    },
)
BODIES = (
    st.binary(max_size=64)
    | JSON_VALUES.map(lambda value: json.dumps(value).encode())
    | st.lists(RECORD_LIKE, max_size=3).map(lambda rs: json.dumps({"records": rs}).encode())
    | RECORD_LIKE.map(lambda record: json.dumps(record).encode())
)
ROUTES = st.sampled_from(
    [
        ("/topics/{topic}", V2_BINARY),
        ("/topics/{topic}", V2_EMBEDDED_JSON),
        ("/topics/{topic}/partitions/0", V2_BINARY),
        ("/v3/clusters/streamhouse-default/topics/{topic}/records", "application/json"),
        ("/v3/clusters/streamhouse-default/topics/{topic}/configs:alter", "application/json"),
    ]
)


def test_fuzzed_bodies_are_never_answered_5xx(agent: AgentThread) -> None:
    port = rest_port(agent)
    topic = new_topic(agent)

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(route=ROUTES, body=BODIES, ack=st.sampled_from(["", "?ack=none", "?ack=leader"]))
    def answered_without_5xx(route: tuple[str, str], body: bytes, ack: str) -> None:
        path, content = route
        answer = call(port, "POST", path.format(topic=topic) + ack, body, content)
        assert answer.status < 500, (path, body, answer.raw)
        if answer.status >= 400:
            assert isinstance(answer.json["error_code"], int) and answer.json["message"]
        elif answer.status != 204:
            assert answer.raw.strip()[:1] in (b"{", b"[")  # 2xx bodies are JSON documents

    answered_without_5xx()
    assert call(port, "GET", "/v3/clusters").status == 200  # the agent still serves
