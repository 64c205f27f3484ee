"""The REST Proxy's embedded formats (engine/embedded_formats.py) over the real registry on
SQLite: values round-trip, and what is written is read by confluent-kafka's own deserializers
talking to our registry door; data that does not fit its schema is refused naming the field;
ids stay in their org."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, json_format
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamhouse.engine.embedded_formats import (
    EmbeddedFormat,
    EmbeddedFormats,
    EmbeddedRequestInvalid,
    RecordMismatch,
    RecordPartTooLarge,
    SchemaInvalid,
    SchemaNotFound,
    UndecodableRecord,
    VisibleSchemas,
)
from streamhouse.engine.schema_registry import SchemaRegistry
from streamhouse.io.sql.store import SqlMetadataStore, open_sql_metadata
from streamhouse.schemas.wire_format import WIRE_HEADER_BYTES
from streamhouse.server.schema_registry import RegistryDoor, start_registry_door
from streamhouse.tenancy.names import DEFAULT_ORG
from tests.unit.schemas.avro_strategies import deduplicate_names, records

T = TypeVar("T")
CALL_TIMEOUT_S = 60
AVRO, PROTOBUF, JSONSCHEMA = EmbeddedFormat.AVRO, EmbeddedFormat.PROTOBUF, EmbeddedFormat.JSONSCHEMA

USER_AVRO = json.dumps(
    {
        "type": "record",
        "name": "User",
        "namespace": "shop",
        "fields": [
            {"name": "name", "type": "string"},
            {"name": "age", "type": ["null", "int"], "default": None},
            {"name": "photo", "type": "bytes"},
            {
                "name": "address",
                "type": {
                    "type": "record",
                    "name": "Address",
                    "fields": [{"name": "city", "type": "string"}],
                },
            },
        ],
    }
)
USER_AVRO_JSON = {
    "name": "ann",
    "age": {"int": 41},
    "photo": "\u00ff\u0000",
    "address": {"city": "Oslo"},
}
USER_AVRO_DATUM = {"name": "ann", "age": 41, "photo": b"\xff\x00", "address": {"city": "Oslo"}}

USER_PROTO = """
syntax = "proto3";
package shop;
message User {
  string name = 1;
  int64 visits = 2;
  repeated string tags = 3;
  message Badge { string title = 1; }
  Badge badge = 4;
}
"""
USER_PROTO_JSON = {"name": "ann", "visits": "7", "tags": ["a", "b"], "badge": {"title": "gold"}}

USER_JSON_SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
        "required": ["name"],
    }
)


@dataclass
class World:
    """Our registry on SQLite and its door, run on a loop of their own so that confluent-kafka's
    blocking client can talk to the door from the test's thread."""

    loop: asyncio.AbstractEventLoop
    registry: SchemaRegistry
    formats: EmbeddedFormats
    client: SchemaRegistryClient
    topics: Iterator[int]

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(CALL_TIMEOUT_S)

    def topic(self) -> str:
        """A topic of its own, so that each test's subjects start empty."""
        return f"topic{next(self.topics)}"

    def encode(self, topic: str, fmt: EmbeddedFormat, data: Any, **options: Any) -> Any:
        org = options.pop("org", DEFAULT_ORG)
        part = options.pop("part", "value")
        return self.call(self.formats.encode(org, topic, fmt, part, data, **options))

    def decode(self, fmt: EmbeddedFormat, data: bytes | None, org: str = DEFAULT_ORG) -> Any:
        return self.call(self.formats.decode(org, fmt, data))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    path: Path = tmp_path_factory.mktemp("formats") / "metadata.db"
    store: SqlMetadataStore = open_sql_metadata(f"sqlite:///{path}")
    registry = SchemaRegistry(store)

    async def start() -> RegistryDoor:
        return await start_registry_door("127.0.0.1", 0, registry)

    door = asyncio.run_coroutine_threadsafe(start(), loop).result(CALL_TIMEOUT_S)
    client = SchemaRegistryClient({"url": f"http://127.0.0.1:{door.port}"})
    try:
        yield World(loop, registry, EmbeddedFormats(registry), client, itertools.count())
    finally:
        asyncio.run_coroutine_threadsafe(door.close(), loop).result(CALL_TIMEOUT_S)
        asyncio.run_coroutine_threadsafe(store.close(), loop).result(CALL_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def _context(topic: str) -> SerializationContext:
    return SerializationContext(topic, MessageField.VALUE)


def _user_message_class() -> Any:
    """shop.User built by hand, independently of our .proto parser (a generated class would do)."""
    fields = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="shop_user.proto", package="shop", syntax="proto3"
    )
    user = file.message_type.add(name="User")
    user.field.add(name="name", number=1, type=fields.TYPE_STRING, label=fields.LABEL_OPTIONAL)
    user.field.add(name="visits", number=2, type=fields.TYPE_INT64, label=fields.LABEL_OPTIONAL)
    user.field.add(name="tags", number=3, type=fields.TYPE_STRING, label=fields.LABEL_REPEATED)
    badge = user.nested_type.add(name="Badge")
    badge.field.add(name="title", number=1, type=fields.TYPE_STRING, label=fields.LABEL_OPTIONAL)
    user.field.add(
        name="badge",
        number=4,
        type=fields.TYPE_MESSAGE,
        type_name=".shop.User.Badge",
        label=fields.LABEL_OPTIONAL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return GetMessageClass(pool.FindMessageTypeByName("shop.User"))


# --- avro ------------------------------------------------------------------------------------


def test_avro_inline_schema_is_registered_under_topic_value_and_read_by_confluent(
    world: World,
) -> None:
    topic = world.topic()
    written = world.encode(topic, AVRO, USER_AVRO_JSON, schema=USER_AVRO)
    assert world.client.get_latest_version(f"{topic}-value").schema_id == written.schema_id
    assert world.decode(AVRO, written.data) == USER_AVRO_JSON
    read = AvroDeserializer(world.client)(written.data, _context(topic))
    assert read == USER_AVRO_DATUM


def test_avro_by_schema_id_and_by_version_write_the_same_bytes(world: World) -> None:
    topic = world.topic()
    inline = world.encode(topic, AVRO, USER_AVRO_JSON, schema=USER_AVRO)
    by_id = world.encode(topic, AVRO, USER_AVRO_JSON, schema_id=inline.schema_id)
    by_version = world.encode(topic, AVRO, USER_AVRO_JSON, schema_version=1)
    latest = world.encode(topic, AVRO, USER_AVRO_JSON)
    assert inline == by_id == by_version == latest
    again = world.encode(topic, AVRO, USER_AVRO_JSON, schema=USER_AVRO)
    assert again.schema_id == inline.schema_id  # found, not registered twice
    assert world.client.get_versions(f"{topic}-value") == [1]


def test_avro_written_by_confluents_serializer_is_decoded(world: World) -> None:
    topic = world.topic()
    serializer = AvroSerializer(world.client, USER_AVRO)
    data = serializer(USER_AVRO_DATUM, _context(topic))
    assert world.decode(AVRO, data) == USER_AVRO_JSON


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({**USER_AVRO_JSON, "name": 5}, "field 'name'"),
        ({**USER_AVRO_JSON, "age": {"string": "x"}}, "field 'age'"),
        ({**USER_AVRO_JSON, "address": {"city": None}}, "field 'address.city'"),
        ({**USER_AVRO_JSON, "photo": "\u0100"}, "field 'photo'"),
        ({"name": "ann", "photo": "", "address": {}}, "field 'address.city' is missing"),
        ({**USER_AVRO_JSON, "extra": 1}, "no field 'extra'"),
    ],
)
def test_avro_data_that_does_not_match_is_refused_naming_the_field(
    world: World, value: Any, field: str
) -> None:
    with pytest.raises(RecordMismatch, match=field) as refused:
        world.encode(world.topic(), AVRO, value, schema=USER_AVRO)
    assert (refused.value.error_code, refused.value.status) == (42202, 422)


