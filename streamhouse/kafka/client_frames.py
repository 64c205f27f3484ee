"""The client's side of the wire, sans IO: a request entity framed with its header, and the
body entity read back from a response frame; the version a client and an agent share."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from kio.serial import entity_reader

from streamhouse.kafka import codec
from streamhouse.kafka.apis import ApiKey, kio_versions

SIZE = struct.Struct(">i")
SIZE_PREFIX_BYTES = SIZE.size
_HEADER = struct.Struct(">hhih")  # api key, api version, correlation id, client id length
_CORRELATION = struct.Struct(">i")


class UnexpectedResponse(ValueError):
    """A response frame that does not answer the request sent, or does not decode."""


def request_frame(request: Any, correlation_id: int, client_id: str) -> bytes:
    """`request` (a kio request entity) framed with request header v1, or v2 when its version
    is flexible."""
    kind: Any = type(request)
    name = client_id.encode()
    header = _HEADER.pack(kind.__api_key__, kind.__version__, correlation_id, len(name)) + name
    if kind.__flexible__:
        header += b"\x00"  # no tagged fields
    payload = header + codec.encode_body(request)
    return SIZE.pack(len(payload)) + payload


def response_body(payload: bytes, api_key: int, api_version: int, correlation_id: int) -> Any:
    """The response entity in `payload` (a frame without its size prefix) answering request
    `correlation_id`. Response header v1 (tagged fields) follows flexible versions, except for
    ApiVersions, whose header is always v0."""
    schema: Any = codec.response_schema(api_key, api_version)
    (answered,) = _CORRELATION.unpack_from(payload, 0)
    if answered != correlation_id:
        raise UnexpectedResponse(f"answer to request {answered}, expected {correlation_id}")
    pos = _CORRELATION.size
    if schema.__flexible__ and api_key != ApiKey.API_VERSIONS:
        pos = _skip_tagged_fields(payload, pos)
    try:
        entity, size = entity_reader(schema)(payload, pos)
    except codec.KIO_DECODE_ERRORS as error:
        raise UnexpectedResponse(f"{ApiKey(api_key).name} v{api_version}: {error}") from None
    if pos + size != len(payload):
        raise UnexpectedResponse(f"{len(payload) - pos - size} bytes after the response body")
    return entity


def _skip_tagged_fields(payload: bytes, pos: int) -> int:
    end = len(payload)
    try:
        count, pos = codec.read_uvarint(payload, pos, end)
        for _ in range(count):
            _, pos = codec.read_uvarint(payload, pos, end)
            size, pos = codec.read_uvarint(payload, pos, end)
            pos += size
    except codec.MalformedBody as error:
        raise UnexpectedResponse(f"response header: {error}") from None
    return pos


def shared_version(api_key: ApiKey, advertised: Mapping[int, tuple[int, int]]) -> int | None:
    """The highest version of `api_key` both this client (kio) and the agent (its advertised
    range) speak; None if they share none."""
    low, high = kio_versions(api_key)
    theirs = advertised.get(api_key)
    if theirs is None:
        return None
    top = min(high, theirs[1])
    return top if top >= max(low, theirs[0]) else None
