"""`.proto` text (proto2 or proto3) to a FileDescriptorProto, as protoc would describe it.

proto_schema_parser reads the text; this module turns its syntax tree into a descriptor:
package, imports (public and weak), messages with nested messages and enums, fields with
labels (proto3 `optional` as protoc does: proto3_optional plus a synthetic oneof after the real
ones), scalar types, message and enum type names resolved to fully-qualified `.pkg.Msg` names
through the enclosing scopes and the declarations of the file and its dependencies, map fields
(a nested `XxxEntry` message with the map_entry option, placed where the field is declared),
proto2 groups, oneofs, enums and their values, reserved ranges and names, extension ranges,
extensions, services and methods, `default` and `json_name`.

Options named by a field of the descriptor's options message (java_package, optimize_for,
deprecated, packed, allow_alias, ...) are kept, a repeated one once per value; custom options,
`(name)` in parentheses, and message-valued options (`features`) are dropped from the
normalized form, as their meaning lives in extensions and editions this floor does not
interpret. Editions (`edition = "2023"`) are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.message import Message
from proto_schema_parser import ast
from proto_schema_parser.parser import Parser

from streamhouse.schemas.model import InvalidSchema

FieldProto = descriptor_pb2.FieldDescriptorProto
SCALARS: Mapping[str, int] = {
    "double": FieldProto.TYPE_DOUBLE,
    "float": FieldProto.TYPE_FLOAT,
    "int64": FieldProto.TYPE_INT64,
    "uint64": FieldProto.TYPE_UINT64,
    "int32": FieldProto.TYPE_INT32,
    "fixed64": FieldProto.TYPE_FIXED64,
    "fixed32": FieldProto.TYPE_FIXED32,
    "bool": FieldProto.TYPE_BOOL,
    "string": FieldProto.TYPE_STRING,
    "bytes": FieldProto.TYPE_BYTES,
    "uint32": FieldProto.TYPE_UINT32,
    "sfixed32": FieldProto.TYPE_SFIXED32,
    "sfixed64": FieldProto.TYPE_SFIXED64,
    "sint32": FieldProto.TYPE_SINT32,
    "sint64": FieldProto.TYPE_SINT64,
}
MESSAGE = "message"
ENUM = "enum"
FIELD_NUMBER_END = 536870912  # field numbers are below 2**29; a message range's end is exclusive
ENUM_NUMBER_MAX = 2147483647  # an enum range's end is inclusive
LABELS: Mapping[ast.FieldCardinality | None, int] = {
    ast.FieldCardinality.REPEATED: FieldProto.LABEL_REPEATED,
    ast.FieldCardinality.REQUIRED: FieldProto.LABEL_REQUIRED,
    ast.FieldCardinality.OPTIONAL: FieldProto.LABEL_OPTIONAL,
    None: FieldProto.LABEL_OPTIONAL,
}


class _RaiseOnSyntaxError:
    """An ANTLR error listener (duck-typed) that refuses the text at the first syntax error
    instead of letting the parser recover and guess."""

    def syntaxError(self, *args: Any) -> None:
        line, column, message = args[2], args[3], args[4]
        raise InvalidSchema(f"invalid Protobuf schema: line {line}:{column}: {message}")

    def reportAmbiguity(self, *args: Any) -> None:
        del args

    def reportAttemptingFullContext(self, *args: Any) -> None:
        del args

    def reportContextSensitivity(self, *args: Any) -> None:
        del args


def _strict(recognizer: Any) -> None:
    recognizer.removeErrorListeners()
    recognizer.addErrorListener(_RaiseOnSyntaxError())


def declared_symbols(descriptor: descriptor_pb2.FileDescriptorProto) -> dict[str, str]:
    """The message and enum types a file declares, by full name (no leading dot)."""
    prefix = f"{descriptor.package}." if descriptor.package else ""
    found: dict[str, str] = {}
    for message in descriptor.message_type:
        _collect_message(message, prefix, found)
    for enum in descriptor.enum_type:
        found[prefix + enum.name] = ENUM
    return found


def _collect_message(message: Any, prefix: str, found: dict[str, str]) -> None:
    full = prefix + message.name
    found[full] = MESSAGE
    for nested in message.nested_type:
        _collect_message(nested, full + ".", found)
    for enum in message.enum_type:
        found[f"{full}.{enum.name}"] = ENUM


def text_to_descriptor(
    text: str, name: str, visible: Mapping[str, str]
) -> descriptor_pb2.FileDescriptorProto:
    """The descriptor of `.proto` text, its file called `name`; `visible` holds the types its
    dependencies declare (full name to "message" or "enum")."""
    tree = Parser(setup_lexer=_strict, setup_parser=_strict).parse(text)
    if tree.edition is not None:
        raise InvalidSchema("invalid Protobuf schema: editions are not supported")
    return _Converter(tree, visible).convert(name)


@dataclass
class _Pending:
    """A type name to resolve once every declaration is known."""

    target: Any  # the FieldDescriptorProto or MethodDescriptorProto to complete
    attribute: str  # type_name, extendee, input_type or output_type
    written: str
    scope: str


@dataclass
class _Converter:
    tree: ast.File
    visible: Mapping[str, str]
    declared: dict[str, str] = field(default_factory=dict)
    pending: list[_Pending] = field(default_factory=list)
    package: str = ""

    def convert(self, name: str) -> descriptor_pb2.FileDescriptorProto:
        descriptor = descriptor_pb2.FileDescriptorProto(name=name)
        proto3 = self.tree.syntax == "proto3"
        if proto3:
            descriptor.syntax = "proto3"
        elif self.tree.syntax not in (None, "proto2"):
            raise InvalidSchema(f"invalid Protobuf schema: unknown syntax {self.tree.syntax!r}")
        for element in self.tree.file_elements:
            if isinstance(element, ast.Package):
                descriptor.package = self.package = element.name
        for element in self.tree.file_elements:
            self._file_element(descriptor, element, proto3)
        self._resolve_all()
        return descriptor

    def _file_element(self, descriptor: Any, element: Any, proto3: bool) -> None:
        if isinstance(element, ast.Import):
            if element.public:
                descriptor.public_dependency.append(len(descriptor.dependency))
            if element.weak:
                descriptor.weak_dependency.append(len(descriptor.dependency))
            descriptor.dependency.append(element.name)
        elif isinstance(element, ast.Option):
            _apply_option(descriptor.options, element)
        elif isinstance(element, ast.Message):
            self._message(descriptor.message_type.add(), element, self.package, proto3)
        elif isinstance(element, ast.Enum):
            self._enum(descriptor.enum_type.add(), element, self.package)
        elif isinstance(element, ast.Extension):
            self._extension(descriptor.extension, element, self.package, proto3)
        elif isinstance(element, ast.Service):
            self._service(descriptor.service.add(), element)

    def _message(self, proto: Any, message: Any, outer: str, proto3: bool) -> None:
        proto.name = message.name
        scope = _join(outer, message.name)
        self.declared[scope] = MESSAGE
        optional_fields = []
        for element in message.elements:
            if isinstance(element, ast.Field):
                added = self._field(proto.field.add(), element, scope, proto3)
                if added.proto3_optional:
                    optional_fields.append(added)
            elif isinstance(element, ast.MapField):
                self._map_field(proto, element, scope)
            elif isinstance(element, ast.Group):
                self._group(proto, element, scope, proto3)
            elif isinstance(element, ast.OneOf):
                self._oneof(proto, element, scope, proto3)
            elif isinstance(element, ast.Option):
                _apply_option(proto.options, element)
            elif isinstance(element, ast.ExtensionRange):
                for start, end in _ranges(element.ranges, FIELD_NUMBER_END - 1):
                    proto.extension_range.add(start=start, end=end + 1)
            elif isinstance(element, ast.Reserved):
                for start, end in _ranges(element.ranges, FIELD_NUMBER_END - 1):
                    proto.reserved_range.add(start=start, end=end + 1)
                proto.reserved_name.extend(element.names)
            elif isinstance(element, ast.Message):
                self._message(proto.nested_type.add(), element, scope, proto3)
            elif isinstance(element, ast.Enum):
                self._enum(proto.enum_type.add(), element, scope)
            elif isinstance(element, ast.Extension):
                self._extension(proto.extension, element, scope, proto3)
        for optional in optional_fields:
            optional.oneof_index = len(proto.oneof_decl)
            proto.oneof_decl.add(name=f"_{optional.name}")

    def _field(self, proto: Any, element: Any, scope: str, proto3: bool) -> Any:
        proto.name = element.name
        proto.number = element.number
        proto.label = LABELS[element.cardinality]
        if proto3 and element.cardinality == ast.FieldCardinality.OPTIONAL:
            proto.proto3_optional = True
        self._set_type(proto, element.type, scope)
        for option in element.options:
            if option.name == "default":
                proto.default_value = _default_text(option.value)
            elif option.name == "json_name":
                proto.json_name = str(option.value)
            else:
                _apply_option(proto.options, option)
        return proto

    def _set_type(self, proto: Any, written: str, scope: str) -> None:
        if written in SCALARS:
            proto.type = SCALARS[written]
        else:
            self.pending.append(_Pending(proto, "type_name", written, scope))

    def _map_field(self, message: Any, element: Any, scope: str) -> None:
        entry_name = "".join(part[:1].upper() + part[1:] for part in element.name.split("_"))
        entry_name += "Entry"
        entry = message.nested_type.add(name=entry_name)
        entry.options.map_entry = True
        self.declared[_join(scope, entry_name)] = MESSAGE
        optional = FieldProto.LABEL_OPTIONAL
        key = entry.field.add(name="key", number=1, label=optional)
        self._set_type(key, element.key_type, scope)
        value = entry.field.add(name="value", number=2, label=optional)
        self._set_type(value, element.value_type, scope)
        proto = message.field.add(name=element.name, number=element.number)
        proto.label = FieldProto.LABEL_REPEATED
        proto.type = FieldProto.TYPE_MESSAGE
        proto.type_name = f".{_join(scope, entry_name)}"
        for option in element.options:
            if option.name == "json_name":
                proto.json_name = str(option.value)
            else:
                _apply_option(proto.options, option)

    def _group(self, message: Any, element: Any, scope: str, proto3: bool) -> Any:
        nested = ast.Message(name=element.name, elements=element.elements)
        self._message(message.nested_type.add(), nested, scope, proto3)
        proto = message.field.add(name=element.name.lower(), number=element.number)
        proto.label = LABELS[element.cardinality]
        proto.type = FieldProto.TYPE_GROUP
        proto.type_name = f".{_join(scope, element.name)}"
        return proto

    def _oneof(self, message: Any, element: Any, scope: str, proto3: bool) -> None:
        index = len(message.oneof_decl)
        oneof = message.oneof_decl.add(name=element.name)
        for member in element.elements:
            if isinstance(member, ast.Field):
                self._field(message.field.add(), member, scope, proto3).oneof_index = index
            elif isinstance(member, ast.Group):
                self._group(message, member, scope, proto3).oneof_index = index
            elif isinstance(member, ast.Option):
                _apply_option(oneof.options, member)

    def _enum(self, proto: Any, enum: Any, outer: str) -> None:
        proto.name = enum.name
        self.declared[_join(outer, enum.name)] = ENUM
        for element in enum.elements:
            if isinstance(element, ast.EnumValue):
                value = proto.value.add(name=element.name, number=element.number)
                for option in element.options:
                    _apply_option(value.options, option)
            elif isinstance(element, ast.Option):
                _apply_option(proto.options, element)
            elif isinstance(element, ast.EnumReserved):
                for start, end in _ranges(element.ranges, ENUM_NUMBER_MAX):
                    proto.reserved_range.add(start=start, end=end)
                proto.reserved_name.extend(element.names)

    def _extension(self, target: Any, extension: Any, scope: str, proto3: bool) -> None:
        for element in extension.elements:
            if isinstance(element, ast.Field):
                proto = self._field(target.add(), element, scope, proto3)
                proto.proto3_optional = False
                self.pending.append(_Pending(proto, "extendee", extension.typeName, scope))

    def _service(self, proto: Any, service: Any) -> None:
        proto.name = service.name
        for element in service.elements:
            if isinstance(element, ast.Option):
                _apply_option(proto.options, element)
            elif isinstance(element, ast.Method):
                method = proto.method.add(name=element.name)
                if element.input_type.stream:
                    method.client_streaming = True
                if element.output_type.stream:
                    method.server_streaming = True
                for attribute, written in (
                    ("input_type", element.input_type.type),
                    ("output_type", element.output_type.type),
                ):
                    self.pending.append(_Pending(method, attribute, written, self.package))
                for option in element.elements:
                    if isinstance(option, ast.Option):
                        _apply_option(method.options, option)

    def _resolve_all(self) -> None:
        for pending in self.pending:
            full, kind = self._resolve(pending.written, pending.scope)
            setattr(pending.target, pending.attribute, f".{full}")
            if pending.attribute == "type_name":
                pending.target.type = (
                    FieldProto.TYPE_MESSAGE if kind == MESSAGE else FieldProto.TYPE_ENUM
                )

    def _resolve(self, written: str, scope: str) -> tuple[str, str]:
        """Protobuf's scoping: a relative name is looked up from the innermost scope outward."""
        if written.startswith("."):
            candidates = [written[1:]]
        else:
            parts = scope.split(".") if scope else []
            candidates = [
                _join(".".join(parts[:size]), written) for size in range(len(parts), -1, -1)
            ]
        for candidate in candidates:
            kind = self.declared.get(candidate) or self.visible.get(candidate)
            if kind is not None:
                return candidate, kind
        raise InvalidSchema(f"invalid Protobuf schema: type {written!r} is not defined")


