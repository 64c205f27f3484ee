"""Protobuf schemas: `.proto` text or base64 of a serialized FileDescriptorProto (what
confluent-kafka's serializer sends) normalized to one descriptor, validated by building it into
a DescriptorPool, served as canonical `.proto` text or (`?format=serialized`) as base64 of the
descriptor; and Confluent's Protobuf compatibility rules.

Normalization: either input is rendered to text and read back, so text and base64 of one schema
store the same descriptor and text. That text is already normal (types fully qualified, options
in one order, one layout), so `normalize` changes nothing: messages, nested messages and fields
keep their declaration order, because Confluent's message indexes count nested messages (map
entries included) in declaration order, and reordering fields would reorder map entries.
The registered file is called `schema.proto`; a dependency is called by its import path. The
well-known `google/protobuf/*.proto` files and Confluent's `confluent/meta.proto` and
`confluent/type/decimal.proto` are always available (clients never register them); other
imports must be registered dependencies. `google/type/*.proto` is not preloaded.

Compatibility, reader against writer (Confluent's rules; fields match by number, messages and
enums by full name):
- PACKAGE_CHANGED: the package differs.
- MESSAGE_REMOVED: a message the writer's file declares is missing from the reader's.
- FIELD_KIND_CHANGED: a field changes between scalar, message and enum.
- FIELD_SCALAR_KIND_CHANGED: a scalar changes outside its wire-compatible group: (int32,
  uint32, int64, uint64, bool), (sint32, sint64), (fixed32, sfixed32), (fixed64, sfixed64),
  (string, bytes).
- FIELD_NAMED_TYPE_CHANGED: a message or enum field names another type (a map field's entry is
  compared by its key and value instead of its name).
- FIELD_NUMERIC_LABEL_CHANGED: a numeric or enum field changes between repeated and singular
  (string, bytes and message fields may: their encodings are the same).
- REQUIRED_FIELD_ADDED / REQUIRED_FIELD_REMOVED: proto2 `required`, by number.
- ONEOF_FIELD_REMOVED: a field of a writer oneof is missing from the reader.
- FIELD_MOVED_TO_EXISTING_ONEOF: a field outside any oneof moves into a oneof the writer had.
- MULTIPLE_FIELDS_MOVED_TO_ONEOF: a new oneof gathers two or more existing fields.
- ENUM_CONST_CHANGED: an enum value keeps its name and changes its number.
Compatible: adding or removing optional/repeated fields (unknown fields are skipped), renaming
fields, adding messages, enums and enum values, removing enum values, moving a field out of a
oneof, changing services, changing the syntax (proto2 and proto3 share the wire format; what a
syntax change alters, such as required fields, is checked field by field).
"""

from __future__ import annotations

import base64
import binascii
import functools
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
_WIRE_GROUPS: Mapping[int, str] = {
    **dict.fromkeys(
        (
            FieldProto.TYPE_INT32,
            FieldProto.TYPE_UINT32,
            FieldProto.TYPE_INT64,
            FieldProto.TYPE_UINT64,
            FieldProto.TYPE_BOOL,
        ),
        "varint",
    ),
    **dict.fromkeys((FieldProto.TYPE_SINT32, FieldProto.TYPE_SINT64), "zigzag"),
    **dict.fromkeys((FieldProto.TYPE_FIXED32, FieldProto.TYPE_SFIXED32), "fixed32"),
    **dict.fromkeys((FieldProto.TYPE_FIXED64, FieldProto.TYPE_SFIXED64), "fixed64"),
    **dict.fromkeys((FieldProto.TYPE_STRING, FieldProto.TYPE_BYTES), "length-delimited"),
    FieldProto.TYPE_FLOAT: "float",
    FieldProto.TYPE_DOUBLE: "double",
}
_LENGTH_DELIMITED = {FieldProto.TYPE_STRING, FieldProto.TYPE_BYTES, FieldProto.TYPE_MESSAGE}


