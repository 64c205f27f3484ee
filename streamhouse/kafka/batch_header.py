"""Kafka RecordBatch v2 (magic 2) headers: parse, validate, split and re-offset batches without
touching their records: all the produce path needs (the record codec is `kafka.records`).

Sans-IO: every function takes bytes and returns values or bytes.

Layout (big-endian), 61-byte header then the records:

    0  base_offset int64          21 attributes int16          43 producer_id int64
    8  batch_length int32         23 last_offset_delta int32   51 producer_epoch int16
    12 partition_leader_epoch     27 base_timestamp int64      53 base_sequence int32
    16 magic int8                 35 max_timestamp int64       57 record_count int32
    17 crc uint32 (CRC-32C of bytes 21..end)

batch_length counts the bytes after itself, so a batch occupies batch_length + 12 bytes.
Each record: length varint, attributes int8, timestamp_delta varlong, offset_delta varint,
key (varint length, -1 = null), value (same), header count varint, headers (key, value).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import crc32c

from streamhouse.errors import ErrorCode, InvalidRecordBatch
from streamhouse.kafka.sentinels import NO_PRODUCER_ID
from streamhouse.kafka.varint import INT64_MAX, Buffer

HEADER_STRUCT = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER_STRUCT.size  # 61
LOG_OVERHEAD = 12  # base_offset + batch_length, not counted by batch_length
BATCH_LENGTH_MIN = HEADER_SIZE - LOG_OVERHEAD  # a batch with no records
BATCH_LENGTH_OFFSET = 8
LEADER_EPOCH_OFFSET = 12
MAGIC_OFFSET = 16
CRC_OFFSET = 17
ATTRIBUTES_OFFSET = 21  # the CRC covers bytes from here to the end
CURRENT_MAGIC = 2
LEGACY_MAGICS = (0, 1)  # MessageSet v0/v1, before Kafka 0.11

CODEC_MASK = 0x07
TIMESTAMP_TYPE_BIT = 0x08
TRANSACTIONAL_BIT = 0x10
CONTROL_BIT = 0x20
DELETE_HORIZON_BIT = 0x40

RECORD_BYTES_MIN = 7  # length, attributes, ts delta, offset delta, key, value, header count
RECORD_BODY_MIN = RECORD_BYTES_MIN - 1  # the same without the length prefix

_OFFSET_STRUCT = struct.Struct(">q")
_LENGTH_STRUCT = struct.Struct(">i")
_REOFFSET_STRUCT = struct.Struct(">q4si")  # base_offset, batch_length (kept), leader epoch
_INT8_STRUCT = struct.Struct(">b")


class Compression(enum.IntEnum):
    """Codec ids of the attributes' low three bits."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


_COMPRESSION_ID_MAX = max(Compression)


class TimestampType(enum.IntEnum):
    """Attributes bit 3: who set the timestamps."""

    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The 61-byte header of one v2 batch, fields in wire order."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def compression(self) -> int:
        """Codec id 0-4 (see `Compression`); 5-7 only in corrupt batches."""
        return self.attributes & CODEC_MASK

    @property
    def timestamp_type(self) -> int:
        """0 = CreateTime, 1 = LogAppendTime (see `TimestampType`)."""
        return 1 if self.attributes & TIMESTAMP_TYPE_BIT else 0

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_BIT)

    @property
    def has_delete_horizon(self) -> bool:
        """Set by compaction (KIP-534): base_timestamp then holds the delete horizon."""
        return bool(self.attributes & DELETE_HORIZON_BIT)

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1

    @property
    def total_size(self) -> int:
        """Bytes the whole batch occupies, header included."""
        return self.batch_length + LOG_OVERHEAD


# --- header parsing and validation -----------------------------------------------------------


def parse_header(buf: Buffer, pos: int = 0) -> BatchHeader:
    """Read the header at `pos` without checking it; raises only if fewer than 61 bytes remain."""
    available = len(buf) - pos
    if available < HEADER_SIZE:
        raise InvalidRecordBatch(
            f"truncated batch header: {available} bytes at byte {pos}, "
            f"a RecordBatch v2 header needs {HEADER_SIZE}"
        )
    return BatchHeader(*HEADER_STRUCT.unpack_from(buf, pos))


def validate_batch(buf: Buffer, *, from_producer: bool = True) -> BatchHeader:
    """Check that `buf` is exactly one sound v2 batch and return its header.

    `from_producer` adds the rules a batch fresh from a client must meet: at least one record,
    offset deltas 0..count-1, coherent producer id/epoch/sequence, no control batch. Pass False
    for batches read back from a log, where compaction leaves gaps and empty batches.
    """
    _check_magic(buf, 0)
    header = parse_header(buf)
    _check_length(header, len(buf))
    _check_crc(buf, header)
    _check_fields(header)
    if from_producer:
        _check_producer_rules(header)
    return header