@st.composite
def avro_values(draw: st.DrawFn, schema: Any, namespace: str = "") -> tuple[Any, Any]:
    """A value of `schema` (named types all inline) twice: in Avro's JSON encoding, and as the
    Python datum confluent-kafka's deserializer returns."""
    if isinstance(schema, list):
        branch = draw(st.sampled_from(schema))
        as_json, datum = draw(avro_values(branch, namespace))
        return (None if branch == "null" else {_tag(branch, namespace): as_json}), datum
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind in ("bytes", "fixed"):
        size = schema["size"] if kind == "fixed" else None
        raw = draw(st.binary(min_size=size or 0, max_size=size or 4))
        return raw.decode("latin-1"), raw
    if kind in AVRO_PRIMITIVES:
        datum = draw(AVRO_PRIMITIVES[kind])
        return datum, datum
    if kind == "enum":
        symbol = draw(st.sampled_from(schema["symbols"]))
        return symbol, symbol
    inner = schema.get("namespace", namespace)
    if kind == "array":
        items = draw(st.lists(avro_values(schema["items"], inner), max_size=2))
        return [j for j, _ in items], [d for _, d in items]
    if kind == "map":
        entries = draw(
            st.dictionaries(st.text(max_size=2), avro_values(schema["values"], inner), max_size=2)
        )
        return {k: j for k, (j, _) in entries.items()}, {k: d for k, (_, d) in entries.items()}
    fields = {field["name"]: draw(avro_values(field["type"], inner)) for field in schema["fields"]}
    return {k: j for k, (j, _) in fields.items()}, {k: d for k, (_, d) in fields.items()}


