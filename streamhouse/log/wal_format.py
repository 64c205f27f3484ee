"""WAL entry framing `[length u32][crc32c u32][kind u8][payload]` and the entry payloads.

`length` counts kind + payload; the CRC32C covers the same bytes. Decoding
stops at the first entry that is torn (runs past the end) or corrupt (bad
length or CRC): everything before it is intact, nothing after it is trusted.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

import crc32c

FRAME = struct.Struct(">II")
FRAME_BYTES = FRAME.size
_TP_HEAD = struct.Struct(">H")
_TP_TAIL = struct.Struct(">Ii")
_TRUNCATE_TAIL = struct.Struct(">q")


class EntryKind(enum.IntEnum):
    """What a WAL entry holds."""

    BATCH = 1  # a Kafka record batch appended to a partition
    TRUNCATE = 2  # entries of a partition at and above an offset are void (a failed write)


@dataclass(frozen=True)
class Frame:
    """One decoded entry and where it sits in its file."""

    kind: EntryKind
    payload: bytes
    position: int
    size: int


@dataclass(frozen=True)
class DecodeResult:
    """The intact entries of a buffer and where the intact prefix ends."""

    frames: list[Frame]
    valid_bytes: int
    stopped_early: bool


def frame_head(kind: EntryKind, payload: bytes) -> bytes:
    """The bytes that go before `payload` in its frame (length, CRC, kind): no payload copy."""
    kind_byte = _KIND_BYTES[kind]
    checksum = crc32c.crc32c(payload, crc32c.crc32c(kind_byte))
    return FRAME.pack(len(payload) + 1, checksum) + kind_byte


def decode_frames(buf: bytes, entry_bytes_max: int) -> DecodeResult:
    """Every intact entry from the start of `buf`, stopping at the first torn or corrupt one."""
    frames: list[Frame] = []
    position = 0
    view = memoryview(buf)
    while position < len(buf):
        if position + FRAME_BYTES > len(buf):
            return DecodeResult(frames, position, True)
        length, checksum = FRAME.unpack_from(buf, position)
        body_start = position + FRAME_BYTES
        body_end = body_start + length
        if length < 1 or length > entry_bytes_max or body_end > len(buf):
            return DecodeResult(frames, position, True)
        body = view[body_start:body_end]
        if crc32c.crc32c(body) != checksum or body[0] not in _KIND_VALUES:
            return DecodeResult(frames, position, True)
        kind = EntryKind(body[0])
        frames.append(Frame(kind, bytes(body[1:]), position, body_end - position))
        position = body_end
    return DecodeResult(frames, position, False)


_KIND_VALUES = frozenset(int(kind) for kind in EntryKind)
_KIND_BYTES = {kind: bytes([kind]) for kind in EntryKind}


@dataclass(frozen=True)
class BatchEntry:
    """A record batch of a partition, written by the holder of `leader_epoch`."""

    topic: str
    partition: int
    leader_epoch: int
    batch: bytes


@dataclass(frozen=True)
class TruncateEntry:
    """Voids the partition's entries at offsets >= `offset` written before this entry."""

    topic: str
    partition: int
    offset: int


def _encode_tp(topic: str, partition: int, leader_epoch: int) -> bytes:
    name = topic.encode()
    return _TP_HEAD.pack(len(name)) + name + _TP_TAIL.pack(partition, leader_epoch)


def _decode_tp(payload: bytes) -> tuple[str, int, int, int]:
    (name_bytes,) = _TP_HEAD.unpack_from(payload, 0)
    name_end = _TP_HEAD.size + name_bytes
    partition, epoch = _TP_TAIL.unpack_from(payload, name_end)
    return payload[_TP_HEAD.size : name_end].decode(), partition, epoch, name_end + _TP_TAIL.size


def encode_batch_entry(entry: BatchEntry) -> bytes:
    return _encode_tp(entry.topic, entry.partition, entry.leader_epoch) + entry.batch


def decode_batch_entry(payload: bytes) -> BatchEntry:
    topic, partition, epoch, end = _decode_tp(payload)
    return BatchEntry(topic, partition, epoch, payload[end:])


def encode_truncate_entry(entry: TruncateEntry) -> bytes:
    return _encode_tp(entry.topic, entry.partition, 0) + _TRUNCATE_TAIL.pack(entry.offset)


def decode_truncate_entry(payload: bytes) -> TruncateEntry:
    topic, partition, _, end = _decode_tp(payload)
    (offset,) = _TRUNCATE_TAIL.unpack_from(payload, end)
    return TruncateEntry(topic, partition, offset)
