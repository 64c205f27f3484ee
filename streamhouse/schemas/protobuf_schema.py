"""Protobuf schemas: `.proto` text or base64 of a serialized FileDescriptorProto (what
confluent-kafka's serializer sends) normalized to one descriptor, validated by building it into
a DescriptorPool, and served as canonical `.proto` text or (`?format=serialized`) as base64 of
the descriptor.

Normalization: either input is rendered to text and read back, so text and base64 of one schema
store the same descriptor and text. That text is already normal (types fully qualified, options
in one order, one layout), so `normalize` changes nothing: messages, nested messages and fields
keep their declaration order, because Confluent's message indexes count nested messages (map
entries included) in declaration order, and reordering fields would reorder map entries.
The registered file is called `schema.proto`; a dependency is called by its import path. The
well-known `google/protobuf/*.proto` files, the common `google/type/*.proto` ones and
Confluent's `confluent/meta.proto` and `confluent/type/decimal.proto` are always available
(clients never register them); other imports must be dependencies (confluent-kafka also treats
`confluent/type/variant.proto` as built in: a schema importing it must name it as a reference).

Compatibility: see protobuf_compatibility.
"""

from __future__ import annotations

import base64
import binascii
import functools
import importlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import (
    any_pb2,
    api_pb2,
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    empty_pb2,
    field_mask_pb2,
    source_context_pb2,
    struct_pb2,
    timestamp_pb2,
    type_pb2,
    wrappers_pb2,
)
from google.protobuf.message import DecodeError

from streamhouse.schemas.model import Dependency, InvalidSchema, ParsedSchema, Problem, SchemaType
from streamhouse.schemas.protobuf_compatibility import reader_problems
from streamhouse.schemas.protobuf_render import render_descriptor
from streamhouse.schemas.protobuf_text import declared_symbols, text_to_descriptor

MAIN_FILE = "schema.proto"
SERIALIZED = "serialized"
FieldProto = descriptor_pb2.FieldDescriptorProto
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
# google/protobuf/source_context.proto and type.proto come before api.proto, which imports them.
_WELL_KNOWN = (
    any_pb2,
    source_context_pb2,
    type_pb2,
    api_pb2,
    descriptor_pb2,
    duration_pb2,
    empty_pb2,
    field_mask_pb2,
    struct_pb2,
    timestamp_pb2,
    wrappers_pb2,
    # google/type/*.proto, which confluent-kafka's serializer also never registers
    *(
        importlib.import_module(f"google.type.{name}_pb2")
        for name in (
            "calendar_period",
            "color",
            "date",
            "datetime",
            "dayofweek",
            "decimal",
            "expr",
            "fraction",
            "interval",
            "latlng",
            "localized_text",
            "money",
            "month",
            "phone_number",
            "postal_address",
            "quaternion",
            "timeofday",
        )
    ),
)
_CONFLUENT_META = """
syntax = "proto3";
package confluent;
import "google/protobuf/descriptor.proto";
option go_package = "../confluent";
message Meta {
  string doc = 1;
  map<string, string> params = 2;
  repeated string tags = 3;
  repeated Rule rules = 4;
}
message Rule {
  string name = 1;
  string doc = 2;
  string expr = 3;
  string sql = 4;
}
extend google.protobuf.FileOptions { Meta file_meta = 1088; }
extend google.protobuf.MessageOptions { Meta message_meta = 1088; }
extend google.protobuf.FieldOptions { Meta field_meta = 1088; }
extend google.protobuf.EnumOptions { Meta enum_meta = 1088; }
extend google.protobuf.EnumValueOptions { Meta enum_value_meta = 1088; }
"""
_CONFLUENT_DECIMAL = """
syntax = "proto3";
package confluent.type;
message Decimal {
  bytes value = 1;
  uint32 precision = 2;
  int32 scale = 3;
}
"""