@dataclass(frozen=True, eq=False)
class ProtobufSchema(ParsedSchema):
    descriptor: descriptor_pb2.FileDescriptorProto
    text: str
    schema_type: SchemaType = field(default=SchemaType.PROTOBUF, init=False)

    def canonical_text(self) -> str:
        return self.text

    def render(self, fmt: str | None) -> str:
        if fmt == SERIALIZED:
            return base64.standard_b64encode(self.descriptor.SerializeToString()).decode("ascii")
        return self.text

    def reader_problems(self, writer: ParsedSchema) -> list[Problem]:
        assert isinstance(writer, ProtobufSchema)
        return _file_problems(self.descriptor, writer.descriptor)


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
    return ProtobufSchema(descriptor, canonical)


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


# --- compatibility


def _file_problems(reader: Any, writer: Any) -> list[Problem]:
    problems = []
    if reader.package != writer.package:
        problems.append(
            Problem("PACKAGE_CHANGED", "/package", f"{writer.package!r} became {reader.package!r}")
        )
    reader_messages, writer_messages = _messages(reader), _messages(writer)
    for name, writer_message in writer_messages.items():
        if writer_message.options.map_entry:
            continue  # compared through its map field, whatever the field is called now
        reader_message = reader_messages.get(name)
        if reader_message is None:
            problems.append(Problem("MESSAGE_REMOVED", f"/{name}", f"message {name} is gone"))
            continue
        problems += _message_problems(
            reader_message, writer_message, name, reader_messages, writer_messages
        )
    return problems + _enum_problems(_enums(reader), _enums(writer))


