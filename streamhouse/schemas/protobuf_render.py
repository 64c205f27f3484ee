"""A FileDescriptorProto rendered as `.proto` text: the canonical text of a Protobuf schema.

Stable and declaration-order preserving (Confluent's message indexes count messages in
declaration order), with every type name fully qualified (`.pkg.Msg`) so the text means the
same wherever it is read, and written so it parses back to the same descriptor. Per message:
options, fields (oneof members inside their `oneof` block, placed at the first member; map
fields as `map<K, V>`; groups as `group` blocks) with nested messages among them where their
order requires it, the other nested messages, enums, extension ranges, reserved ranges and
names, then extensions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf import descriptor_pb2

from streamhouse.schemas.protobuf_text import FIELD_NUMBER_END, SCALARS

FieldProto = descriptor_pb2.FieldDescriptorProto
SCALAR_NAMES = {number: name for name, number in SCALARS.items()}
LABEL_WORDS = {FieldProto.LABEL_REPEATED: "repeated", FieldProto.LABEL_REQUIRED: "required"}
INDENT = "  "


def render_descriptor(descriptor: descriptor_pb2.FileDescriptorProto) -> str:
    proto3 = descriptor.syntax == "proto3"
    lines = [f'syntax = "{descriptor.syntax or "proto2"}";']
    if descriptor.package:
        lines.append(f"package {descriptor.package};")
    for index, dependency in enumerate(descriptor.dependency):
        modifier = ""
        if index in descriptor.public_dependency:
            modifier = "public "
        elif index in descriptor.weak_dependency:
            modifier = "weak "
        lines.append(f"import {modifier}{_quoted(dependency)};")
    lines += _option_lines(descriptor.options, "")
    renderer = _Renderer(proto3)
    for message in descriptor.message_type:
        lines += renderer.message(message, "")
    for enum in descriptor.enum_type:
        lines += renderer.enum(enum, "")
    lines += renderer.extensions(descriptor.extension, "")
    for service in descriptor.service:
        lines += _service(service)
    return "\n".join(lines) + "\n"


class _Renderer:
    def __init__(self, proto3: bool) -> None:
        self._proto3 = proto3

    def message(self, message: Any, indent: str) -> list[str]:
        inner = indent + INDENT
        lines = [f"{indent}message {message.name} {{"]
        lines += self._body(message, inner)
        return [*lines, f"{indent}}}"]

    def _body(self, message: Any, inner: str) -> list[str]:
        lines = _option_lines(message.options, inner, skip=("map_entry",))
        lines += self._fields_and_nested(message, inner)
        for enum in message.enum_type:
            lines += self.enum(enum, inner)
        for extension_range in message.extension_range:
            span = _span(extension_range.start, extension_range.end - 1, FIELD_NUMBER_END - 1)
            lines.append(f"{inner}extensions {span};")
        for reserved in message.reserved_range:
            span = _span(reserved.start, reserved.end - 1, FIELD_NUMBER_END - 1)
            lines.append(f"{inner}reserved {span};")
        for name in message.reserved_name:
            lines.append(f"{inner}reserved {_quoted(name)};")
        lines += self.extensions(message.extension, inner)
        return lines

    def _fields_and_nested(self, message: Any, inner: str) -> list[str]:
        """Fields in their order, nested messages in theirs: a nested message is written before
        the map or group field whose own nested type follows it, so reading the text back
        gives both orders again (nested-message indexes are part of Confluent's wire format)."""
        hidden = _hidden_nested(message)
        order = [nested.name for nested in message.nested_type]
        written: set[str] = set()

        def nested_before(name: str | None) -> list[str]:
            limit = order.index(name) if name in order else len(order)
            lines: list[str] = []
            for nested in message.nested_type[:limit]:
                if nested.name not in hidden and nested.name not in written:
                    written.add(nested.name)
                    lines += self.message(nested, inner)
            return lines

        lines: list[str] = []
        for oneof_index, members in _field_runs(message):
            own_types = [_nested_name(member) for member in members]
            tied = [name for name in own_types if name in hidden]
            if tied:
                lines += nested_before(tied[0])
            if oneof_index is None:
                lines += self._field(message, members[0], inner, in_oneof=False)
            else:
                lines += self._oneof(message, oneof_index, members, inner)
        return lines + nested_before(None)

    def _oneof(self, message: Any, index: int, fields: list[Any], inner: str) -> list[str]:
        oneof = message.oneof_decl[index]
        lines = [f"{inner}oneof {oneof.name} {{"]
        lines += _option_lines(oneof.options, inner + INDENT)
        for item in fields:
            lines += self._field(message, item, inner + INDENT, in_oneof=True)
        return [*lines, f"{inner}}}"]

    def _field(self, message: Any, item: Any, inner: str, in_oneof: bool) -> list[str]:
        options = _field_options(item)
        entry = _nested_named(message, item.type_name)
        if entry is not None and entry.options.map_entry:
            key, value = entry.field[0], entry.field[1]
            head = f"map<{_type_of(key)}, {_type_of(value)}> {item.name}"
            return [f"{inner}{head} = {item.number}{options};"]
        label = "" if in_oneof else self._label(item)
        if item.type == FieldProto.TYPE_GROUP and entry is not None:
            lines = [f"{inner}{label}group {entry.name} = {item.number}{options} {{"]
            lines += self._body(entry, inner + INDENT)
            return [*lines, f"{inner}}}"]
        return [f"{inner}{label}{_type_of(item)} {item.name} = {item.number}{options};"]

    def _label(self, item: Any) -> str:
        word = LABEL_WORDS.get(item.label)
        if word is not None:
            return word + " "
        if item.proto3_optional or not self._proto3:
            return "optional "
        return ""

    def enum(self, enum: Any, indent: str) -> list[str]:
        inner = indent + INDENT
        lines = [f"{indent}enum {enum.name} {{"]
        lines += _option_lines(enum.options, inner)
        for value in enum.value:
            lines.append(f"{inner}{value.name} = {value.number}{_compact_options(value.options)};")
        for reserved in enum.reserved_range:
            lines.append(f"{inner}reserved {_span(reserved.start, reserved.end, 2147483647)};")
        for name in enum.reserved_name:
            lines.append(f"{inner}reserved {_quoted(name)};")
        return [*lines, f"{indent}}}"]

    def extensions(self, fields: Any, indent: str) -> list[str]:
        lines: list[str] = []
        for item in fields:
            lines.append(f"{indent}extend {item.extendee} {{")
            label = self._label(item)
            options = _field_options(item)
            lines.append(
                f"{indent}{INDENT}{label}{_type_of(item)} {item.name} = {item.number}{options};"
            )
            lines.append(f"{indent}}}")
        return lines


def _service(service: Any) -> list[str]:
    lines = [f"service {service.name} {{"]
    lines += _option_lines(service.options, INDENT)
    for method in service.method:
        source = f"{'stream ' if method.client_streaming else ''}{method.input_type}"
        target = f"{'stream ' if method.server_streaming else ''}{method.output_type}"
        head = f"{INDENT}rpc {method.name} ({source}) returns ({target})"
        options = _option_lines(method.options, INDENT * 2)
        lines += [f"{head} {{", *options, f"{INDENT}}}"] if options else [f"{head};"]
    return [*lines, "}"]


def _field_runs(message: Any) -> list[tuple[int | None, list[Any]]]:
    """The fields as written: one at a time, or a oneof's members together at the first."""
    runs: list[tuple[int | None, list[Any]]] = []
    seen: set[int] = set()
    for item in message.field:
        if not item.HasField("oneof_index") or item.proto3_optional:
            runs.append((None, [item]))
        elif item.oneof_index not in seen:
            seen.add(item.oneof_index)
            members = [
                other
                for other in message.field
                if other.HasField("oneof_index")
                and other.oneof_index == item.oneof_index
                and not other.proto3_optional
            ]
            runs.append((item.oneof_index, members))
    return runs


def _nested_name(item: Any) -> str:
    return str(item.type_name).rsplit(".", 1)[-1]


def _hidden_nested(message: Any) -> set[str]:
    """Nested types written as part of a field: map entries and groups."""
    hidden = {nested.name for nested in message.nested_type if nested.options.map_entry}
    for item in message.field:
        if item.type == FieldProto.TYPE_GROUP:
            hidden.add(item.type_name.rsplit(".", 1)[-1])
    return hidden


def _nested_named(message: Any, type_name: str) -> Any:
    short = type_name.rsplit(".", 1)[-1]
    for nested in message.nested_type:
        if nested.name == short and type_name.endswith(f".{message.name}.{short}"):
            return nested
    return None


def _type_of(item: Any) -> str:
    if item.type in SCALAR_NAMES:
        return SCALAR_NAMES[item.type]
    return str(item.type_name)


def _field_options(item: Any) -> str:
    parts = []
    if item.HasField("default_value"):
        parts.append(f"default = {_default_literal(item)}")
    if item.HasField("json_name"):
        parts.append(f"json_name = {_quoted(item.json_name)}")
    parts += [f"{name} = {value}" for name, value in _options(item.options)]
    return f" [{', '.join(parts)}]" if parts else ""


def _compact_options(options: Any) -> str:
    parts = [f"{name} = {value}" for name, value in _options(options)]
    return f" [{', '.join(parts)}]" if parts else ""


def _option_lines(options: Any, indent: str, skip: tuple[str, ...] = ()) -> list[str]:
    return [
        f"{indent}option {name} = {value};" for name, value in _options(options) if name not in skip
    ]


def _options(options: Any) -> Iterator[tuple[str, str]]:
    """The options set on an options message, in field-number order, as literals (a repeated
    option once per value); extensions (custom options) and message-valued options are not
    part of the normalized form."""
    for descriptor, value in options.ListFields():
        if descriptor.is_extension or descriptor.message_type is not None:
            continue
        repeated = descriptor.is_repeated
        for item in value if repeated else [value]:
            yield descriptor.name, _literal(descriptor, item)


def _literal(descriptor: Any, value: Any) -> str:
    if descriptor.enum_type is not None:
        return str(descriptor.enum_type.values_by_number[value].name)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _quoted(value)
    return repr(value)


def _default_literal(item: Any) -> str:
    if item.type in (FieldProto.TYPE_STRING, FieldProto.TYPE_BYTES):
        return _quoted(item.default_value)
    return str(item.default_value)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _span(start: int, end: int, maximum: int) -> str:
    if start == end:
        return str(start)
    return f"{start} to {'max' if end == maximum else end}"
