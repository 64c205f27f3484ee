"""Protobuf messages to and from their JSON mapping (protobuf's json_format), with the message
indexes Confluent's wire framing uses to say which message type of the schema a record holds.

A value is written as the schema's first top-level message, or as the message a caller names
by its full name (`pkg.Outer.Inner`); its indexes are its positions in the file, top-level
message first, then nested ones. Reading renders every field, default values included (as
Confluent's REST Proxy renders Protobuf), with JSON field names (lowerCamelCase).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass

from streamhouse.schemas.model import DatumMismatch, UndecodableDatum
from streamhouse.schemas.protobuf_schema import ProtobufSchema
from streamhouse.schemas.wire_format import FIRST_MESSAGE

JSON_NESTING_MAX = 64  # message nesting json_format follows while reading a value


class ProtobufDatums:
    """Messages of one Protobuf schema."""

    def __init__(self, schema: ProtobufSchema) -> None:
        package = f"{schema.descriptor.package}." if schema.descriptor.package else ""
        # in declaration order, as the message indexes count them
        self._top_level = [
            schema.pool.FindMessageTypeByName(package + message.name)
            for message in schema.descriptor.message_type
        ]

    def encode(self, value: Any, message_name: str | None = None) -> tuple[bytes, tuple[int, ...]]:
        """(serialized message, its message indexes)."""
        indexes = FIRST_MESSAGE if message_name is None else self._indexes_of(message_name)
        descriptor = self._message_at(indexes)
        if not isinstance(value, dict):
            raise DatumMismatch(f"a {descriptor.full_name} message is a JSON object, not {value!r}")
        message = GetMessageClass(descriptor)()
        try:
            json_format.ParseDict(value, message, max_recursion_depth=JSON_NESTING_MAX)
        except json_format.ParseError as error:
            raise DatumMismatch(f"the value is not a {descriptor.full_name}: {error}") from None
        return message.SerializeToString(), indexes

    def decode(self, indexes: Sequence[int], data: bytes) -> Any:
        try:
            descriptor = self._message_at(indexes)
        except DatumMismatch as mismatch:
            raise UndecodableDatum(str(mismatch)) from None
        message = GetMessageClass(descriptor)()
        try:
            message.ParseFromString(data)
        except DecodeError as error:
            raise UndecodableDatum(
                f"the bytes are not a {descriptor.full_name} message: {error}"
            ) from None
        return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)

    def _message_at(self, indexes: Sequence[int]) -> Descriptor:
        candidates, where = self._top_level, "top-level"
        found: Descriptor | None = None
        for index in indexes:
            if not 0 <= index < len(candidates):
                raise DatumMismatch(
                    f"message index {index}: the schema has {len(candidates)} {where} messages"
                )
            found = candidates[index]
            candidates, where = list(found.nested_types), f"{found.full_name}'s nested"
        assert found is not None  # indexes are never empty
        return found

    def _indexes_of(self, message_name: str) -> tuple[int, ...]:
        path = _path_to(self._top_level, message_name.removeprefix("."))
        if path is None:
            raise DatumMismatch(f"the schema has no message named '{message_name}'")
        return path


def _path_to(candidates: Sequence[Descriptor], full_name: str) -> tuple[int, ...] | None:
    for index, descriptor in enumerate(candidates):
        if descriptor.full_name == full_name:
            return (index,)
        if full_name.startswith(descriptor.full_name + "."):
            inner = _path_to(list(descriptor.nested_types), full_name)
            if inner is not None:
                return (index, *inner)
    return None
