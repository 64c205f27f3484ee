"""Request bodies from bytes and response bodies to bytes, on kio's generated entities.

`decode_request` first walks the body against the schema (`_shape_checker`) and only then
hands it to kio's native reader: that reader preallocates every array from the count on
the wire, so a 20-byte frame claiming 2**32 elements aborts the whole process (Rust OOM,
kio 0.6.5). The walk rejects any count or length larger than the bytes that remain, and
any tagged field whose content does not fill its declared size exactly.

`default_entity` builds any entity with Kafka's empty values (error codes as given).
Produce v0..v2 (below kio's schemas) are decoded as v3 with a null transactional id.
"""

from __future__ import annotations

import datetime
import io
import struct
import types
import uuid
from collections.abc import Callable
from dataclasses import MISSING, Field, fields, is_dataclass
from functools import cache
from typing import Any, Union, cast, get_args, get_origin

from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode as KioErrorCode
from kio.schema.produce.v3.request import ProduceRequest as ProduceRequestV3
from kio.serial import entity_reader, entity_writer
from kio.serial.errors import SerialError
from kio.static.protocol import Entity, RequestPayload, ResponsePayload

from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.varint import UVARINT_BYTES_MAX, decode_unsigned

PRODUCE_LEGACY_VERSIONS = range(0, 3)
"""Produce versions whose body is v3's minus the leading transactional id."""
NULL_LEGACY_STRING = b"\xff\xff"
KIO_DECODE_ERRORS = (SerialError, ValueError, KeyError, OverflowError, TypeError)
"""What kio's reader raises on malformed bytes (ValueError includes UnicodeDecodeError)."""

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_FIXED_SIZES = {
    "int8": 1,
    "uint8": 1,
    "bool": 1,
    "int16": 2,
    "uint16": 2,
    "error_code": 2,
    "int32": 4,
    "uint32": 4,
    "timedelta_i32": 4,
    "int64": 8,
    "uint64": 8,
    "float64": 8,
    "timedelta_i64": 8,
    "datetime_i64": 8,
    "uuid": 16,
}

Checker = Callable[[bytes, int, int], int]
"""Given (data, position, end), checks one value's shape and returns the position after it."""


class MalformedBody(ValueError):
    """A request body does not match its schema (the remote side's mistake)."""


# ---------------------------------------------------------------- decoding


def decode_request(api_key: int, api_version: int, body: bytes) -> RequestPayload:
    """The kio entity for a whole request body; raises MalformedBody."""
    if api_key == ApiKey.PRODUCE and api_version in PRODUCE_LEGACY_VERSIONS:
        return _decode(ProduceRequestV3, NULL_LEGACY_STRING + body)
    return _decode(request_schema(api_key, api_version), body)


@cache
def request_schema(api_key: int, api_version: int) -> type[RequestPayload]:
    return load_request_schema(api_key, api_version)


def _decode(schema: type[RequestPayload], body: bytes) -> RequestPayload:
    """Decode the body; bytes after the schema's end are ignored, as Kafka's broker does
    (librdkafka's all-topics Metadata request carries three such bytes)."""
    end = _shape_checker(schema, False)(body, 0, len(body))
    try:
        entity, size = _reader(schema)(body, 0)
    except KIO_DECODE_ERRORS as error:
        raise MalformedBody(f"{schema.__name__}: {error}") from error
    assert size == end, (schema, size, end)
    return entity


@cache
def _reader(schema: type[RequestPayload]) -> Callable[[bytes, int], tuple[RequestPayload, int]]:
    return cast(Callable[[bytes, int], tuple[RequestPayload, int]], entity_reader(schema))


# ---------------------------------------------------------------- shape checks


def need_bytes(end: int, pos: int, size: int) -> None:
    """MalformedBody unless `size` bytes remain from `pos` to `end`."""
    if size < 0 or pos + size > end:
        raise MalformedBody(f"{size} bytes needed at {pos}, {end - pos} left")


def read_uvarint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """An unsigned varint (compact length, tag) in data[pos:end]; MalformedBody if malformed."""
    return decode_unsigned(data, pos, end, UVARINT_BYTES_MAX, MalformedBody)


def read_length(data: bytes, pos: int, end: int, flexible: bool, width: int) -> tuple[int, int]:
    """A length or count: compact (uvarint N+1) or int16/int32; -1 means null."""
    if flexible:
        value, pos = read_uvarint(data, pos, end)
        return value - 1, pos
    need_bytes(end, pos, width)
    layout = _INT16 if width == 2 else _INT32
    return layout.unpack_from(data, pos)[0], pos + width


def _fixed(size: int) -> Checker:
    def check(data: bytes, pos: int, end: int) -> int:
        need_bytes(end, pos, size)
        return pos + size

    return check


def _sized(flexible: bool, width: int, nullable: bool) -> Checker:
    def check(data: bytes, pos: int, end: int) -> int:
        length, pos = read_length(data, pos, end, flexible, width)
        if length == -1 and nullable:
            return pos
        need_bytes(end, pos, length)
        return pos + length

    return check


