"""Confluent's wire framing of a schema-registered record part: magic byte 0, the 4-byte
big-endian schema id, then (Protobuf only) the message indexes, then the datum.

Message indexes locate the record's message type in the schema's file: the position of a
top-level message, then of a nested message inside it, and so on. They are written as a
zig-zag varint count followed by one zig-zag varint per index; the common case, the first
top-level message ([0]), is written as the single byte 0 (a count of zero).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from streamhouse.kafka.varint import VARINT_BYTES_MAX, decode_zigzag, encode_varint

WIRE_MAGIC = 0
WIRE_HEADER_BYTES = 5  # magic byte, then the schema id
MESSAGE_INDEXES_MAX = 64  # nesting depth of a message type a frame may name
_SCHEMA_ID = struct.Struct(">i")
FIRST_MESSAGE = (0,)


class WireFormatError(ValueError):
    """The bytes are not in Confluent's wire framing; str(e) says what is wrong."""


def frame(schema_id: int, datum: bytes, message_indexes: Sequence[int] | None = None) -> bytes:
    """`datum` framed with its schema id (and, for Protobuf, its message indexes)."""
    header = bytes([WIRE_MAGIC]) + _SCHEMA_ID.pack(schema_id)
    if message_indexes is None:
        return header + datum
    return header + encode_message_indexes(message_indexes) + datum


def schema_id_of(data: bytes) -> int | None:
    """The schema id a framed record part carries; None if it does not start with the framing."""
    if len(data) < WIRE_HEADER_BYTES or data[0] != WIRE_MAGIC:
        return None
    (schema_id,) = _SCHEMA_ID.unpack_from(data, 1)
    return int(schema_id)


def unframe(data: bytes) -> tuple[int, bytes]:
    """(schema id, what follows the header); WireFormatError if `data` is not framed."""
    schema_id = schema_id_of(data)
    if schema_id is None:
        raise WireFormatError(
            f"the {len(data)} bytes do not start with magic byte 0 and a 4-byte schema id"
        )
    return schema_id, data[WIRE_HEADER_BYTES:]


def encode_message_indexes(indexes: Sequence[int]) -> bytes:
    if tuple(indexes) == FIRST_MESSAGE:
        return bytes([0])
    return encode_varint(len(indexes)) + b"".join(encode_varint(index) for index in indexes)


def decode_message_indexes(body: bytes) -> tuple[tuple[int, ...], bytes]:
    """(message indexes, the datum after them) of a Protobuf frame's body."""
    count, position = _varint(body, 0)
    if count == 0:
        return FIRST_MESSAGE, body[position:]
    if not 0 < count <= MESSAGE_INDEXES_MAX:
        raise WireFormatError(
            f"the frame names {count} message indexes; between 1 and {MESSAGE_INDEXES_MAX} "
            "are allowed"
        )
    indexes = []
    for _ in range(count):
        index, position = _varint(body, position)
        if index < 0:
            raise WireFormatError(f"message index {index} is negative")
        indexes.append(index)
    return tuple(indexes), body[position:]


def _varint(body: bytes, position: int) -> tuple[int, int]:
    return decode_zigzag(body, position, len(body), VARINT_BYTES_MAX, 32, WireFormatError)
