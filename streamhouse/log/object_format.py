"""The object format: header, zstd blocks of verbatim record batches, footer index, trailer.

    [header 8 B: magic "SHO1", version, flags, reserved]
    [block]*      one partition each, zstd of concatenated Kafka record batches
    [footer]      org, agent, created_ms, then one index entry per block
    [trailer 16 B: footer length, footer CRC32C, magic "SHOF", version, flags, reserved]

A reader fetches the tail of the object (the trailer and, usually, the whole
footer in one range read), then only the blocks it needs. Each index entry
carries the CRC32C of its compressed block, so corruption is detected per block.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import crc32c
import zstandard

from streamhouse.errors import CorruptObject

FORMAT_VERSION = 1
HEADER = struct.Struct(">4sBBH")
HEADER_MAGIC = b"SHO1"
TRAILER = struct.Struct(">II4sBBH")
TRAILER_MAGIC = b"SHOF"
TRAILER_BYTES = TRAILER.size
FOOTER_READ_GUESS_BYTES = 64 * 1024
FOOTER_BYTES_MAX = 64 * 1024 * 1024
BLOCK_RAW_BYTES_MAX = 256 * 1024 * 1024

_STR_LEN = struct.Struct(">H")
_FOOTER_HEAD = struct.Struct(">qI")
_ENTRY = struct.Struct(">iiqqqQIII")


@dataclass(frozen=True)
class BlockSpec:
    """What goes into one block: the batches of one partition, in offset order."""

    topic: str
    partition: int
    leader_epoch: int
    first_offset: int
    last_offset: int
    max_timestamp_ms: int
    data: bytes


@dataclass(frozen=True)
class BlockIndexEntry:
    """Where a block sits in its object and what it holds."""

    topic: str
    partition: int
    leader_epoch: int
    first_offset: int
    last_offset: int
    max_timestamp_ms: int
    position: int
    length: int
    raw_length: int
    checksum: int


@dataclass(frozen=True)
class ObjectFooter:
    """The self-description of an object."""

    org: str
    agent: str
    created_ms: int
    blocks: tuple[BlockIndexEntry, ...]


def _pack_str(value: str) -> bytes:
    raw = value.encode()
    assert len(raw) < 1 << 16, value
    return _STR_LEN.pack(len(raw)) + raw


def _unpack_str(buf: bytes, position: int) -> tuple[str, int]:
    (length,) = _STR_LEN.unpack_from(buf, position)
    start = position + _STR_LEN.size
    return buf[start : start + length].decode(), start + length


def encode_object(
    blocks: Sequence[BlockSpec], org: str, agent: str, created_ms: int, zstd_level: int = 3
) -> tuple[bytes, ObjectFooter]:
    """Build a whole object; returns its bytes and its footer."""
    compressor = zstandard.ZstdCompressor(level=zstd_level)
    parts = [HEADER.pack(HEADER_MAGIC, FORMAT_VERSION, 0, 0)]
    position = HEADER.size
    entries: list[BlockIndexEntry] = []
    for spec in blocks:
        assert spec.first_offset <= spec.last_offset, spec
        assert len(spec.data) <= BLOCK_RAW_BYTES_MAX, len(spec.data)
        packed = compressor.compress(spec.data)
        entries.append(
            BlockIndexEntry(
                spec.topic,
                spec.partition,
                spec.leader_epoch,
                spec.first_offset,
                spec.last_offset,
                spec.max_timestamp_ms,
                position,
                len(packed),
                len(spec.data),
                crc32c.crc32c(packed),
            )
        )
        parts.append(packed)
        position += len(packed)
    footer = ObjectFooter(org, agent, created_ms, tuple(entries))
    footer_bytes = encode_footer(footer)
    trailer = TRAILER.pack(
        len(footer_bytes), crc32c.crc32c(footer_bytes), TRAILER_MAGIC, FORMAT_VERSION, 0, 0
    )
    parts += [footer_bytes, trailer]
    return b"".join(parts), footer


def encode_footer(footer: ObjectFooter) -> bytes:
    parts = [_pack_str(footer.org), _pack_str(footer.agent)]
    parts.append(_FOOTER_HEAD.pack(footer.created_ms, len(footer.blocks)))
    for entry in footer.blocks:
        parts.append(_pack_str(entry.topic))
        parts.append(
            _ENTRY.pack(
                entry.partition,
                entry.leader_epoch,
                entry.first_offset,
                entry.last_offset,
                entry.max_timestamp_ms,
                entry.position,
                entry.length,
                entry.raw_length,
                entry.checksum,
            )
        )
    return b"".join(parts)


def parse_trailer(tail: bytes, object_size: int) -> tuple[int, int]:
    """From the object's last bytes: (footer position, footer length). Raises CorruptObject."""
    if len(tail) < TRAILER_BYTES or object_size < HEADER.size + TRAILER_BYTES:
        raise CorruptObject(f"object of {object_size} bytes is too small to hold a trailer")
    fields = TRAILER.unpack_from(tail, len(tail) - TRAILER_BYTES)
    length, _checksum, magic, version, flags, reserved = fields
    if magic != TRAILER_MAGIC or (version, flags, reserved) != (FORMAT_VERSION, 0, 0):
        raise CorruptObject(f"object trailer has magic {magic!r} version {version}: not ours")
    position = object_size - TRAILER_BYTES - length
    if length > FOOTER_BYTES_MAX or position < HEADER.size:
        raise CorruptObject(f"object footer length {length} does not fit the object")
    return position, length