def _join(scope: str, name: str) -> str:
    return f"{scope}.{name}" if scope else name


def _ranges(written: list[str], maximum: int) -> list[tuple[int, int]]:
    """`5`, `9 to 11`, `20 to max` as inclusive (start, end) pairs."""
    found = []
    for item in written:
        start, _, end = (part.strip() for part in item.partition(" to "))
        try:
            found.append((int(start), maximum if end == "max" else int(end or start)))
        except ValueError as error:
            raise InvalidSchema(f"invalid Protobuf schema: bad range {item!r}") from error
    return found


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, ast.Identifier):
        return value.name
    return str(value)


def _apply_option(options: Message, option: Any) -> None:
    """Set an option the options message names (a repeated one once more); drop custom
    `(extension)` options and message-valued ones such as `features`, which the normalized
    form does not carry."""
    if option.name.startswith("("):
        return
    descriptor = options.DESCRIPTOR.fields_by_name.get(option.name)
    if descriptor is None:
        raise InvalidSchema(f"invalid Protobuf schema: unknown option {option.name!r}")
    if descriptor.message_type is not None:
        return
    value = _option_value(descriptor, option)
    try:
        if descriptor.is_repeated:
            getattr(options, option.name).append(value)
        else:
            setattr(options, option.name, value)
    except (TypeError, ValueError, AttributeError) as error:
        raise InvalidSchema(
            f"invalid Protobuf schema: bad value for option {option.name!r}: {error}"
        ) from error


def _option_value(descriptor: Any, option: Any) -> Any:
    value = option.value
    if descriptor.enum_type is not None:
        name = value.name if isinstance(value, ast.Identifier) else str(value)
        enum_value = descriptor.enum_type.values_by_name.get(name)
        if enum_value is None:
            raise InvalidSchema(f"invalid Protobuf schema: bad value for option {option.name!r}")
        return enum_value.number
    if isinstance(value, ast.Identifier):
        return {"true": True, "false": False}.get(value.name, value.name)
    return value