AVRO_PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    # quarters: exact in 32 bits and written back with the digits they were given
    "float": st.integers(-4_000, 4_000).map(lambda n: n / 4),
    "double": st.floats(allow_nan=False, allow_infinity=False),
    "string": st.text(max_size=4),
}


def _tag(branch: Any, namespace: str) -> str:
    """The name Avro's JSON encoding gives a union branch: a named type's full name."""
    if isinstance(branch, str):
        return branch
    if branch["type"] in ("record", "enum", "fixed"):
        space = branch.get("namespace", namespace)
        return f"{space}.{branch['name']}" if space else str(branch["name"])
    return str(branch["type"])


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_avro_round_trip_over_generated_record_schemas(world: World, data: st.DataObject) -> None:
    schema = deduplicate_names(data.draw(records(depth=1)))
    as_json, datum = data.draw(avro_values(schema))
    topic = world.topic()
    written = world.encode(topic, AVRO, as_json, schema=json.dumps(schema))
    assert world.decode(AVRO, written.data) == as_json
    if len(written.data) > WIRE_HEADER_BYTES:  # confluent-kafka refuses an empty datum
        assert AvroDeserializer(world.client)(written.data, _context(topic)) == datum


# --- protobuf --------------------------------------------------------------------------------


def test_protobuf_inline_and_by_id_are_read_by_confluents_deserializer(world: World) -> None:
    topic = world.topic()
    inline = world.encode(topic, PROTOBUF, USER_PROTO_JSON, schema=USER_PROTO)
    by_id = world.encode(topic, PROTOBUF, USER_PROTO_JSON, schema_id=inline.schema_id)
    assert by_id == inline
    assert inline.data[5:6] == b"\x00"  # the first message's indexes: the single byte 0
    assert world.decode(PROTOBUF, inline.data) == USER_PROTO_JSON
    deserializer = ProtobufDeserializer(_user_message_class(), {}, world.client)
    read = deserializer(inline.data, _context(topic))
    assert json_format.MessageToDict(read) == USER_PROTO_JSON


def test_protobuf_named_nested_message_carries_its_indexes(world: World) -> None:
    topic = world.topic()
    written = world.encode(
        topic, PROTOBUF, {"title": "gold"}, schema=USER_PROTO, message_name="shop.User.Badge"
    )
    assert written.data[5:8] == b"\x04\x00\x00"  # two indexes, [0, 0], zig-zag encoded
    assert world.decode(PROTOBUF, written.data) == {"title": "gold"}
    badge = _user_message_class().DESCRIPTOR.nested_types_by_name["Badge"]
    read = ProtobufDeserializer(GetMessageClass(badge), {}, world.client)(
        written.data, _context(topic)
    )
    assert read.title == "gold"


def test_protobuf_decode_renders_default_values(world: World) -> None:
    written = world.encode(world.topic(), PROTOBUF, {"name": "ann"}, schema=USER_PROTO)
    assert world.decode(PROTOBUF, written.data) == {"name": "ann", "visits": "0", "tags": []}


def test_protobuf_data_that_does_not_match_is_refused_naming_the_field(world: World) -> None:
    with pytest.raises(RecordMismatch, match="visits"):
        world.encode(world.topic(), PROTOBUF, {"visits": "many"}, schema=USER_PROTO)
    with pytest.raises(RecordMismatch, match=r"no message named 'shop\.Nope'"):
        world.encode(world.topic(), PROTOBUF, {}, schema=USER_PROTO, message_name="shop.Nope")


# --- json schema -----------------------------------------------------------------------------