def decode_footer(footer_bytes: bytes, trailer: bytes) -> ObjectFooter:
    """Check the footer against the trailer's CRC and decode it. Raises CorruptObject."""
    length, checksum, *_ = TRAILER.unpack_from(trailer, len(trailer) - TRAILER_BYTES)
    if len(footer_bytes) != length or crc32c.crc32c(footer_bytes) != checksum:
        raise CorruptObject("object footer fails its checksum")
    try:
        return _decode_footer_fields(footer_bytes)
    except (struct.error, UnicodeDecodeError) as exc:
        raise CorruptObject(f"object footer is malformed: {exc}") from exc


def _decode_footer_fields(buf: bytes) -> ObjectFooter:
    org, position = _unpack_str(buf, 0)
    agent, position = _unpack_str(buf, position)
    created_ms, count = _FOOTER_HEAD.unpack_from(buf, position)
    position += _FOOTER_HEAD.size
    entries: list[BlockIndexEntry] = []
    for _ in range(count):
        topic, position = _unpack_str(buf, position)
        fields = _ENTRY.unpack_from(buf, position)
        position += _ENTRY.size
        entries.append(BlockIndexEntry(topic, *fields))
    if position != len(buf):
        raise CorruptObject(f"object footer has {len(buf) - position} unexpected trailing bytes")
    return ObjectFooter(org, agent, created_ms, tuple(entries))


def footer_from_tail(tail: bytes, object_size: int) -> ObjectFooter | int:
    """Decode the footer from the object's last bytes, or say how many tail bytes it needs."""
    position, length = parse_trailer(tail, object_size)
    needed_bytes = object_size - position
    if len(tail) < needed_bytes:
        return needed_bytes
    start = len(tail) - needed_bytes
    return decode_footer(tail[start : start + length], tail[-TRAILER_BYTES:])


def decode_block(packed: bytes, entry: BlockIndexEntry) -> bytes:
    """The raw batches of a block, checked against its index entry. Raises CorruptObject."""
    if len(packed) != entry.length or crc32c.crc32c(packed) != entry.checksum:
        raise CorruptObject(
            f"block {entry.topic}-{entry.partition}@{entry.first_offset} fails its checksum"
        )
    try:
        raw = zstandard.ZstdDecompressor().decompress(packed, max_output_size=entry.raw_length)
    except zstandard.ZstdError as exc:
        raise CorruptObject(f"block {entry.topic}-{entry.partition} does not decompress") from exc
    if len(raw) != entry.raw_length:
        raise CorruptObject(f"block {entry.topic}-{entry.partition} has the wrong raw length")
    return raw


def decode_object(data: bytes) -> tuple[ObjectFooter, list[bytes]]:
    """A whole object's footer and every block's raw bytes (for tools and tests)."""
    if len(data) < HEADER.size or HEADER.unpack_from(data) != (HEADER_MAGIC, FORMAT_VERSION, 0, 0):
        raise CorruptObject("object header is not SHO1 version 1")
    footer = footer_from_tail(data, len(data))
    assert isinstance(footer, ObjectFooter)
    blocks = [
        decode_block(data[entry.position : entry.position + entry.length], entry)
        for entry in footer.blocks
    ]
    return footer, blocks
