"""Build kio response entities of any version from plain, version-agnostic values.

Handlers describe a response once, as nested dicts and lists with Kafka's field
names; `build` turns that into the kio dataclass of the negotiated version:
fields the version lacks are dropped, fields it has and the handler left out
get Kafka's empty values (error codes NONE), milliseconds become timedeltas.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import Field, fields, is_dataclass
from typing import Any, TypeVar, cast, get_args, get_origin

from kio.schema.errors import ErrorCode as KioErrorCode

from streamhouse.kafka.codec import default_entity, is_optional

E = TypeVar("E")


def build(entity: type[E], values: Mapping[str, Any]) -> E:
    """The `entity` instance holding `values` (nested mappings and sequences allowed)."""
    converted: dict[str, Any] = {}
    for field in fields(cast(Any, entity)):
        if field.name in values:
            converted[field.name] = _convert(field, values[field.name])
    return cast(E, default_entity(entity, KioErrorCode.none, converted))


def _convert(field: Field[Any], value: Any) -> Any:
    if value is None:
        return None
    _, inner = is_optional(field.type)
    if get_origin(inner) is tuple:
        (item_type, *_) = get_args(inner)
        if is_dataclass(item_type):
            return tuple(build(cast(type[Any], item_type), item) for item in value)
        return tuple(value)
    if is_dataclass(inner):
        return build(cast(type[Any], inner), value)
    return _primitive(field.metadata.get("kafka_type", ""), value)


def _primitive(kafka_type: str, value: Any) -> Any:
    if kafka_type == "error_code":
        return KioErrorCode(int(value))
    if kafka_type in ("timedelta_i32", "timedelta_i64"):
        return datetime.timedelta(milliseconds=int(value))
    if kafka_type == "datetime_i64":
        return datetime.datetime.fromtimestamp(int(value) / 1000, datetime.UTC)
    return value
