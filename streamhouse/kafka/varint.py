"""Kafka's variable-length integers: unsigned LEB128 (compact lengths, tagged fields) and
zig-zag varint/varlong (record fields). One implementation for the protocol codec and the
record codec; each caller names the error a malformed varint raises."""

from __future__ import annotations

from typing import TypeAlias

from streamhouse.errors import InvalidRecordBatch

Buffer: TypeAlias = bytes | bytearray | memoryview
ErrorType: TypeAlias = type[Exception]

VARINT_BYTES_MAX = 5
VARLONG_BYTES_MAX = 10
UVARINT_BYTES_MAX = 5  # unsigned varints of the protocol (lengths, tags) are int32
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def encode_varint(value: int) -> bytes:
    """Zig-zag LEB128 encoding of an int32 (Kafka's varint)."""
    if not INT32_MIN <= value <= INT32_MAX:
        raise ValueError(f"varint {value} outside int32")
    return encode_unsigned(zigzag(value))


def encode_varlong(value: int) -> bytes:
    """Zig-zag LEB128 encoding of an int64 (Kafka's varlong)."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"varlong {value} outside int64")
    return encode_unsigned(zigzag(value))


def decode_varint(buf: Buffer, pos: int = 0) -> tuple[int, int]:
    """(value, position after it) of the varint at `pos`; InvalidRecordBatch if malformed."""
    return decode_zigzag(buf, pos, len(buf), VARINT_BYTES_MAX, 32)


def decode_varlong(buf: Buffer, pos: int = 0) -> tuple[int, int]:
    """(value, position after it) of the varlong at `pos`; InvalidRecordBatch if malformed."""
    return decode_zigzag(buf, pos, len(buf), VARLONG_BYTES_MAX, 64)


def zigzag(value: int) -> int:
    return value * 2 if value >= 0 else -value * 2 - 1


def encode_unsigned(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_zigzag(
    buf: Buffer,
    pos: int,
    end: int,
    max_bytes: int,
    bits: int,
    error: ErrorType = InvalidRecordBatch,
) -> tuple[int, int]:
    """A zig-zag varint of at most `bits` bits and `max_bytes` bytes in buf[pos:end]."""
    raw, pos = decode_unsigned(buf, pos, end, max_bytes, error)
    if raw >> bits:
        raise error(f"varint value {raw} does not fit in {bits} bits")
    return (raw >> 1) ^ -(raw & 1), pos


def decode_unsigned(
    buf: Buffer, pos: int, end: int, max_bytes: int, error: ErrorType = InvalidRecordBatch
) -> tuple[int, int]:
    """An unsigned LEB128 varint of at most `max_bytes` bytes in buf[pos:end]."""
    result = 0
    for shift in range(0, 7 * max_bytes, 7):
        if pos >= end:
            raise error(f"truncated varint ending at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
    raise error(f"varint longer than {max_bytes} bytes ending at byte {pos}")