@dataclass(frozen=True, eq=False)
class ProtobufSchema(ParsedSchema):
    descriptor: descriptor_pb2.FileDescriptorProto
    text: str
    # the built file with its imports: message classes for the schema's data come from it
    pool: descriptor_pool.DescriptorPool
    schema_type: SchemaType = field(default=SchemaType.PROTOBUF, init=False)

    def canonical_text(self) -> str:
        return self.text

    def render(self, fmt: str | None) -> str:
        if fmt == SERIALIZED:
            return base64.standard_b64encode(self.descriptor.SerializeToString()).decode("ascii")
        return self.text

    def reader_problems(self, writer: ParsedSchema) -> list[Problem]:
        assert isinstance(writer, ProtobufSchema)
        return reader_problems(self.descriptor, writer.descriptor)


@dataclass(frozen=True)
class _Builtin:
    name: str
    serialized: bytes
    symbols: Mapping[str, str]


@functools.cache
def _builtins() -> tuple[_Builtin, ...]:
    found = []
    visible: dict[str, str] = {}
    for module in _WELL_KNOWN:
        serialized = module.DESCRIPTOR.serialized_pb
        descriptor = descriptor_pb2.FileDescriptorProto.FromString(serialized)
        found.append(_Builtin(descriptor.name, serialized, declared_symbols(descriptor)))
        visible.update(found[-1].symbols)
    for name, text in (
        ("confluent/meta.proto", _CONFLUENT_META),
        ("confluent/type/decimal.proto", _CONFLUENT_DECIMAL),
    ):
        descriptor = text_to_descriptor(text, name, visible)
        found.append(_Builtin(name, descriptor.SerializeToString(), declared_symbols(descriptor)))
    return tuple(found)


def builtin_names() -> frozenset[str]:
    """Import paths every Protobuf schema may use without registering them."""
    return frozenset(builtin.name for builtin in _builtins())


def parse_protobuf(
    text: str, dependencies: Sequence[Dependency], normalize: bool
) -> ProtobufSchema:
    pool = descriptor_pool.DescriptorPool()
    visible: dict[str, str] = {}
    for builtin in _builtins():
        pool.AddSerializedFile(builtin.serialized)
        visible.update(builtin.symbols)
    names = builtin_names()
    for dependency in dependencies:
        if dependency.name in names:
            continue
        descriptor, _ = _normalized(dependency.text, dependency.name, visible)
        _add(pool, descriptor, f"dependency {dependency.name!r}")
        visible.update(declared_symbols(descriptor))
    del normalize  # the canonical text is already the normal form (see the module docstring)
    descriptor, canonical = _normalized(text, MAIN_FILE, visible)
    _add(pool, descriptor, "schema")
    return ProtobufSchema(descriptor, canonical, pool)


def _normalized(
    text: str, name: str, visible: Mapping[str, str]
) -> tuple[descriptor_pb2.FileDescriptorProto, str]:
    """The descriptor and canonical text of either input form, via the rendered text."""
    given = _from_base64(text, name)
    if given is None:
        given = text_to_descriptor(text, name, visible)
    canonical = render_descriptor(given)
    descriptor = text_to_descriptor(canonical, name, visible)
    return descriptor, canonical


def _from_base64(text: str, name: str) -> descriptor_pb2.FileDescriptorProto | None:
    compact = "".join(text.split())
    if not compact or not _BASE64.fullmatch(compact):
        return None
    try:
        descriptor = descriptor_pb2.FileDescriptorProto.FromString(
            base64.b64decode(compact, validate=True)
        )
    except (binascii.Error, DecodeError) as error:
        raise InvalidSchema(
            f"invalid Protobuf schema: bad serialized descriptor: {error}"
        ) from error
    descriptor.name = name
    _drop_default_json_names(descriptor.message_type)
    return descriptor


def _drop_default_json_names(messages: Any) -> None:
    """protoc fills json_name in for every field; only a chosen one is part of the schema."""
    for message in messages:
        for item in message.field:
            if item.json_name == _default_json_name(item.name):
                item.ClearField("json_name")
        _drop_default_json_names(message.nested_type)


def _default_json_name(name: str) -> str:
    parts = name.split("_")
    return parts[0] + "".join(part[:1].upper() + part[1:] for part in parts[1:])


def _add(pool: descriptor_pool.DescriptorPool, descriptor: Any, what: str) -> None:
    try:
        pool.AddSerializedFile(descriptor.SerializeToString())
    except Exception as error:  # the pool raises TypeError or KeyError, by implementation
        raise InvalidSchema(f"invalid Protobuf {what}: {error}") from error
