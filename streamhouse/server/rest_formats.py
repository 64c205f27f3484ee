"""The REST proxy's embedded formats: which format a request names (v2 by Content-Type, v3 by a
key's or value's `type`), and the translation of a key or value to and from the engine's
EmbeddedFormats service (engine/embedded_formats.py), which holds every rule: binary (base64
text), json, string (v3 only) and the schema formats avro, protobuf and jsonschema through the
caller's org's schema registry. Its refusals are answered in Confluent's shape with the code
and status they carry (40403 schema not found, 42201 schema invalid, 42202 a record that does
not match, ...).

The formats are the engine's enum: STRING lives there too (a text part written as UTF-8), so
that the gRPC door and the consumers decode it by the same rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamhouse.engine.embedded_formats import (
    EmbeddedFormat,
    EmbeddedFormatError,
    EncodedPart,
    Part,
    VisibleSchemas,
)
from streamhouse.server.rest_common import UNSUPPORTED_MEDIA_TYPE, RestError, RestServices

V2_PRODUCE_TYPE_PREFIX = "application/vnd.kafka."
V2_PRODUCE_TYPE_SUFFIX = ".v2+json"
V2_FORMATS = (
    EmbeddedFormat.BINARY,
    EmbeddedFormat.JSON,
    EmbeddedFormat.AVRO,
    EmbeddedFormat.PROTOBUF,
    EmbeddedFormat.JSONSCHEMA,
)
SCHEMA_FORMATS = (EmbeddedFormat.AVRO, EmbeddedFormat.PROTOBUF, EmbeddedFormat.JSONSCHEMA)


def v2_format(content_type: str) -> EmbeddedFormat:
    """The embedded format a v2 produce request's Content-Type names
    (application/vnd.kafka.<format>.v2+json); 415 for any other type."""
    name = ""
    if content_type.startswith(V2_PRODUCE_TYPE_PREFIX) and content_type.endswith(
        V2_PRODUCE_TYPE_SUFFIX
    ):
        name = content_type[len(V2_PRODUCE_TYPE_PREFIX) : -len(V2_PRODUCE_TYPE_SUFFIX)]
    for fmt in V2_FORMATS:
        if fmt.value == name:
            return fmt
    raise unsupported(f"Content-Type {content_type or '(none)'!r}")


def v3_format(type_name: Any) -> EmbeddedFormat:
    """The format a v3 record's key or value names in its `type` (BINARY, JSON, STRING, AVRO,
    PROTOBUF, JSONSCHEMA)."""
    if not isinstance(type_name, str):
        raise RestError(400, 400, "a key's or value's 'type' must be a string such as BINARY")
    try:
        return EmbeddedFormat(type_name.lower())
    except ValueError:
        raise RestError(400, 400, f"unknown data type {type_name!r}") from None


def unsupported(what: str) -> RestError:
    served = ", ".join(f"application/vnd.kafka.{fmt.value}.v2+json" for fmt in V2_FORMATS)
    return RestError(
        UNSUPPORTED_MEDIA_TYPE,
        UNSUPPORTED_MEDIA_TYPE,
        f"{what} is not an embedded format this proxy serves; use one of {served}",
    )


def refusal(error: EmbeddedFormatError) -> RestError:
    """The REST answer of the engine's refusal: its Confluent code and the status it names."""
    return RestError(error.status, error.error_code, error.message)


async def encode(
    services: RestServices,
    org: str,
    topic: str,
    fmt: EmbeddedFormat,
    part: Part,
    data: Any,
    **options: Any,
) -> EncodedPart:
    """The record bytes of a key or value (`part`) written as `data` in `fmt` (None for null),
    and the id of the schema used; `options` as EmbeddedFormats.encode takes them (schema,
    schema_id, schema_version, subject). `topic`: as the caller's org names it."""
    try:
        return await services.formats.encode(org, topic, fmt, part, data, **options)
    except EmbeddedFormatError as error:
        raise refusal(error) from None


async def schema_format(
    services: RestServices, org: str, topic: str, part: Part, **options: Any
) -> EmbeddedFormat:
    """The format of the schema a v3 key or value names without a `type` (schema_id,
    schema_version, subject: as EmbeddedFormats.schema_format takes them)."""
    try:
        return await services.formats.schema_format(org, topic, part, **options)
    except EmbeddedFormatError as error:
        raise refusal(error) from None


async def decode(
    services: RestServices,
    org: str,
    fmt: EmbeddedFormat,
    data: bytes | None,
    visible: VisibleSchemas | None = None,
) -> Any:
    """A stored key or value as the JSON a REST consumer of `fmt` receives (None for null);
    `visible`: kept across the records of one request (see `decode_all`), so that each schema
    id's visibility is asked once. A record that cannot be read so is refused (42203)."""
    try:
        return await services.formats.decode(org, fmt, data, visible)
    except EmbeddedFormatError as error:
        raise refusal(error) from None


async def decode_all(
    services: RestServices, org: str, fmt: EmbeddedFormat, parts: Sequence[bytes | None]
) -> list[Any]:
    """The keys or values of one consumer answer, decoded with one `VisibleSchemas`."""
    visible = VisibleSchemas(org)
    return [await decode(services, org, fmt, data, visible) for data in parts]


def visible_schemas(org: str) -> VisibleSchemas:
    """A fresh per-request memory of the schema ids `org` may see, for `decode`."""
    return VisibleSchemas(org)
