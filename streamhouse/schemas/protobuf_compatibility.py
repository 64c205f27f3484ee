"""Confluent's Protobuf compatibility rules over two normalized FileDescriptorProtos.

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

from collections.abc import Mapping
from typing import Any

from google.protobuf import descriptor_pb2

from streamhouse.schemas.model import Problem

FieldProto = descriptor_pb2.FieldDescriptorProto
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


def reader_problems(
    reader: descriptor_pb2.FileDescriptorProto, writer: descriptor_pb2.FileDescriptorProto
) -> list[Problem]:
    """Why data written with `writer` may not be read as meant with `reader`."""
    return _file_problems(reader, writer)


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