def _check_magic(buf: Buffer, pos: int) -> None:
    """Reject a non-v2 batch at `pos` as soon as its magic byte (shared by all versions) shows."""
    if len(buf) - pos <= MAGIC_OFFSET:
        return
    magic = _INT8_STRUCT.unpack_from(buf, pos + MAGIC_OFFSET)[0]
    if magic in LEGACY_MAGICS:
        raise InvalidRecordBatch(
            f"message format v{magic} (magic {magic}) is not supported: only RecordBatch v2 "
            "(magic 2, Kafka 0.11+) is accepted; upgrade the client or stop pinning an old "
            "api.version / message format",
            code=ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT,
        )
    if magic != CURRENT_MAGIC:
        raise InvalidRecordBatch(
            f"unknown magic {magic} (byte {MAGIC_OFFSET} of the batch), expected "
            f"{CURRENT_MAGIC}: the records are corrupt or not Kafka record batches"
        )


def _check_length(header: BatchHeader, size: int) -> None:
    if header.batch_length < BATCH_LENGTH_MIN:
        raise InvalidRecordBatch(
            f"batch_length {header.batch_length} is below the minimum {BATCH_LENGTH_MIN} "
            "(the header fields after the length alone take that much)"
        )
    if header.total_size != size:
        what = "truncated" if header.total_size > size else "trailing bytes after it"
        raise InvalidRecordBatch(
            f"batch_length {header.batch_length} declares a {header.total_size}-byte batch "
            f"but {size} bytes were given ({what})"
        )


def _check_crc(buf: Buffer, header: BatchHeader) -> None:
    computed: int = crc32c.crc32c(memoryview(buf)[ATTRIBUTES_OFFSET : header.total_size])
    if computed != header.crc:
        raise InvalidRecordBatch(
            f"CRC mismatch: header says 0x{header.crc:08x} but bytes {ATTRIBUTES_OFFSET}.."
            f"{header.total_size} hash to 0x{computed:08x} (CRC-32C/Castagnoli); the batch "
            "was corrupted in transit or built with the wrong checksum"
        )


def _check_fields(header: BatchHeader) -> None:
    """Rules every stored batch obeys, compacted or not."""
    if header.compression > _COMPRESSION_ID_MAX:
        raise InvalidRecordBatch(
            f"unknown compression codec id {header.compression} in attributes "
            f"0x{header.attributes:04x}: expected 0-4 (none, gzip, snappy, lz4, zstd)"
        )
    if header.record_count < 0:
        raise InvalidRecordBatch(f"negative record_count {header.record_count}")
    if header.last_offset_delta < 0:
        raise InvalidRecordBatch(f"negative last_offset_delta {header.last_offset_delta}")
    if header.record_count > header.last_offset_delta + 1:
        raise InvalidRecordBatch(
            f"record_count {header.record_count} exceeds the offset range of the batch "
            f"(last_offset_delta {header.last_offset_delta} allows {header.last_offset_delta + 1})"
        )
    records_bytes = header.batch_length - BATCH_LENGTH_MIN
    if header.compression == Compression.NONE and (
        header.record_count * RECORD_BYTES_MIN > records_bytes
    ):
        raise InvalidRecordBatch(
            f"record_count {header.record_count} cannot fit in {records_bytes} bytes of "
            f"uncompressed records (each takes at least {RECORD_BYTES_MIN})"
        )


def _check_producer_rules(header: BatchHeader) -> None:
    """Rules for a batch as a client sends it (before compaction could thin it out)."""
    if header.record_count == 0:
        raise InvalidRecordBatch("empty batch: a produced batch must hold at least one record")
    if header.record_count != header.last_offset_delta + 1:
        raise InvalidRecordBatch(
            f"last_offset_delta {header.last_offset_delta} implies "
            f"{header.last_offset_delta + 1} records but record_count is {header.record_count}: "
            "a produced batch numbers its records 0..count-1"
        )
    if header.is_control:
        raise InvalidRecordBatch("clients may not produce control batches (transaction markers)")
    _check_producer_fields(header)


