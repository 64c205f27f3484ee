"""The REST proxy's embedded formats: how a key or value written inside a JSON request becomes
the bytes of a record (binary: base64 text; json: the value as compact UTF-8 JSON; string:
the text as UTF-8).

Stop-gap: the schema formats (avro, protobuf, jsonschema) go through the registry's
EmbeddedFormats service (engine/embedded_formats.py) once it lands; `encode` is the one place
to swap. Until then they are refused with 415 naming the formats served.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from typing import Any

from streamhouse.server.rest_common import UNPROCESSABLE, UNSUPPORTED_MEDIA_TYPE, RestError

INVALID_DATA = 42202  # Confluent: a key or value the embedded format cannot take
V2_PRODUCE_TYPE_PREFIX = "application/vnd.kafka."
V2_PRODUCE_TYPE_SUFFIX = ".v2+json"


class EmbeddedFormat(enum.Enum):
    """Confluent's embedded formats (v2 names; v3 writes them upper case)."""

    BINARY = "binary"
    JSON = "json"
    STRING = "string"  # v3 only
    AVRO = "avro"
    PROTOBUF = "protobuf"
    JSONSCHEMA = "jsonschema"


SERVED = (EmbeddedFormat.BINARY, EmbeddedFormat.JSON, EmbeddedFormat.STRING)
V2_FORMATS = (EmbeddedFormat.BINARY, EmbeddedFormat.JSON)


def v2_format(content_type: str) -> EmbeddedFormat:
    """The embedded format a v2 produce request's Content-Type names
    (application/vnd.kafka.<format>.v2+json); 415 for any other type."""
    name = ""
    if content_type.startswith(V2_PRODUCE_TYPE_PREFIX) and content_type.endswith(
        V2_PRODUCE_TYPE_SUFFIX
    ):
        name = content_type[len(V2_PRODUCE_TYPE_PREFIX) : -len(V2_PRODUCE_TYPE_SUFFIX)]
    try:
        found = EmbeddedFormat(name)
    except ValueError:
        found = None
    if found is None or found is EmbeddedFormat.STRING:
        raise unsupported(f"Content-Type {content_type or '(none)'!r}")
    return found


def v3_format(type_name: Any) -> EmbeddedFormat:
    """The format a v3 record's key or value names in its `type` (BINARY, JSON, STRING, …)."""
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


def encode(fmt: EmbeddedFormat, part: str, data: Any) -> bytes | None:
    """The record bytes of a key or value (`part`) written as `data` in `fmt`; None for null."""
    if data is None:
        return None
    if fmt is EmbeddedFormat.BINARY:
        if not isinstance(data, str):
            raise _invalid(part, "binary data must be a base64 string")
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(part, "binary data is not valid base64") from None
    if fmt is EmbeddedFormat.JSON:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    if fmt is EmbeddedFormat.STRING:
        if not isinstance(data, str):
            raise _invalid(part, "string data must be a JSON string")
        return data.encode()
    raise unsupported(f"the {fmt.value} format")


def _invalid(part: str, why: str) -> RestError:
    return RestError(UNPROCESSABLE, INVALID_DATA, f"invalid {part}: {why}")
