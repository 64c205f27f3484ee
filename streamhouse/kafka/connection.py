"""One Kafka client connection as a sans-IO state machine: bytes in, events out, responses out.

The caller (the asyncio listener) feeds whatever the socket gave with `receive_data`
(`b""` at end of stream) and drains `next_event()` until `NeedData`:

- `Request`: dispatch to the handler for `api_key`, then write `send_response(...)`.
- `Rejected`: the connection already knows the answer; write `send_error(e.request, e.error)`.
- `ProtocolError`: the stream cannot continue (Kafka closes here too); close the socket.
- `ConnectionClosed`: the peer closed cleanly between frames.

Responses may be completed in any order; the bytes `send_*` return are always in request
order (Kafka clients require it), so a call returns `b""` while an earlier request is still
unanswered and several responses at once when it completes. A Produce with acks=0 gets no
response at all (`Request.expects_response` is False; `send_*` then return `b""`).
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, TypeAlias

from kio.schema.api_versions.v0.request import ApiVersionsRequest as ApiVersionsRequestV0
from kio.schema.api_versions.v0.response import ApiVersion as ApiVersionV0
from kio.schema.api_versions.v0.response import ApiVersionsResponse as ApiVersionsResponseV0
from kio.schema.errors import ErrorCode as KioErrorCode
from kio.static.primitive import i16
from kio.static.protocol import RequestPayload, ResponsePayload

from streamhouse.errors import ErrorCode
from streamhouse.kafka import codec
from streamhouse.kafka.apis import ApiKey, ApiTable, api_name
from streamhouse.kafka.encoded import EncodedBody
from streamhouse.kafka.error_bodies import error_body
from streamhouse.kafka.produce_wire import (
    PRODUCE_VERSION_MAX,
    ProduceRequestBody,
    decode_produce_request,
)

FRAME_BYTES_MAX_DEFAULT = 100 * 1024 * 1024
"""Kafka's socket.request.max.bytes default: the largest request frame accepted."""
SIZE_PREFIX_BYTES = 4
REQUEST_HEADER_BYTES_MIN = 8  # api_key int16, api_version int16, correlation_id int32
FLEXIBLE_API_VERSIONS_MIN = 3
"""ApiVersions v3+ is flexible: request header v2 even for versions we do not know."""

RequestBody: TypeAlias = RequestPayload | ProduceRequestBody
"""Produce's body is our own (kafka/produce_wire.py); every other API's is kio's entity."""

_SIZE = struct.Struct(">i")
_HEADER = struct.Struct(">hhi")
_CLIENT_ID_LENGTH = struct.Struct(">h")
_LOOKS_LIKE = {b"GET ": "HTTP", b"POST": "HTTP", b"PUT ": "HTTP", b"HEAD": "HTTP"}


@dataclass(frozen=True, slots=True)
class Request:
    """One decoded request. `size` counts the frame after its 4-byte length prefix."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: RequestBody
    size: int
    expects_response: bool
    sequence: int
    """Position of the request on this connection, from 0; responses go out in this order."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A request answered without a handler: write `send_error(request, error)`."""

    request: Request
    error: ErrorCode


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The byte stream is broken or hostile: close the connection (nothing more is read)."""

    message: str


@dataclass(frozen=True, slots=True)
class NeedData:
    """No complete frame is buffered: feed more bytes."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the stream between frames."""


Event: TypeAlias = Request | Rejected | ProtocolError | NeedData | ConnectionClosed

NEED_DATA: Final = NeedData()
CONNECTION_CLOSED: Final = ConnectionClosed()


class _BadHeader(ValueError):
    """A request header that cannot be read."""


