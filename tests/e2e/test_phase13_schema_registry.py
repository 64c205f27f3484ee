"""e2e phase 13: the schema registry, used unchanged by Confluent's own Python client.

confluent-kafka's SchemaRegistryClient, AvroSerializer, JSONSerializer and ProtobufSerializer (with
a reference) register and fetch schemas from the agent's registry door while producing and
consuming through its Kafka door; compatibility levels, deletes, configs and modes are driven
through the client's calls; broker-side validation refuses a plain producer's unframed record.
"""

from __future__ import annotations

import json
import struct
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import (
    Schema,
    SchemaRegistryClient,
    SchemaRegistryError,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from typer.testing import CliRunner

from streamhouse.cli.streamctl import app
from tests.e2e.conftest import Agent, produce_each

WAIT_S = 20
ADMIN_TIMEOUT_S = 15

USER_V1 = {
    "type": "record",
    "name": "User",
    "namespace": "shop",
    "fields": [{"name": "name", "type": "string"}, {"name": "age", "type": "int"}],
}
USER_V2 = {  # adds a field with a default: BACKWARD compatible
    **USER_V1,
    "fields": [*USER_V1["fields"], {"name": "email", "type": "string", "default": ""}],
}
USER_BREAKING = {  # adds a field without a default: not BACKWARD compatible
    **USER_V1,
    "fields": [*USER_V1["fields"], {"name": "country", "type": "string"}],
}


def _client(agent: Agent) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": agent.registry_url})


def _create(agent: Agent, topic: str, config: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, config=config or {})]).values():
        future.result(ADMIN_TIMEOUT_S)


def _produce(agent: Agent, topic: str, values: list[bytes]) -> list[KafkaError | None]:
    config = {"bootstrap.servers": agent.bootstrap, "acks": "all", "retries": 0}
    return produce_each(config, topic, values, WAIT_S)


def _consume(agent: Agent, topic: str, count: int) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": agent.bootstrap, "group.id": f"p13-{topic}"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    found: list[bytes] = []
    while len(found) < count:
        message = consumer.poll(WAIT_S)
        assert message is not None and message.error() is None, message
        found.append(message.value())
    consumer.close()
    return found


def _round_trip(
    agent: Agent,
    topic: str,
    serialize: Callable[[Any, SerializationContext], bytes],
    deserialize: Callable[[bytes, SerializationContext], Any],
    values: list[Any],
) -> list[Any]:
    _create(agent, topic)
    context = SerializationContext(topic, MessageField.VALUE)
    assert _produce(agent, topic, [serialize(v, context) for v in values]) == [None] * len(values)
    return [deserialize(raw, context) for raw in _consume(agent, topic, len(values))]


def test_avro_serializer_round_trip_with_content_addressed_ids(agent: Agent) -> None:
    client = _client(agent)
    serializer = AvroSerializer(client, json.dumps(USER_V1))
    users = [{"name": "ada", "age": 36}, {"name": "alan", "age": 41}]
    read = _round_trip(agent, "p13-avro", serializer, AvroDeserializer(client), users)
    assert read == users
    registered = client.get_latest_version("p13-avro-value")
    assert registered.version == 1
    assert json.loads(registered.schema.schema_str) == USER_V1
    # the same schema, written differently, under another subject: the same global id
    spaced = Schema(json.dumps(USER_V1, indent=4), "AVRO")
    assert client.register_schema("other-value", spaced) == registered.schema_id
    assert client.lookup_schema("other-value", spaced).version == 1
    assert client.get_subjects_by_schema_id(registered.schema_id) == [
        "other-value",
        "p13-avro-value",
    ]
    versions = client.get_schema_versions(registered.schema_id)
    assert {(v.subject, v.version) for v in versions} == {("other-value", 1), ("p13-avro-value", 1)}
    assert client.get_schema_types() == ["JSON", "PROTOBUF", "AVRO"]
    evolved = client.register_schema("p13-avro-value", Schema(json.dumps(USER_V2), "AVRO"))
    assert evolved != registered.schema_id
    assert client.get_versions("p13-avro-value") == [1, 2]
    assert client.get_version("p13-avro-value", 2).schema_id == evolved


def test_json_serializer_round_trip(agent: Agent) -> None:
    client = _client(agent)
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Order",
        "type": "object",
        "properties": {"id": {"type": "integer"}, "item": {"type": "string"}},
        "required": ["id"],
    }
    serializer = JSONSerializer(json.dumps(schema), client)
    orders = [{"id": 1, "item": "tea"}, {"id": 2, "item": "cake"}]
    read = _round_trip(
        agent, "p13-json", serializer, JSONDeserializer(None, schema_registry_client=client), orders
    )
    assert read == orders
    stored = client.get_latest_version("p13-json-value")
    assert stored.schema.schema_type == "JSON"
    assert json.loads(stored.schema.schema_str) == schema


