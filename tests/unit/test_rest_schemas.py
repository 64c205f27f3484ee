"""The REST proxy's schema formats (avro, protobuf, jsonschema) against a real agent with its
REST and schema registry doors: records produced through v2 and v3 (inline schema, schema id,
version, the subject's latest) are read by confluent-kafka's Consumer and Confluent's own
deserializers talking to the agent's registry door, giving back what was sent; refusals carry
the engine's Confluent codes; the door's decode entry point gives the records back as JSON."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import json_format

from streamhouse.agent import Agent, open_rest_proxy, rest_services
from streamhouse.engine.cluster import CLUSTER_ID
from streamhouse.engine.embedded_formats import EmbeddedFormat
from streamhouse.server.http_auth import HttpAuth
from streamhouse.server.rest_common import RestError
from streamhouse.server.rest_formats import decode, decode_all, visible_schemas
from streamhouse.server.schema_registry import RegistryDoor, start_registry_door
from streamhouse.tenancy.names import DEFAULT_ORG
from tests.unit.rest_world import Answer, call, read_back, rest_port
from tests.unit.sasl_world import AgentThread, agent_settings
from tests.unit.test_embedded_formats import (
    USER_AVRO,
    USER_AVRO_DATUM,
    USER_AVRO_JSON,
    USER_JSON_SCHEMA,
    USER_PROTO,
    USER_PROTO_JSON,
    _user_message_class,
)

CLIENT_TIMEOUT_S = 20
V2_AVRO = "application/vnd.kafka.avro.v2+json"
V2_PROTOBUF = "application/vnd.kafka.protobuf.v2+json"
V2_JSONSCHEMA = "application/vnd.kafka.jsonschema.v2+json"
CLUSTER = f"/v3/clusters/{CLUSTER_ID}"
KEY, VALUE = MessageField.KEY, MessageField.VALUE


async def _open_registry(agent: Agent) -> RegistryDoor:
    return await start_registry_door(
        "127.0.0.1", 0, agent.schema_registry, HttpAuth(agent.authenticator)
    )


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    directory: Path = tmp_path_factory.mktemp("rest-schemas")
    settings = agent_settings(directory / "data", "PLAINTEXT").with_overrides(rest_proxy_port=0)
    running = AgentThread(settings, None, door_openers=(open_rest_proxy, _open_registry)).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(agent: AgentThread) -> SchemaRegistryClient:
    door = agent.doors[1]
    assert isinstance(door, RegistryDoor)
    return SchemaRegistryClient({"url": f"http://127.0.0.1:{door.port}"})


def new_topic(agent: AgentThread) -> str:
    name = f"schemas-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    admin.create_topics([NewTopic(name, 1)])[name].result(CLIENT_TIMEOUT_S)
    return name


def v2(agent: AgentThread, topic: str, body: Any, content_type: str) -> Answer:
    return call(rest_port(agent), "POST", f"/topics/{topic}", body, content_type)


def v3(agent: AgentThread, topic: str, record: Any) -> Answer:
    return call(rest_port(agent), "POST", CLUSTER + f"/topics/{topic}/records", record)


def context(topic: str, field: MessageField = VALUE) -> SerializationContext:
    return SerializationContext(topic, field)


# --- v2 --------------------------------------------------------------------------------------


def test_v2_avro_inline_then_by_id_is_read_by_confluents_deserializer(
    agent: AgentThread, client: SchemaRegistryClient
) -> None:
    topic = new_topic(agent)
    records = [{"key": f"k{index}", "value": USER_AVRO_JSON} for index in range(3)]
    body = {"key_schema": '"string"', "value_schema": USER_AVRO, "records": records}
    inline = v2(agent, topic, body, V2_AVRO)
    assert inline.status == 200, inline.raw
    value_id = client.get_latest_version(f"{topic}-value").schema_id
    key_id = client.get_latest_version(f"{topic}-key").schema_id
    assert (inline.json["key_schema_id"], inline.json["value_schema_id"]) == (key_id, value_id)
    by_id = {"key_schema_id": key_id, "value_schema_id": str(value_id), "records": records}
    again = v2(agent, topic, by_id, V2_AVRO)
    assert again.status == 200, again.raw
    assert (again.json["key_schema_id"], again.json["value_schema_id"]) == (key_id, value_id)
    assert [o["offset"] for o in again.json["offsets"]] == [3, 4, 5]
    found = read_back(agent.bootstrap, topic, 0, 6)
    values, keys = AvroDeserializer(client), AvroDeserializer(client)
    assert [values(m.value(), context(topic)) for m in found] == [USER_AVRO_DATUM] * 6
    assert [keys(m.key(), context(topic, KEY)) for m in found] == ["k0", "k1", "k2"] * 2


def test_v2_protobuf_inline_and_by_id_is_read_by_confluents_deserializer(
    agent: AgentThread, client: SchemaRegistryClient
) -> None:
    topic = new_topic(agent)
    inline = v2(
        agent,
        topic,
        {"value_schema": USER_PROTO, "records": [{"value": USER_PROTO_JSON}]},
        V2_PROTOBUF,
    )
    assert inline.status == 200, inline.raw
    value_id = inline.json["value_schema_id"]
    assert value_id == client.get_latest_version(f"{topic}-value").schema_id
    assert inline.json["key_schema_id"] is None
    by_id = {"value_schema_id": value_id, "records": [{"value": USER_PROTO_JSON}]}
    assert v2(agent, topic, by_id, V2_PROTOBUF).json["value_schema_id"] == value_id
    deserializer = ProtobufDeserializer(_user_message_class(), {}, client)
    for message in read_back(agent.bootstrap, topic, 0, 2):
        read = deserializer(message.value(), context(topic))
        assert json_format.MessageToDict(read) == USER_PROTO_JSON


def test_v2_jsonschema_keys_and_values_are_read_by_confluents_deserializer(
    agent: AgentThread, client: SchemaRegistryClient
) -> None:
    topic = new_topic(agent)
    users = [{"name": "ann", "age": 41}, {"name": "bo"}]
    body = {
        "key_schema": USER_JSON_SCHEMA,
        "value_schema": USER_JSON_SCHEMA,
        "records": [{"key": user, "value": user} for user in users],
    }
    answer = v2(agent, topic, body, V2_JSONSCHEMA)
    assert answer.status == 200, answer.raw
    assert answer.json["key_schema_id"] == client.get_latest_version(f"{topic}-key").schema_id
    deserializer = JSONDeserializer(None, schema_registry_client=client)
    found = read_back(agent.bootstrap, topic, 0, 2)
    assert [deserializer(m.value(), context(topic)) for m in found] == users
    assert [deserializer(m.key(), context(topic, KEY)) for m in found] == users


def test_v2_refusals_carry_the_engines_codes(
    agent: AgentThread, client: SchemaRegistryClient
) -> None:
    topic = new_topic(agent)
    record = {"records": [{"value": USER_AVRO_JSON}]}
    cases = [
        ({"value_schema_id": 999_999, **record}, 404, 40403),
        ({"value_schema": '{"type": "record"', **record}, 422, 42201),
        ({"value_schema": USER_AVRO, "records": [{"value": {"name": 5}}]}, 422, 42202),
        (record, 422, 42202),  # values, no value schema (Confluent's v2 code)
        (
            {"value_schema": USER_AVRO, "records": [{"key": "k", "value": USER_AVRO_JSON}]},
            422,
            42201,
        ),
        ({"value_schema": USER_AVRO, "value_schema_id": 1, **record}, 400, 40000),
        ({"value_schema_id": "one", **record}, 422, 422),
    ]
    for body, status, code in cases:
        answer = v2(agent, topic, body, V2_AVRO)
        assert (answer.status, answer.json["error_code"]) == (status, code), (body, answer.raw)
        assert answer.json["message"]
    missing = v2(agent, "no-such-topic", {"value_schema": USER_AVRO, **record}, V2_AVRO)
    assert (missing.status, missing.json["error_code"]) == (404, 40401)
    assert "no-such-topic-value" not in client.get_subjects()  # nothing registered for it
    assert read_back(agent.bootstrap, topic, 0, 0) == []


# --- v3 --------------------------------------------------------------------------------------


def test_v3_avro_inline_by_id_by_version_latest_and_untyped(
    agent: AgentThread, client: SchemaRegistryClient
) -> None:
    topic = new_topic(agent)
    inline = v3(
        agent, topic, {"value": {"type": "AVRO", "schema": USER_AVRO, "data": USER_AVRO_JSON}}
    )
    assert inline.status == 200, inline.raw
    schema_id = inline.json["value"]["schema_id"]
    assert schema_id == client.get_latest_version(f"{topic}-value").schema_id
    assert inline.json["value"]["subject"] == f"{topic}-value"
    assert inline.json["value"]["type"] == "AVRO"
    ways = [
        {"type": "AVRO", "schema_id": schema_id},
        {"type": "AVRO", "schema_version": 1, "subject": f"{topic}-value"},
        {"type": "AVRO"},  # the subject's latest
        {"schema_id": schema_id},  # the schema's format
        {"subject_name_strategy": "TOPIC_NAME", "schema_version": 1},
    ]
    for way in ways:
        answer = v3(
            agent,
            topic,
            {"key": {"type": "STRING", "data": "k"}, "value": {**way, "data": USER_AVRO_JSON}},
        )
        assert answer.status == 200, (way, answer.raw)
        assert answer.json["value"]["schema_id"] == schema_id
        assert answer.json["value"]["type"] == "AVRO"
        assert answer.json["key"] == {"type": "STRING", "size": 1}
    found = read_back(agent.bootstrap, topic, 0, 1 + len(ways))
    deserializer = AvroDeserializer(client)
    assert [deserializer(m.value(), context(topic)) for m in found] == [USER_AVRO_DATUM] * 6
    assert [m.key() for m in found[1:]] == [b"k"] * len(ways)


def test_v3_protobuf_and_jsonschema_are_read_by_confluents_deserializers(
    agent: AgentThread, client: SchemaRegistryClient
) -> None:
    topic = new_topic(agent)
    key = {"type": "JSONSCHEMA", "schema": USER_JSON_SCHEMA, "data": {"name": "ann"}}
    value = {"type": "PROTOBUF", "schema": USER_PROTO, "data": USER_PROTO_JSON}
    first = v3(agent, topic, {"key": key, "value": value})
    assert first.status == 200, first.raw
    by_id = {
        "key": {"schema_id": first.json["key"]["schema_id"], "data": {"name": "bo"}},
        "value": {
            "type": "PROTOBUF",
            "schema_id": first.json["value"]["schema_id"],
            "data": USER_PROTO_JSON,
        },
    }
    second = v3(agent, topic, by_id)
    assert second.status == 200, second.raw
    assert second.json["key"]["type"] == "JSONSCHEMA"
    found = read_back(agent.bootstrap, topic, 0, 2)
    keys = JSONDeserializer(None, schema_registry_client=client)
    assert [keys(m.key(), context(topic, KEY)) for m in found] == [{"name": "ann"}, {"name": "bo"}]
    values = ProtobufDeserializer(_user_message_class(), {}, client)
    for message in found:
        assert json_format.MessageToDict(values(message.value(), context(topic))) == USER_PROTO_JSON


def test_v3_refusals_carry_the_engines_codes(agent: AgentThread) -> None:
    topic = new_topic(agent)
    avro = {"type": "AVRO", "schema": USER_AVRO}
    cases = [
        ({"type": "AVRO", "data": USER_AVRO_JSON}, 404, 40401),  # no subject yet: the first
        ({"type": "AVRO", "schema_id": 999_999, "data": USER_AVRO_JSON}, 404, 40403),
        ({"schema_id": 999_999, "data": USER_AVRO_JSON}, 404, 40403),
        ({**avro, "data": {"name": 5}}, 422, 42202),
        ({"type": "AVRO", "schema": "{", "data": {}}, 422, 42201),
        ({"schema": USER_AVRO, "data": USER_AVRO_JSON}, 400, 400),  # inline needs its type
        ({**avro, "subject_name_strategy": "RECORD_NAME", "data": USER_AVRO_JSON}, 400, 400),
        ({"type": "AVRO", "schema_id": "1", "data": USER_AVRO_JSON}, 400, 400),
    ]
    for value, status, code in cases:
        answer = v3(agent, topic, {"value": value})
        assert (answer.status, answer.json["error_code"]) == (status, code), (value, answer.raw)
    missing = v3(agent, "no-such-topic", {"value": {**avro, "data": USER_AVRO_JSON}})
    assert (missing.status, missing.json["error_code"]) == (404, 404)
    assert read_back(agent.bootstrap, topic, 0, 0) == []


# --- decode, for the consumer routes ---------------------------------------------------------


def test_decode_gives_back_the_json_each_format_was_written_in(agent: AgentThread) -> None:
    topic = new_topic(agent)
    body = {
        "key_schema": '"string"',
        "value_schema": USER_AVRO,
        "records": [{"key": "k", "value": USER_AVRO_JSON}] * 3,
    }
    assert v2(agent, topic, body, V2_AVRO).status == 200
    v3(
        agent,
        topic,
        {"key": {"type": "STRING", "data": "é"}, "value": {"type": "JSON", "data": [1]}},
    )
    found = read_back(agent.bootstrap, topic, 0, 4)
    assert agent.agent is not None
    services = rest_services(agent.agent)
    avro = EmbeddedFormat.AVRO
    values = agent.call(decode_all(services, DEFAULT_ORG, avro, [m.value() for m in found[:3]]))
    assert values == [USER_AVRO_JSON] * 3
    keys = agent.call(
        decode_all(services, DEFAULT_ORG, avro, [m.key() for m in found[:3]] + [None])
    )
    assert keys == ["k", "k", "k", None]
    assert agent.call(decode(services, DEFAULT_ORG, EmbeddedFormat.STRING, found[3].key())) == "é"
    assert agent.call(decode(services, DEFAULT_ORG, EmbeddedFormat.JSON, found[3].value())) == [1]
    with pytest.raises(RestError) as undecodable:
        agent.call(decode(services, DEFAULT_ORG, avro, found[3].value()))
    assert (undecodable.value.status, undecodable.value.error_code) == (422, 42203)
    with pytest.raises(RestError) as other_org:  # the id is the default org's
        agent.call(decode(services, "acme", avro, found[0].value(), visible_schemas("acme")))
    assert (other_org.value.status, other_org.value.error_code) == (404, 40403)
    assert json.loads(found[3].value()) == [1]