class KafkaConnection:
    """Framing, header and body decoding, and in-order responses for one connection."""

    def __init__(self, apis: ApiTable, frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT) -> None:
        assert frame_bytes_max >= REQUEST_HEADER_BYTES_MIN, frame_bytes_max
        self.apis = apis
        self.frame_bytes_max = frame_bytes_max
        self._buffer = bytearray()
        self._start = 0
        self._eof = False
        self._error: ProtocolError | None = None
        self._next_sequence = 0
        # OrderedDict: popping the oldest is O(1) (a dict's iteration skips the holes
        # left by deletions at its front, quadratic with thousands of requests pending)
        self._slots: OrderedDict[int, bytes | None] = OrderedDict()
        """Requests awaiting their response, by sequence (insertion = request order)."""

    # ------------------------------------------------------------ input

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes read from the socket; `b""` means the peer closed its side."""
        if not data:
            self._eof = True
        elif self._error is None:
            self._buffer += data

    def next_event(self) -> Event:
        """The next event from the buffered bytes (ProtocolError is final and repeats)."""
        if self._error is not None:
            return self._error
        event = self._next_frame_event()
        if isinstance(event, ProtocolError):
            self._error = event
            self._buffer.clear()
        return event

    @property
    def responses_pending(self) -> int:
        """Requests read but not yet answered (for backpressure: stop reading past a bound)."""
        return len(self._slots)

    def _next_frame_event(self) -> Event:
        available = len(self._buffer) - self._start
        if available < SIZE_PREFIX_BYTES:
            return self._end_of_data(available)
        size = _SIZE.unpack_from(self._buffer, self._start)[0]
        problem = self._size_problem(size)
        if problem:
            return ProtocolError(problem)
        if available < SIZE_PREFIX_BYTES + size:
            return self._end_of_data(available)
        begin = self._start + SIZE_PREFIX_BYTES
        frame = bytes(self._buffer[begin : begin + size])
        self._consume(SIZE_PREFIX_BYTES + size)
        return self._frame_event(frame)

    def _end_of_data(self, available: int) -> Event:
        if not self._eof:
            return NEED_DATA
        if available:
            return ProtocolError(f"connection closed inside a frame ({available} bytes buffered)")
        return CONNECTION_CLOSED

    def _size_problem(self, size: int) -> str:
        if size > self.frame_bytes_max:
            prefix = bytes(self._buffer[self._start : self._start + SIZE_PREFIX_BYTES])
            hint = f" (looks like {_LOOKS_LIKE[prefix]})" if prefix in _LOOKS_LIKE else ""
            return f"frame of {size} bytes exceeds frame_bytes_max={self.frame_bytes_max}{hint}"
        if size <= 0:
            return f"frame size {size} is not positive"
        if size < REQUEST_HEADER_BYTES_MIN:
            return f"truncated request header: frame of {size} bytes"
        return ""

    def _consume(self, count: int) -> None:
        self._start += count
        if self._start * 2 >= len(self._buffer):
            del self._buffer[: self._start]
            self._start = 0

    # ------------------------------------------------------------ decoding

    def _frame_event(self, frame: bytes) -> Event:
        api_key, api_version, correlation_id = _HEADER.unpack_from(frame, 0)
        api = self.apis.get(api_key)
        if api is None:
            return ProtocolError(f"api key {api_key} ({api_name(api_key)}) is not served here")
        unknown_api_versions = api_key == ApiKey.API_VERSIONS and not api.serves(api_version)
        if not unknown_api_versions and not api.advertises(api_version):
            return ProtocolError(
                f"{_where(frame)}: version outside v{api.min_version}..v{api.max_version}"
            )
        try:
            client_id, body_start = _read_header_rest(frame, api_key, api_version)
        except _BadHeader as error:
            return ProtocolError(f"{_where(frame)}: request header: {error}")
        if unknown_api_versions:
            body: RequestBody = ApiVersionsRequestV0()  # Kafka ignores it
        else:
            try:
                body = _decode_body(api_key, api_version, frame[body_start:])
            except codec.MalformedBody as error:
                return ProtocolError(f"{_where(frame)}: malformed body: {error}")
        request = self._register(api_key, api_version, correlation_id, client_id, body, frame)
        if unknown_api_versions or not api.serves(api_version):
            return Rejected(request, ErrorCode.UNSUPPORTED_VERSION)
        return request

    def _register(
        self,
        api_key: int,
        api_version: int,
        correlation_id: int,
        client_id: str | None,
        body: RequestBody,
        frame: bytes,
    ) -> Request:
        expects_response = not (api_key == ApiKey.PRODUCE and getattr(body, "acks", 1) == 0)
        request = Request(
            api_key=api_key,
            api_version=api_version,
            correlation_id=correlation_id,
            client_id=client_id,
            body=body,
            size=len(frame),
            expects_response=expects_response,
            sequence=self._next_sequence,
        )
        self._next_sequence += 1
        if expects_response:
            self._slots[request.sequence] = None
        return request

    # ------------------------------------------------------------ output

    def send_response(self, request: Request, body: ResponsePayload) -> bytes:
        """Complete `request` with `body`; returns the bytes now ready to write, in order."""
        schema = type(body)
        if (schema.__api_key__, schema.__version__) != (request.api_key, request.api_version):
            raise ValueError(
                f"{schema.__name__} v{schema.__version__} answers api {schema.__api_key__}, "
                f"not {api_name(request.api_key)} v{request.api_version}"
            )
        return self._complete(request, codec.encode_body(body), schema.__flexible__)

    def send_encoded(self, request: Request, body: bytes | EncodedBody) -> bytes:
        """Complete `request` with a body already encoded for its version (an EncodedBody's
        parts, record batches among them, are joined once, into the frame itself)."""
        flexible = _header_is_flexible(request.api_key, request.api_version)
        assert not isinstance(body, EncodedBody) or body.flexible == flexible, request
        return self._complete(request, body, flexible)

    def send_error(self, request: Request, error: ErrorCode) -> bytes:
        """Complete `request` with the response Kafka sends when it fails with `error`.

        Each item the request names is answered with `error` (kafka/error_bodies.py); ApiVersions at
        a version we do not serve is answered in v0 with the whole table, as Kafka does.
        """
        if request.api_key == ApiKey.API_VERSIONS and (
            error == ErrorCode.UNSUPPORTED_VERSION or not self._serves(request)
        ):
            return self._complete(request, codec.encode_body(self._versions_v0(error)), False)
        body = error_body(request.api_key, request.api_version, request.body, error)
        if isinstance(body, bytes):  # Produce v0..v2, never flexible
            return self._complete(request, body, False)
        return self._complete(request, codec.encode_body(body), type(body).__flexible__)

    def _serves(self, request: Request) -> bool:
        api = self.apis.get(request.api_key)
        return api is not None and api.serves(request.api_version)

    def _versions_v0(self, error: ErrorCode) -> ApiVersionsResponseV0:
        return ApiVersionsResponseV0(
            error_code=KioErrorCode(int(error)),
            api_keys=tuple(
                ApiVersionV0(
                    api_key=i16(api.key),
                    min_version=i16(api.min_version),
                    max_version=i16(api.max_version),
                )
                for api in self.apis
            ),
        )

    def _complete(self, request: Request, body: bytes | EncodedBody, flexible: bool) -> bytes:
        if not request.expects_response:
            return b""
        if self._slots.get(request.sequence, b"") is not None:
            raise ValueError(f"request {request.sequence} is answered already or not ours")
        tagged = flexible and request.api_key != ApiKey.API_VERSIONS  # response header v1
        header = _SIZE.pack(request.correlation_id) + (b"\x00" if tagged else b"")
        if isinstance(body, EncodedBody):
            size = len(header) + body.size_bytes
            frame = b"".join([_SIZE.pack(size), header, *body.parts])
        else:
            frame = _SIZE.pack(len(header) + len(body)) + header + body
        self._slots[request.sequence] = frame
        return self._flush()

    def _flush(self) -> bytes:
        ready: list[bytes] = []
        slots = self._slots
        while slots:
            sequence, frame = next(iter(slots.items()))
            if frame is None:
                break
            ready.append(frame)
            del slots[sequence]
        return b"".join(ready)


def _decode_body(
    api_key: int, api_version: int, body: bytes
) -> RequestPayload | ProduceRequestBody:
    if api_key == ApiKey.PRODUCE and api_version <= PRODUCE_VERSION_MAX:  # the hot path
        return decode_produce_request(api_version, body)
    return codec.decode_request(api_key, api_version, body)


def _where(frame: bytes) -> str:
    """The request a frame holds, for error messages."""
    api_key, api_version, correlation_id = _HEADER.unpack_from(frame, 0)
    return f"{api_name(api_key)}({api_key}) v{api_version}, correlation id {correlation_id}"


def _read_header_rest(frame: bytes, api_key: int, api_version: int) -> tuple[str | None, int]:
    """Client id and where the body starts (request header v1, or v2 with tagged fields)."""
    end = len(frame)
    pos = REQUEST_HEADER_BYTES_MIN
    if pos + 2 > end:
        raise _BadHeader("no client id length")
    length = _CLIENT_ID_LENGTH.unpack_from(frame, pos)[0]
    pos += 2
    client_id = None
    if length != -1:
        if length < 0 or pos + length > end:
            raise _BadHeader(f"client id of {length} bytes with {end - pos} left")
        try:
            client_id = frame[pos : pos + length].decode()
        except UnicodeDecodeError as error:
            raise _BadHeader(f"client id is not UTF-8: {error}") from None
        pos += length
    if _header_is_flexible(api_key, api_version):
        pos = _skip_tags(frame, pos, end)
    return client_id, pos


def _header_is_flexible(api_key: int, api_version: int) -> bool:
    if api_key == ApiKey.API_VERSIONS:
        return api_version >= FLEXIBLE_API_VERSIONS_MIN
    if api_key == ApiKey.PRODUCE and api_version in codec.PRODUCE_LEGACY_VERSIONS:
        return False
    return codec.request_schema(api_key, api_version).__flexible__


def _skip_tags(frame: bytes, pos: int, end: int) -> int:
    try:
        count, pos = codec.read_uvarint(frame, pos, end)
        for _ in range(count):
            _, pos = codec.read_uvarint(frame, pos, end)
            size, pos = codec.read_uvarint(frame, pos, end)
            if pos + size > end:
                raise _BadHeader(f"tagged field of {size} bytes with {end - pos} left")
            pos += size
    except codec.MalformedBody as error:
        raise _BadHeader(str(error)) from None
    return pos