def _array(item: Checker, flexible: bool, nullable: bool) -> Checker:
    def check(data: bytes, pos: int, end: int) -> int:
        count, pos = read_length(data, pos, end, flexible, 4)
        if count == -1 and nullable:
            return pos
        if count < 0 or count > end - pos:
            raise MalformedBody(f"array of {count} items with {end - pos} bytes left")
        for _ in range(count):
            pos = item(data, pos, end)
        return pos

    return check


def _nullable_entity(inner: Checker) -> Checker:
    def check(data: bytes, pos: int, end: int) -> int:
        need_bytes(end, pos, 1)
        return pos + 1 if data[pos] == 0xFF else inner(data, pos + 1, end)

    return check


def is_optional(annotation: Any) -> tuple[bool, Any]:
    if get_origin(annotation) in (types.UnionType, Union):
        inner = [arg for arg in get_args(annotation) if arg is not type(None)]
        return len(inner) < len(get_args(annotation)), inner[0]
    return False, annotation


def _primitive(kafka_type: str, flexible: bool, nullable: bool) -> Checker:
    if kafka_type in _FIXED_SIZES:
        return _fixed(_FIXED_SIZES[kafka_type])
    if kafka_type in ("string", "bytes", "records"):
        return _sized(flexible, 2 if kafka_type == "string" else 4, nullable)
    raise NotImplementedError(f"no shape check for kafka type {kafka_type!r}")


def _field_checker(field: Field[Any], flexible: bool, tagged: bool) -> Checker:
    nullable, inner = is_optional(field.type)
    nullable = nullable and not tagged
    if get_origin(inner) is tuple:
        item_type = get_args(inner)[0]
        if is_dataclass(item_type):
            return _array(_shape_checker(cast(type[Entity], item_type), False), flexible, nullable)
        return _array(_primitive(field.metadata["kafka_type"], flexible, False), flexible, nullable)
    if is_dataclass(inner):
        return _shape_checker(cast(type[Entity], inner), nullable)
    return _primitive(field.metadata["kafka_type"], flexible, nullable)


def _tag_section(tagged: dict[int, Checker]) -> Checker:
    def check(data: bytes, pos: int, end: int) -> int:
        count, pos = read_uvarint(data, pos, end)
        for _ in range(count):
            tag, pos = read_uvarint(data, pos, end)
            size, pos = read_uvarint(data, pos, end)
            need_bytes(end, pos, size)
            if tag not in tagged:
                raise MalformedBody(f"unknown tagged field {tag}")
            if tagged[tag](data, pos, pos + size) != pos + size:
                raise MalformedBody(f"tagged field {tag} does not fill its {size} bytes")
            pos += size
        return pos

    return check


@cache
def _shape_checker(entity: type[Entity], nullable: bool) -> Checker:
    """A checker for one entity, compiled once from its dataclass fields."""
    flexible = entity.__flexible__
    steps: list[Checker] = []
    tagged: dict[int, Checker] = {}
    for field in fields(entity):
        tag = field.metadata.get("tag")
        if tag is None:
            steps.append(_field_checker(field, flexible, False))
        else:
            tagged[tag] = _field_checker(field, flexible, True)
    if flexible:
        steps.append(_tag_section(tagged))

    def check(data: bytes, pos: int, end: int) -> int:
        for step in steps:
            pos = step(data, pos, end)
        return pos

    return _nullable_entity(check) if nullable else check


# ---------------------------------------------------------------- encoding


def encode_body(body: Entity) -> bytes:
    """The wire bytes of a kio entity (request or response body)."""
    buffer = io.BytesIO()
    entity_writer(type(body))(buffer, body)
    return buffer.getvalue()


@cache
def response_schema(api_key: int, api_version: int) -> type[ResponsePayload]:
    return load_response_schema(api_key, api_version)


_ZERO_BY_KAFKA_TYPE: dict[str, object] = {
    "string": "",
    "bytes": b"",
    "records": b"",
    "bool": False,
    "uuid": uuid.UUID(int=0),
    "timedelta_i32": datetime.timedelta(0),
    "timedelta_i64": datetime.timedelta(0),
    "datetime_i64": datetime.datetime.fromtimestamp(0, datetime.UTC),
}


def default_entity(
    entity: type[Any], error: KioErrorCode, given: dict[str, Any], **more: Any
) -> Any:
    """An instance with `given`/`more` set, error codes = `error`, the rest empty or zero."""
    values = {**given, **more}
    for field in fields(entity):
        if field.name not in values and field.default is MISSING:
            values[field.name] = _default_value(field, error)
    return entity(**values)


def _default_value(field: Field[Any], error: KioErrorCode) -> object:
    nullable, inner = is_optional(field.type)
    if get_origin(inner) is tuple:
        return ()
    if is_dataclass(inner):
        return None if nullable else default_entity(cast(type[Any], inner), error, {})
    kafka_type = field.metadata["kafka_type"]
    if kafka_type == "error_code":
        return error
    if nullable and kafka_type != "records":  # Kafka answers no records empty, never null
        return None  # (librdkafka refuses a null one: "invalid MessageSetSize -1")
    return _ZERO_BY_KAFKA_TYPE.get(kafka_type, 0)