def test_json_schema_inline_and_by_id_are_read_by_confluents_deserializer(world: World) -> None:
    topic = world.topic()
    value = {"name": "ann", "age": 41}
    inline = world.encode(topic, JSONSCHEMA, value, schema=USER_JSON_SCHEMA, part="key")
    assert world.client.get_latest_version(f"{topic}-key").schema_id == inline.schema_id
    by_id = world.encode(topic, JSONSCHEMA, value, schema_id=inline.schema_id, part="key")
    assert by_id == inline
    assert world.decode(JSONSCHEMA, inline.data) == value
    read = JSONDeserializer(None, schema_registry_client=world.client)(
        inline.data, SerializationContext(topic, MessageField.KEY)
    )
    assert read == value


def test_json_schema_data_that_does_not_match_is_refused_naming_the_field(world: World) -> None:
    with pytest.raises(RecordMismatch, match=r"\$\.age.*minimum"):
        world.encode(world.topic(), JSONSCHEMA, {"name": "a", "age": -1}, schema=USER_JSON_SCHEMA)


# --- schemas that cannot be used -------------------------------------------------------------


def test_an_unknown_schema_id_is_not_found(world: World) -> None:
    with pytest.raises(SchemaNotFound) as refused:
        world.encode(world.topic(), AVRO, USER_AVRO_JSON, schema_id=999_999)
    assert (refused.value.error_code, refused.value.status) == (40403, 404)
    with pytest.raises(SchemaNotFound):
        world.decode(AVRO, b"\x00" + (999_999).to_bytes(4, "big") + b"\x00")


def test_an_id_registered_by_another_org_is_not_visible(world: World) -> None:
    topic = world.topic()
    acme = world.encode(topic, AVRO, USER_AVRO_JSON, schema=USER_AVRO, org="acme")
    with pytest.raises(SchemaNotFound, match=f"Schema {acme.schema_id} not found"):
        world.encode(topic, AVRO, USER_AVRO_JSON, schema_id=acme.schema_id, org="globex")
    with pytest.raises(SchemaNotFound):
        world.decode(AVRO, acme.data, org="globex")
    assert world.decode(AVRO, acme.data, org="acme") == USER_AVRO_JSON


def test_a_missing_subject_or_version_is_not_found(world: World) -> None:
    topic = world.topic()
    with pytest.raises(SchemaNotFound) as no_subject:
        world.encode(topic, AVRO, USER_AVRO_JSON)
    assert no_subject.value.error_code == 40401
    world.encode(topic, AVRO, USER_AVRO_JSON, schema=USER_AVRO)
    with pytest.raises(SchemaNotFound) as no_version:
        world.encode(topic, AVRO, USER_AVRO_JSON, schema_version=2)
    assert no_version.value.error_code == 40402


def test_an_invalid_schema_or_one_of_another_type_is_refused(world: World) -> None:
    with pytest.raises(SchemaInvalid) as invalid:
        world.encode(world.topic(), AVRO, {}, schema='{"type": "record"')
    assert (invalid.value.error_code, invalid.value.status) == (42201, 422)
    proto = world.encode(world.topic(), PROTOBUF, {}, schema=USER_PROTO)
    with pytest.raises(SchemaInvalid, match="PROTOBUF"):
        world.encode(world.topic(), AVRO, {}, schema_id=proto.schema_id)


def test_a_schema_and_a_schema_id_together_are_refused(world: World) -> None:
    with pytest.raises(EmbeddedRequestInvalid, match="schema and schema_id"):
        world.encode(world.topic(), AVRO, {}, schema=USER_AVRO, schema_id=1)
    with pytest.raises(EmbeddedRequestInvalid, match="Only protobuf"):
        world.encode(world.topic(), AVRO, {}, schema=USER_AVRO, message_name="shop.User")


def test_records_not_in_the_wire_format_are_undecodable(world: World) -> None:
    with pytest.raises(UndecodableRecord, match="magic byte 0"):
        world.decode(AVRO, b"plain")
    written = world.encode(world.topic(), AVRO, USER_AVRO_JSON, schema=USER_AVRO)
    with pytest.raises(UndecodableRecord, match="left over"):
        world.decode(AVRO, written.data + b"\x00")


# --- binary and json; bounds -----------------------------------------------------------------