def _check_producer_fields(header: BatchHeader) -> None:
    pid = header.producer_id
    if pid < NO_PRODUCER_ID:
        raise InvalidRecordBatch(f"invalid producer_id {pid}: must be -1 (none) or >= 0")
    if header.is_transactional and pid == NO_PRODUCER_ID:
        raise InvalidRecordBatch(
            "transactional batch without a producer_id: the client must call InitProducerId"
        )
    if pid != NO_PRODUCER_ID and (header.producer_epoch < 0 or header.base_sequence < 0):
        raise InvalidRecordBatch(
            f"batch from producer_id {pid} has producer_epoch {header.producer_epoch} and "
            f"base_sequence {header.base_sequence}: an idempotent batch needs both >= 0"
        )


# --- splitting a records field ---------------------------------------------------------------


def iter_batches(
    buf: Buffer, *, allow_partial_tail: bool = False, from_producer: bool = True
) -> Iterator[tuple[BatchHeader, memoryview]]:
    """Yield (header, zero-copy view) for each batch of a concatenated records field.

    Every batch is validated (see `validate_batch`). A partial batch at the end is an error
    unless `allow_partial_tail` (fetch responses cut at max_bytes), in which case it is dropped.
    """
    view = memoryview(buf)
    pos = 0
    index = 0
    while pos < len(view):
        end = _batch_end(view, pos, index)
        if end is None:
            if allow_partial_tail:
                return
            raise _partial_tail_error(view, pos, index)
        batch = view[pos:end]
        yield _validate_at(batch, pos, index, from_producer), batch
        pos = end
        index += 1


def split_batches(
    buf: Buffer, *, allow_partial_tail: bool = False, from_producer: bool = True
) -> list[memoryview]:
    """The validated batches of a records field as zero-copy views (see `iter_batches`)."""
    return [
        batch
        for _, batch in iter_batches(
            buf, allow_partial_tail=allow_partial_tail, from_producer=from_producer
        )
    ]


def _batch_end(view: memoryview, pos: int, index: int) -> int | None:
    """End of the batch starting at `pos`, or None if the buffer stops before it does."""
    try:
        _check_magic(view, pos)
    except InvalidRecordBatch as err:
        raise _located(err, pos, index) from err
    if len(view) - pos < LOG_OVERHEAD:
        return None
    batch_length: int = _LENGTH_STRUCT.unpack_from(view, pos + BATCH_LENGTH_OFFSET)[0]
    if batch_length < BATCH_LENGTH_MIN:
        raise InvalidRecordBatch(
            f"batch {index} at byte {pos}: batch_length {batch_length} is below the minimum "
            f"{BATCH_LENGTH_MIN}"
        )
    end = pos + LOG_OVERHEAD + batch_length
    return end if end <= len(view) else None


def _validate_at(batch: memoryview, pos: int, index: int, from_producer: bool) -> BatchHeader:
    try:
        return validate_batch(batch, from_producer=from_producer)
    except InvalidRecordBatch as err:
        raise _located(err, pos, index) from err


def _located(err: InvalidRecordBatch, pos: int, index: int) -> InvalidRecordBatch:
    return InvalidRecordBatch(f"batch {index} at byte {pos}: {err}", code=err.code)


def _partial_tail_error(view: memoryview, pos: int, index: int) -> InvalidRecordBatch:
    left = len(view) - pos
    if left < LOG_OVERHEAD:
        detail = f"{left} bytes left, too few for even the batch length field"
    else:
        need = LOG_OVERHEAD + _LENGTH_STRUCT.unpack_from(view, pos + BATCH_LENGTH_OFFSET)[0]
        detail = f"{left} bytes left but its batch_length declares {need}"
    return InvalidRecordBatch(f"records end with a partial batch {index} at byte {pos}: {detail}")


# --- re-offsetting ---------------------------------------------------------------------------


def with_base_offset(batch: Buffer, base_offset: int, leader_epoch: int | None = None) -> bytes:
    """A copy of `batch` with base_offset (and partition_leader_epoch) replaced.

    Neither field is covered by the CRC, so the batch stays valid. One copy of the batch.
    """
    if len(batch) < HEADER_SIZE:
        raise ValueError(f"not a record batch: {len(batch)} bytes, header needs {HEADER_SIZE}")
    if not 0 <= base_offset <= INT64_MAX:
        raise ValueError(f"base_offset {base_offset} outside 0..{INT64_MAX}")
    view = memoryview(batch)
    if leader_epoch is None:
        return _OFFSET_STRUCT.pack(base_offset) + view[BATCH_LENGTH_OFFSET:]
    head = _REOFFSET_STRUCT.pack(
        base_offset, bytes(view[BATCH_LENGTH_OFFSET:LEADER_EPOCH_OFFSET]), leader_epoch
    )
    return head + view[MAGIC_OFFSET:]
