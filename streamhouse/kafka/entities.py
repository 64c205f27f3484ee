"""Build kio response entities of any version from plain, version-agnostic values.

Handlers describe a response once, as nested dicts and lists with Kafka's field
names; `build` turns that into the kio dataclass of the negotiated version:
fields the version lacks are dropped, fields it has and the handler left out
get Kafka's empty values (error codes NONE), milliseconds become timedeltas.
A name that is a field of the entity in no version of its API is our bug (a
misspelled "error_code" would go out as success): an AssertionError.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import Field, fields, is_dataclass
from functools import cache
from importlib import import_module
from typing import Any, TypeVar, cast, get_args, get_origin

from kio.schema.errors import ErrorCode as KioErrorCode
from kio.schema.index import PayloadEntityType, schema_name_map
from kio.static.constants import EntityType

from streamhouse.kafka.codec import default_entity, is_optional

E = TypeVar("E")
KIO_MODULE_PARTS = 5  # kio.schema.<api>.v<N>.<request|response>
_PAYLOAD_KINDS: dict[str, PayloadEntityType] = {
    "request": EntityType.request,
    "response": EntityType.response,
}


def build(entity: type[E], values: Mapping[str, Any]) -> E:
    """The `entity` instance holding `values` (nested mappings and sequences allowed)."""
    known = field_names_in_any_version(cast(type, entity))
    for key in values:
        assert key in known, f"{entity.__module__}.{entity.__name__} has no field {key!r}"
    converted: dict[str, Any] = {}
    for field in fields(cast(Any, entity)):
        if field.name in values:
            converted[field.name] = _convert(field, values[field.name])
    return cast(E, default_entity(entity, KioErrorCode.none, converted))


@cache
def field_names_in_any_version(entity: type) -> frozenset[str]:
    """The field names of `entity` and of its namesakes in every version of its API's
    requests or responses (kio keeps them in `kio.schema.<api>.v<N>.<request|response>`)."""
    names = {field.name for field in fields(entity)}
    parts = entity.__module__.split(".")
    if len(parts) != KIO_MODULE_PARTS or parts[:2] != ["kio", "schema"]:
        return frozenset(names)
    kind = _PAYLOAD_KINDS.get(parts[4])
    if kind is None:
        return frozenset(names)
    for entities in schema_name_map.get(parts[2], {}).values():
        path = entities.get(kind)
        if path is not None:
            namesake = getattr(import_module(path.partition(":")[0]), entity.__name__, None)
            if namesake is not None and is_dataclass(namesake):
                names.update(field.name for field in fields(namesake))
    return frozenset(names)


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