def _proto_messages() -> tuple[type[Any], type[Any]]:
    """Order (in order.proto) with a Money field imported from common/money.proto, built as
    protoc would build them, in a pool of their own."""
    pool = descriptor_pool.DescriptorPool()
    money = descriptor_pb2.FileDescriptorProto(
        name="common/money.proto", package="shop", syntax="proto3"
    )
    amount = money.message_type.add(name="Money")
    amount.field.add(name="currency", number=1, type=9, label=1)  # string
    amount.field.add(name="units", number=2, type=3, label=1)  # int64
    order = descriptor_pb2.FileDescriptorProto(
        name="order.proto", package="shop", syntax="proto3", dependency=["common/money.proto"]
    )
    message = order.message_type.add(name="Order")
    message.field.add(name="id", number=1, type=9, label=1)
    message.field.add(name="total", number=2, type=11, label=1, type_name=".shop.Money")
    message.field.add(name="items", number=3, type=9, label=3)  # repeated string
    pool.Add(money)
    pool.Add(order)
    order_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))
    money_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Money"))
    return order_class, money_class


def test_protobuf_serializer_with_a_reference(agent: Agent) -> None:
    client = _client(agent)
    order_class, money_class = _proto_messages()
    serializer = ProtobufSerializer(order_class, client, {"use.deprecated.format": False})
    deserializer = ProtobufDeserializer(
        order_class, {"use.deprecated.format": False}, schema_registry_client=client
    )
    orders = [
        order_class(id="o-1", total=money_class(currency="EUR", units=12), items=["tea"]),
        order_class(id="o-2", total=money_class(currency="GBP", units=3), items=["a", "b"]),
    ]
    read = _round_trip(agent, "p13-proto", serializer, deserializer, orders)
    assert read == orders
    latest = client.get_latest_version("p13-proto-value")
    assert latest.schema.schema_type == "PROTOBUF"
    [reference] = latest.schema.references
    assert (reference.name, reference.subject) == ("common/money.proto", "common/money.proto")
    assert "message Order" in latest.schema.schema_str  # served as .proto text by default
    dependency = client.get_latest_version("common/money.proto")
    assert client.get_referenced_by("common/money.proto", dependency.version) == [latest.schema_id]
    with pytest.raises(SchemaRegistryError) as refused:  # still referenced
        client.delete_subject("common/money.proto")
    assert refused.value.error_code == 42206


def test_an_incompatible_evolution_is_refused_under_backward_and_accepted_under_none(
    agent: Agent,
) -> None:
    client = _client(agent)
    subject = "p13-evolve-value"
    client.register_schema(subject, Schema(json.dumps(USER_V1), "AVRO"))
    breaking = Schema(json.dumps(USER_BREAKING), "AVRO")
    assert client.get_compatibility() == "BACKWARD"
    assert not client.test_compatibility(subject, breaking)
    messages = _verbose_check(agent, subject, USER_BREAKING)
    assert messages and any("country" in message for message in messages), messages
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, breaking)
    assert (refused.value.http_status_code, refused.value.error_code) == (409, 409)
    assert client.get_versions(subject) == [1]
    assert client.set_compatibility(subject, "NONE") == {"compatibility": "NONE"}
    assert client.get_compatibility(subject) == "NONE"
    assert client.test_compatibility(subject, breaking)
    client.register_schema(subject, breaking)
    assert client.get_versions(subject) == [1, 2]


def _verbose_check(agent: Agent, subject: str, schema: dict[str, Any]) -> list[str]:
    body = {"schema": json.dumps(schema)}
    url = f"/compatibility/subjects/{subject}/versions/latest?verbose=true"
    answer = _http(agent, "POST", url, body)
    assert answer["is_compatible"] is False
    messages: list[str] = answer["messages"]
    return messages


def test_transitive_levels_check_every_version(agent: Agent) -> None:
    """v3 makes a field required that v2 added with a default: v3 reads v2's data but not
    v1's, so BACKWARD accepts it and BACKWARD_TRANSITIVE refuses it."""
    client = _client(agent)
    base = {"type": "record", "name": "Event", "fields": [{"name": "id", "type": "long"}]}
    with_default = {
        **base,
        "fields": [*base["fields"], {"name": "kind", "type": "string", "default": "x"}],
    }
    required = {**base, "fields": [*base["fields"], {"name": "kind", "type": "string"}]}
    for subject, level in (("p13-b-value", "BACKWARD"), ("p13-bt-value", "BACKWARD_TRANSITIVE")):
        client.set_compatibility(subject, level)
        client.register_schema(subject, Schema(json.dumps(base), "AVRO"))
        client.register_schema(subject, Schema(json.dumps(with_default), "AVRO"))
    third = Schema(json.dumps(required), "AVRO")
    assert client.test_compatibility_all_versions("p13-b-value", third)
    assert not client.test_compatibility_all_versions("p13-bt-value", third)
    client.register_schema("p13-b-value", third)
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema("p13-bt-value", third)
    assert refused.value.error_code == 409