def test_binary_and_json_round_trip_without_a_schema(world: World) -> None:
    raw = bytes(range(256))
    binary = world.encode("t", EmbeddedFormat.BINARY, base64.b64encode(raw).decode())
    assert (binary.data, binary.schema_id) == (raw, None)
    assert world.decode(EmbeddedFormat.BINARY, raw) == base64.b64encode(raw).decode()
    as_json = world.encode("t", EmbeddedFormat.JSON, {"a": [1, "é", None]})
    assert as_json.data == '{"a":[1,"é",null]}'.encode()
    assert world.decode(EmbeddedFormat.JSON, as_json.data) == {"a": [1, "é", None]}
    with pytest.raises(RecordMismatch, match="not base64"):
        world.encode("t", EmbeddedFormat.BINARY, "not base64!")


def test_string_is_utf8_text(world: World) -> None:
    written = world.encode("t", EmbeddedFormat.STRING, "é\u0000x")
    assert (written.data, written.schema_id) == ("é\u0000x".encode(), None)
    assert world.decode(EmbeddedFormat.STRING, written.data) == "é\u0000x"
    with pytest.raises(RecordMismatch, match="JSON text, not int"):
        world.encode("t", EmbeddedFormat.STRING, 5)
    with pytest.raises(RecordMismatch, match="not Unicode"):
        world.encode("t", EmbeddedFormat.STRING, "\ud800")
    with pytest.raises(RecordMismatch, match="not Unicode"):
        world.encode("t", EmbeddedFormat.JSON, ["\ud800"])
    with pytest.raises(UndecodableRecord, match="not UTF-8"):
        world.decode(EmbeddedFormat.STRING, b"\xff")


def test_the_format_of_a_named_schema(world: World) -> None:
    topic = world.topic()
    avro = world.encode(topic, AVRO, USER_AVRO_JSON, schema=USER_AVRO)
    proto = world.encode(topic, PROTOBUF, USER_PROTO_JSON, schema=USER_PROTO, part="key")

    def format_of(**options: Any) -> EmbeddedFormat:
        part = options.pop("part", "value")
        return world.call(world.formats.schema_format(DEFAULT_ORG, topic, part, **options))

    assert format_of(schema_id=avro.schema_id) == AVRO
    assert format_of(schema_id=proto.schema_id) == PROTOBUF
    assert format_of(part="key") == PROTOBUF  # the subject's latest
    assert format_of(schema_version=1, subject=f"{topic}-value") == AVRO
    with pytest.raises(SchemaNotFound):
        world.call(world.formats.schema_format("nosy", topic, "value", schema_id=avro.schema_id))


def test_visible_schemas_ask_the_registry_once_per_id(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = world.encode(world.topic(), AVRO, USER_AVRO_JSON, schema=USER_AVRO)
    asked: list[int] = []
    versions = world.registry.schema_versions

    async def counted(schema_id: int, **options: Any) -> Any:
        asked.append(schema_id)
        return await versions(schema_id, **options)

    monkeypatch.setattr(world.registry, "schema_versions", counted)
    visible = VisibleSchemas(DEFAULT_ORG)
    for _ in range(5):
        assert world.call(world.formats.decode(DEFAULT_ORG, AVRO, written.data, visible)) == (
            USER_AVRO_JSON
        )
    assert asked == [written.schema_id]
    world.decode(AVRO, written.data)  # without one: asked each time
    assert asked == [written.schema_id] * 2
    with pytest.raises(ValueError, match="org acme"):
        world.call(world.formats.decode(DEFAULT_ORG, AVRO, written.data, VisibleSchemas("acme")))
    nosy = VisibleSchemas("nosy")  # an org that never wrote this schema
    with pytest.raises(SchemaNotFound):
        world.call(world.formats.decode("nosy", AVRO, written.data, nosy))
    assert written.schema_id not in nosy


@pytest.mark.parametrize("fmt", list(EmbeddedFormat))
def test_a_null_part_is_a_null_record_part_in_every_format(
    world: World, fmt: EmbeddedFormat
) -> None:
    assert world.encode("t", fmt, None).data is None
    assert world.decode(fmt, None) is None


def test_an_encoded_part_over_the_bound_is_refused(world: World) -> None:
    small = EmbeddedFormats(world.registry, encoded_part_bytes_max=8)
    with pytest.raises(RecordPartTooLarge, match="more than the 8"):
        world.call(small.encode(DEFAULT_ORG, "t", EmbeddedFormat.JSON, "value", "x" * 8))
