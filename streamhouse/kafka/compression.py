"""Kafka record-batch compression codecs: compress and boundedly decompress a records section.

Pure bytes in, bytes out. Codec ids are those of `batch_header.Compression`:

- 1 gzip: one or more gzip members (the standard library's zlib).
- 2 snappy: raw snappy, or the xerial/snappy-java framing the Java client writes
  (`\\x82SNAPPY\\x00`, version, compatible version, then [int32 length][raw snappy block]...).
  Decoding accepts both; encoding writes xerial framing with 32 KiB blocks, byte-compatible with
  the Java producer, so every consumer that reads Java-produced batches reads ours (cramjam).
- 3 lz4: the LZ4 frame format of Kafka >= 0.10, one or more frames (lz4).
- 4 zstd: one or more Zstandard frames (`compression.zstd`, from backports.zstd before 3.14).

Every decoder is chosen for streaming with a cap on output, so `output_bytes_max` stops a
decompression bomb before it is inflated: past the cap, or on corrupt or truncated input,
`InvalidRecordBatch` is raised, never a codec library's own exception.
"""

from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Callable
from typing import Protocol

import cramjam
import lz4.frame

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

from streamhouse.errors import ErrorCode, InvalidRecordBatch
from streamhouse.kafka.batch_header import Compression
from streamhouse.kafka.records import Decompressor
from streamhouse.kafka.varint import Buffer

GZIP_LEVEL = 6  # zlib's default, as Java's GZIPOutputStream uses
GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip container (header and CRC trailer), not zlib or raw
LZ4_LEVEL = 0  # lz4's fast mode
LZ4_BLOCK_SIZE = lz4.frame.BLOCKSIZE_MAX64KB  # the block size Kafka's Java client writes
ZSTD_LEVEL = 3  # Kafka's default compression.zstd.level

XERIAL_MAGIC = b"\x82SNAPPY\x00"
XERIAL_VERSION = 1
XERIAL_COMPATIBLE_VERSION = 1
XERIAL_HEADER = struct.Struct(">8sii")  # magic, version, compatible version
XERIAL_CHUNK_LENGTH = struct.Struct(">i")
XERIAL_BLOCK_BYTES = 32 * 1024  # snappy-java's default block size: uncompressed bytes per chunk