def test_deletes_soft_then_permanent_and_the_same_schema_gets_its_id_back(agent: Agent) -> None:
    client = _client(agent)
    subject = "p13-deleted-value"
    schema = Schema(json.dumps(USER_V1), "AVRO")
    first_id = client.register_schema(subject, schema)
    with pytest.raises(SchemaRegistryError) as refused:  # a soft delete comes first
        client.delete_subject(subject, permanent=True)
    assert refused.value.error_code == 40405
    assert client.delete_subject(subject) == [1]
    assert subject not in client.get_subjects()
    assert client.get_schema(first_id).schema_str  # ids stay readable after a soft delete
    with pytest.raises(SchemaRegistryError) as refused:
        client.delete_subject(subject)
    assert refused.value.error_code == 40404
    assert client.delete_subject(subject, permanent=True) == [1]
    with pytest.raises(SchemaRegistryError) as refused:
        client.get_versions(subject)
    assert refused.value.error_code == 40401
    client.clear_caches()
    assert client.register_schema(subject, schema) == first_id
    assert client.get_versions(subject) == [1]
    with pytest.raises(SchemaRegistryError) as refused:
        client.get_version(subject, 7)
    assert refused.value.error_code == 40402
    with pytest.raises(SchemaRegistryError) as refused:
        client.get_schema(10_000)
    assert refused.value.error_code == 40403


def test_config_and_modes(agent: Agent) -> None:
    client = _client(agent)
    client.register_schema("p13-mode-value", Schema(json.dumps(USER_V1), "AVRO"))
    assert client.set_compatibility(level="FULL") == {"compatibility": "FULL"}
    assert client.get_compatibility() == "FULL"
    with pytest.raises(SchemaRegistryError) as refused:  # no subject-level config
        client.get_config("p13-mode-value")
    assert refused.value.error_code == 40408
    with pytest.raises(SchemaRegistryError) as refused:
        client.set_compatibility(level="SIDEWAYS")
    assert refused.value.error_code == 42203
    assert client.get_global_mode() == "READWRITE"
    assert client.update_mode("p13-mode-value", "READONLY") == "READONLY"
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema("p13-mode-value", Schema(json.dumps(USER_V2), "AVRO"))
    assert refused.value.error_code == 42205
    with pytest.raises(SchemaRegistryError) as refused:  # there are schemas: import needs force
        client.update_global_mode("IMPORT")
    assert refused.value.error_code == 42205
    assert client.delete_mode("p13-mode-value") == "READONLY"
    with pytest.raises(SchemaRegistryError) as refused:
        client.get_mode("p13-mode-value")
    assert refused.value.error_code == 40409
    client.register_schema("p13-mode-value", Schema(json.dumps(USER_V2), "AVRO"))
    assert client.get_contexts() == ["."]


def test_broker_side_validation_refuses_unframed_and_unregistered_values(agent: Agent) -> None:
    client = _client(agent)
    topic = "p13-validated"
    _create(agent, topic, {"confluent.value.schema.validation": "true"})
    serializer = AvroSerializer(client, json.dumps(USER_V1))
    context = SerializationContext(topic, MessageField.VALUE)
    good = serializer({"name": "ada", "age": 36}, context)
    other_id = client.register_schema("unrelated-value", Schema('"string"', "AVRO"))
    unregistered = b"\x00" + struct.pack(">i", other_id) + b"\x02x"
    outcomes = _produce(agent, topic, [good, b"plain bytes", unregistered, good])
    assert outcomes[0] is None and outcomes[3] is None
    for refused in outcomes[1:3]:
        assert refused is not None and refused.code() == KafkaError.INVALID_RECORD, refused
    assert _consume(agent, topic, 2) == [good, good]
    # topics without the config take anything
    _create(agent, "p13-free")
    assert _produce(agent, "p13-free", [b"plain bytes"]) == [None]
    with urllib.request.urlopen(agent.http_base + "/metrics", timeout=WAIT_S) as answer:
        metrics = answer.read().decode()
    assert "streamhouse_schema_registry_validation_refusals_total 2.0" in metrics
    assert "streamhouse_schema_registry_registrations_total 2.0" in metrics