def _messages(descriptor: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def walk(messages: Any, prefix: str) -> None:
        for message in messages:
            full = prefix + message.name
            found[full] = message
            walk(message.nested_type, full + ".")

    walk(descriptor.message_type, f"{descriptor.package}." if descriptor.package else "")
    return found


def _enums(descriptor: Any) -> dict[str, Any]:
    prefix = f"{descriptor.package}." if descriptor.package else ""
    found = {prefix + enum.name: enum for enum in descriptor.enum_type}
    for name, message in _messages(descriptor).items():
        for enum in message.enum_type:
            found[f"{name}.{enum.name}"] = enum
    return found


def _message_problems(
    reader: Any,
    writer: Any,
    name: str,
    reader_messages: Mapping[str, Any],
    writer_messages: Mapping[str, Any],
) -> list[Problem]:
    reader_fields = {item.number: item for item in reader.field}
    writer_fields = {item.number: item for item in writer.field}
    problems: list[Problem] = []
    for number, writer_field in writer_fields.items():
        where = f"/{name}/{number}"
        reader_field = reader_fields.get(number)
        if reader_field is None:
            problems += _removed_field_problems(writer, writer_field, where)
            continue
        problems += _field_problems(reader_field, writer_field, where)
        problems += _named_type_problems(
            reader_field, writer_field, where, reader_messages, writer_messages
        )
    for number, reader_field in reader_fields.items():
        if reader_field.label == FieldProto.LABEL_REQUIRED and (
            number not in writer_fields or writer_fields[number].label != FieldProto.LABEL_REQUIRED
        ):
            problems.append(
                Problem(
                    "REQUIRED_FIELD_ADDED",
                    f"/{name}/{number}",
                    f"the reader requires field {reader_field.name!r}",
                )
            )
    return problems + _oneof_move_problems(reader, writer, name)


def _removed_field_problems(writer: Any, writer_field: Any, where: str) -> list[Problem]:
    problems = []
    if writer_field.label == FieldProto.LABEL_REQUIRED:
        problems.append(
            Problem("REQUIRED_FIELD_REMOVED", where, f"required {writer_field.name!r} is gone")
        )
    if _oneof_name(writer, writer_field) is not None:
        problems.append(
            Problem("ONEOF_FIELD_REMOVED", where, f"oneof member {writer_field.name!r} is gone")
        )
    return problems


def _field_kind(item: Any) -> str:
    if item.type in (FieldProto.TYPE_MESSAGE, FieldProto.TYPE_GROUP):
        return "message"
    if item.type == FieldProto.TYPE_ENUM:
        return "enum"
    return "scalar"


def _field_problems(reader: Any, writer: Any, where: str) -> list[Problem]:
    problems = []
    reader_kind, writer_kind = _field_kind(reader), _field_kind(writer)
    if reader_kind != writer_kind:
        detail = f"{writer.name!r} was a {writer_kind}, is a {reader_kind}"
        return [Problem("FIELD_KIND_CHANGED", where, detail)]
    if reader_kind == "scalar" and _WIRE_GROUPS[reader.type] != _WIRE_GROUPS[writer.type]:
        detail = f"{writer.name!r} changed to a wire-incompatible scalar type"
        problems.append(Problem("FIELD_SCALAR_KIND_CHANGED", where, detail))
    repeated_changed = (reader.label == FieldProto.LABEL_REPEATED) != (
        writer.label == FieldProto.LABEL_REPEATED
    )
    if repeated_changed and not {reader.type, writer.type} <= _LENGTH_DELIMITED:
        detail = f"numeric {writer.name!r} changed between repeated and singular"
        problems.append(Problem("FIELD_NUMERIC_LABEL_CHANGED", where, detail))
    if writer.label == FieldProto.LABEL_REQUIRED and reader.label != FieldProto.LABEL_REQUIRED:
        detail = f"{writer.name!r} is no longer required"
        problems.append(Problem("REQUIRED_FIELD_REMOVED", where, detail))
    return problems


def _named_type_problems(
    reader: Any,
    writer: Any,
    where: str,
    reader_messages: Mapping[str, Any],
    writer_messages: Mapping[str, Any],
) -> list[Problem]:
    if _field_kind(reader) == "scalar" or _field_kind(reader) != _field_kind(writer):
        return []
    reader_entry = reader_messages.get(reader.type_name[1:])
    writer_entry = writer_messages.get(writer.type_name[1:])
    if (
        reader_entry is not None
        and writer_entry is not None
        and _is_map_entry(reader_entry)
        and _is_map_entry(writer_entry)
    ):
        problems = []
        for reader_part, writer_part in zip(reader_entry.field, writer_entry.field, strict=True):
            problems += _field_problems(reader_part, writer_part, f"{where}/{reader_part.name}")
            problems += _named_type_problems(
                reader_part, writer_part, where, reader_messages, writer_messages
            )
        return problems
    if reader.type_name == writer.type_name:
        return []
    detail = f"{writer.name!r} was {writer.type_name[1:]}, is {reader.type_name[1:]}"
    return [Problem("FIELD_NAMED_TYPE_CHANGED", where, detail)]


def _is_map_entry(message: Any) -> bool:
    return message is not None and bool(message.options.map_entry)


def _oneof_name(message: Any, item: Any) -> str | None:
    """The real (not proto3-optional synthetic) oneof a field belongs to."""
    if not item.HasField("oneof_index") or item.proto3_optional:
        return None
    return str(message.oneof_decl[item.oneof_index].name)


def _oneof_move_problems(reader: Any, writer: Any, name: str) -> list[Problem]:
    writer_fields = {item.number: item for item in writer.field}
    writer_oneofs = {
        oneof for item in writer.field if (oneof := _oneof_name(writer, item)) is not None
    }
    moved_into_new: dict[str, int] = {}
    problems = []
    for item in reader.field:
        oneof = _oneof_name(reader, item)
        before = writer_fields.get(item.number)
        if oneof is None or before is None or _oneof_name(writer, before) is not None:
            continue
        if oneof in writer_oneofs:
            detail = f"{item.name!r} moved into the existing oneof {oneof!r}"
            problems.append(
                Problem("FIELD_MOVED_TO_EXISTING_ONEOF", f"/{name}/{item.number}", detail)
            )
        else:
            moved_into_new[oneof] = moved_into_new.get(oneof, 0) + 1
    for oneof, count in moved_into_new.items():
        if count > 1:
            detail = f"{count} existing fields moved into the new oneof {oneof!r}"
            problems.append(Problem("MULTIPLE_FIELDS_MOVED_TO_ONEOF", f"/{name}/{oneof}", detail))
    return problems


def _enum_problems(
    reader_enums: Mapping[str, Any], writer_enums: Mapping[str, Any]
) -> list[Problem]:
    problems = []
    for name, writer_enum in writer_enums.items():
        reader_enum = reader_enums.get(name)
        if reader_enum is None:
            continue
        numbers = {value.name: value.number for value in reader_enum.value}
        for value in writer_enum.value:
            if value.name in numbers and numbers[value.name] != value.number:
                detail = f"{value.name} was {value.number}, is {numbers[value.name]}"
                problems.append(Problem("ENUM_CONST_CHANGED", f"/{name}/{value.name}", detail))
    return problems