class _FrameDecoder(Protocol):
    """The streaming decompressor shape shared by zlib, lz4.frame and zstd."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, /, max_length: int = ...) -> bytes: ...


# --- public API ------------------------------------------------------------------------------


def compress(codec_id: int, data: bytes) -> bytes:
    """`data` compressed with codec `codec_id` (0 returns it unchanged); ValueError if unknown."""
    encode = _ENCODERS.get(codec_id)
    if encode is None:
        raise ValueError(f"compression codec id {codec_id} is not one of 0-4")
    return encode(data)


def decompress(codec_id: int, data: Buffer, *, output_bytes_max: int) -> bytes:
    """`data` decompressed with codec `codec_id`, at most `output_bytes_max` bytes of it.

    Raises InvalidRecordBatch if the codec id is unknown, the data is corrupt or truncated, or
    it would inflate past `output_bytes_max`.
    """
    _check_bound(output_bytes_max)
    decode = _DECODERS.get(codec_id)
    if decode is None:
        raise InvalidRecordBatch(
            f"unknown compression codec id {codec_id}: expected 0-4 (none, gzip, snappy, lz4, zstd)"
        )
    return decode(bytes(data), output_bytes_max)


def decompressor(output_bytes_max: int) -> Decompressor:
    """The `(codec_id, data) -> bytes` callable `records.decode_records` takes, bounded."""
    _check_bound(output_bytes_max)

    def decode(codec_id: int, data: bytes) -> bytes:
        return decompress(codec_id, data, output_bytes_max=output_bytes_max)

    return decode


def _check_bound(output_bytes_max: int) -> None:
    if output_bytes_max < 0:
        raise ValueError(f"output_bytes_max {output_bytes_max} is negative")


def _too_large(codec: Compression, limit: int) -> InvalidRecordBatch:
    return InvalidRecordBatch(
        f"{codec.name.lower()}-compressed records inflate past output_bytes_max={limit} bytes; "
        "refusing to decompress further (oversized batch or decompression bomb)",
        code=ErrorCode.MESSAGE_TOO_LARGE,
    )


def _corrupt(codec: Compression, detail: object) -> InvalidRecordBatch:
    return InvalidRecordBatch(f"corrupt {codec.name.lower()}-compressed records: {detail}")


# --- none ------------------------------------------------------------------------------------


def _copy(data: bytes) -> bytes:
    return data


def _check_plain(data: bytes, limit: int) -> bytes:
    if len(data) > limit:
        raise _too_large(Compression.NONE, limit)
    return data


# --- streaming codecs: gzip, lz4, zstd -------------------------------------------------------


def _gzip_compress(data: bytes) -> bytes:
    return zlib.compress(data, GZIP_LEVEL, wbits=GZIP_WBITS)


def _lz4_compress(data: bytes) -> bytes:
    compressed: bytes = lz4.frame.compress(
        data,
        compression_level=LZ4_LEVEL,
        block_size=LZ4_BLOCK_SIZE,
        block_linked=False,
        content_checksum=False,
        store_size=False,
    )
    return compressed


def _zstd_compress(data: bytes) -> bytes:
    return zstd.compress(data, level=ZSTD_LEVEL)


def _new_gzip_decoder() -> _FrameDecoder:
    return zlib.decompressobj(wbits=GZIP_WBITS)


def _new_lz4_decoder() -> _FrameDecoder:
    decoder: _FrameDecoder = lz4.frame.LZ4FrameDecompressor()
    return decoder


def _gzip_decompress(data: bytes, limit: int) -> bytes:
    return _decode_frames(Compression.GZIP, _new_gzip_decoder, zlib.error, data, limit)


def _lz4_decompress(data: bytes, limit: int) -> bytes:
    return _decode_frames(Compression.LZ4, _new_lz4_decoder, RuntimeError, data, limit)


def _zstd_decompress(data: bytes, limit: int) -> bytes:
    return _decode_frames(Compression.ZSTD, zstd.ZstdDecompressor, zstd.ZstdError, data, limit)


def _decode_frames(
    codec: Compression,
    new_decoder: Callable[[], _FrameDecoder],
    codec_error: type[Exception],
    data: bytes,
    limit: int,
) -> bytes:
    """Decode back-to-back frames (gzip members) filling `data`, asking for no more than fits."""
    parts: list[bytes] = []
    produced = 0
    rest = data
    while True:
        decoder = new_decoder()
        try:
            out = decoder.decompress(rest, max_length=limit - produced + 1)
        except codec_error as err:
            raise _corrupt(codec, err) from err
        produced += len(out)
        if produced > limit:
            raise _too_large(codec, limit)
        if not decoder.eof:
            raise _corrupt(codec, f"truncated: input ends inside frame {len(parts)}")
        parts.append(out)
        rest = decoder.unused_data
        if not rest:
            return b"".join(parts)


# --- snappy ----------------------------------------------------------------------------------


def _snappy_compress(data: bytes) -> bytes:
    """Xerial framing: header, then each 32 KiB of input as [int32 length][raw snappy block]."""
    out = bytearray(XERIAL_HEADER.pack(XERIAL_MAGIC, XERIAL_VERSION, XERIAL_COMPATIBLE_VERSION))
    for start in range(0, len(data), XERIAL_BLOCK_BYTES):
        block = cramjam.snappy.compress_raw(data[start : start + XERIAL_BLOCK_BYTES])
        out += XERIAL_CHUNK_LENGTH.pack(len(block))
        out += block
    return bytes(out)


def _snappy_decompress(data: bytes, limit: int) -> bytes:
    if data.startswith(XERIAL_MAGIC):
        return _xerial_decompress(data, limit)
    return _snappy_block(data, limit)


def _xerial_decompress(data: bytes, limit: int) -> bytes:
    """Chunks after the header; the version fields are not checked (one layout exists)."""
    if len(data) < XERIAL_HEADER.size:
        raise _corrupt(Compression.SNAPPY, f"xerial header truncated at {len(data)} bytes")
    view = memoryview(data)
    parts: list[bytes] = []
    produced = 0
    pos = XERIAL_HEADER.size
    while pos < len(data):
        start, end = _xerial_chunk_span(data, pos)
        block = _snappy_block(view[start:end], limit, produced)
        produced += len(block)
        parts.append(block)
        pos = end
    return b"".join(parts)


def _xerial_chunk_span(data: bytes, pos: int) -> tuple[int, int]:
    """(start, end) of the snappy block whose length field is at `pos`."""
    if len(data) - pos < XERIAL_CHUNK_LENGTH.size:
        raise _corrupt(Compression.SNAPPY, f"xerial chunk length truncated at byte {pos}")
    (length,) = XERIAL_CHUNK_LENGTH.unpack_from(data, pos)
    start = pos + XERIAL_CHUNK_LENGTH.size
    if length <= 0 or start + length > len(data):
        raise _corrupt(
            Compression.SNAPPY,
            f"xerial chunk at byte {pos} declares {length} bytes, {len(data) - start} remain",
        )
    return start, start + length


def _snappy_block(block: Buffer, limit: int, produced: int = 0) -> bytes:
    """One raw snappy block; the output size its header declares is checked before inflating."""
    try:
        declared = cramjam.snappy.decompress_raw_len(block)
        if produced + declared > limit:
            raise _too_large(Compression.SNAPPY, limit)
        return bytes(cramjam.snappy.decompress_raw(block))
    except cramjam.DecompressionError as err:
        raise _corrupt(Compression.SNAPPY, err) from err


_ENCODERS: dict[int, Callable[[bytes], bytes]] = {
    Compression.NONE: _copy,
    Compression.GZIP: _gzip_compress,
    Compression.SNAPPY: _snappy_compress,
    Compression.LZ4: _lz4_compress,
    Compression.ZSTD: _zstd_compress,
}
_DECODERS: dict[int, Callable[[bytes, int], bytes]] = {
    Compression.NONE: _check_plain,
    Compression.GZIP: _gzip_decompress,
    Compression.SNAPPY: _snappy_decompress,
    Compression.LZ4: _lz4_decompress,
    Compression.ZSTD: _zstd_decompress,
}