def _http(agent: Agent, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(agent.registry_url + path, data=data, method=method)
    request.add_header("Content-Type", "application/vnd.schemaregistry.v1+json")
    with urllib.request.urlopen(request, timeout=WAIT_S) as answer:
        assert answer.headers["Content-Type"].startswith("application/vnd.schemaregistry.v1+json")
        return json.loads(answer.read())


def _refused(agent: Agent, method: str, path: str, raw: bytes) -> tuple[int, dict[str, Any]]:
    with pytest.raises(urllib.error.HTTPError) as refused:
        _http(agent, method, path, raw=raw)
    return refused.value.code, json.loads(refused.value.read())


def test_malformed_requests_get_clear_errors_and_the_registry_keeps_serving(agent: Agent) -> None:
    versions = "/subjects/p13-bad-value/versions"
    status, body = _refused(agent, "POST", versions, b"{not json")
    assert (status, body["error_code"]) == (400, 400)
    status, body = _refused(agent, "POST", versions, b'{"schemaType": "AVRO"}')
    assert (status, body["error_code"]) == (422, 422) and "schema" in body["message"]
    status, body = _refused(agent, "POST", versions, b'{"schema": "{\\"type\\": \\"recrd\\"}"}')
    assert (status, body["error_code"]) == (422, 42201)
    status, body = _refused(agent, "POST", versions, b'{"schema": "{}", "schemaType": "XML"}')
    assert (status, body["error_code"]) == (422, 42201)
    status, body = _refused(agent, "GET", "/subjects/p13-bad-value/versions/zero", b"")
    assert (status, body["error_code"]) == (422, 42202)
    status, body = _refused(agent, "GET", "/no/such/path", b"")
    assert (status, body["error_code"]) == (404, 404)
    assert _http(agent, "POST", versions, {"schema": '"string"'}) == {"id": 1}


def test_streamctl_schemas(agent: Agent, tmp_path: Path) -> None:
    env = {"STREAMHOUSE_REGISTRY": agent.registry_url}
    runner = CliRunner()
    v1, breaking = tmp_path / "user.avsc", tmp_path / "breaking.avsc"
    v1.write_text(json.dumps(USER_V1))
    breaking.write_text(json.dumps(USER_BREAKING))

    def streamctl(*args: str) -> Any:
        result = runner.invoke(app, ["schemas", *args], env=env)
        return result

    registered = streamctl("register", "cli-value", str(v1), "-o", "json")
    assert registered.exit_code == 0, registered.output
    assert json.loads(registered.stdout)["version"] == 1
    listed = streamctl("list", "-o", "json")
    assert [row["subject"] for row in json.loads(listed.stdout)] == ["cli-value"]
    shown = streamctl("get", "cli-value", "-o", "json")
    assert json.loads(json.loads(shown.stdout)["schema"]) == USER_V1
    checked = streamctl("check", "cli-value", str(breaking))
    assert checked.exit_code == 1 and "incompatible" in checked.stdout
    assert streamctl("config", "cli-value", "--set", "none").exit_code == 0
    assert streamctl("check", "cli-value", str(breaking)).exit_code == 0
    configured = streamctl("config", "cli-value", "-o", "json")
    assert json.loads(configured.stdout)[0]["compatibility"] == "NONE"
    deleted = streamctl("delete", "cli-value")
    assert deleted.exit_code == 0 and "soft-deleted" in deleted.stdout
    gone = streamctl("get", "cli-value")
    assert gone.exit_code == 1 and "40401" in gone.output


def test_the_remaining_endpoints_answer_as_confluent_s(agent: Agent) -> None:
    client = _client(agent)
    first = client.register_schema("rest-value", Schema(json.dumps(USER_V1), "AVRO"))
    client.register_schema("rest-value", Schema(json.dumps(USER_V2), "AVRO"))
    assert _http(agent, "GET", "/") == {}
    assert _http(agent, "GET", f"/schemas/ids/{first}/schema") == USER_V1
    assert _http(agent, "GET", "/subjects/rest-value/versions/1/schema") == USER_V1
    listed = _http(agent, "GET", "/schemas?subjectPrefix=rest-&latestOnly=true")
    assert [(s["subject"], s["version"]) for s in listed] == [("rest-value", 2)]
    assert client.delete_version("rest-value", 2) == 2
    assert client.get_versions("rest-value") == [1]
    assert client.delete_version("rest-value", 2, permanent=True) == 2
    with pytest.raises(SchemaRegistryError) as refused:
        client.get_version("rest-value", 2, deleted=True)
    assert refused.value.error_code == 40402
    client.set_compatibility("rest-value", "FULL")
    assert client.delete_config("rest-value").compatibility_level == "FULL"
    with pytest.raises(SchemaRegistryError) as refused:
        client.get_compatibility("rest-value")
    assert refused.value.error_code == 40408
    fallback = _http(agent, "GET", "/config/rest-value?defaultToGlobal=true")
    assert fallback == {"compatibilityLevel": "BACKWARD"}  # the registry's again
