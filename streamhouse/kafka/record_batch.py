"""Kafka RecordBatch v2 (magic 2) codec: parse, validate, split, re-offset, build and decode.

Sans-IO: every function takes bytes and returns values or bytes. The produce path needs only
the header functions (`validate_batch`, `split_batches`, `with_base_offset`), which never touch
the records; `build_batch` and `decode_records` serve tests, REST produce/consume and compaction.

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

import crc32c

from streamhouse.errors import ErrorCode, InvalidRecordBatch

Buffer: TypeAlias = bytes | bytearray | memoryview
Compressor: TypeAlias = Callable[[bytes], bytes]
"""Compresses a records section for the codec id passed alongside it."""
Decompressor: TypeAlias = Callable[[int, bytes], bytes]
"""Given (codec id, compressed records section), returns the uncompressed records section."""

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
VARINT_BYTES_MAX = 5
VARLONG_BYTES_MAX = 10
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NO_TIMESTAMP = -1
NO_PRODUCER_ID = -1

_OFFSET_STRUCT = struct.Struct(">q")
_LENGTH_STRUCT = struct.Struct(">i")
_REOFFSET_STRUCT = struct.Struct(">q4si")  # base_offset, batch_length (kept), leader epoch
_CRC_STRUCT = struct.Struct(">I")
_INT8_STRUCT = struct.Struct(">b")


class Compression(enum.IntEnum):
    """Codec ids of the attributes' low three bits."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class TimestampType(enum.IntEnum):
    """Attributes bit 3: who set the timestamps."""

    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


_CODEC_IDS = frozenset(int(c) for c in Compression)
_TIMESTAMP_TYPES = frozenset(int(t) for t in TimestampType)


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
    if header.compression > max(Compression):
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


# --- varints ---------------------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """Zig-zag LEB128 encoding of an int32 (Kafka's varint)."""
    if not INT32_MIN <= value <= INT32_MAX:
        raise ValueError(f"varint {value} outside int32")
    return _encode_unsigned(_zigzag(value))


def encode_varlong(value: int) -> bytes:
    """Zig-zag LEB128 encoding of an int64 (Kafka's varlong)."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"varlong {value} outside int64")
    return _encode_unsigned(_zigzag(value))


def decode_varint(buf: Buffer, pos: int = 0) -> tuple[int, int]:
    """(value, position after it) of the varint at `pos`; InvalidRecordBatch if malformed."""
    return _decode_zigzag(buf, pos, len(buf), VARINT_BYTES_MAX, 32)


def decode_varlong(buf: Buffer, pos: int = 0) -> tuple[int, int]:
    """(value, position after it) of the varlong at `pos`; InvalidRecordBatch if malformed."""
    return _decode_zigzag(buf, pos, len(buf), VARLONG_BYTES_MAX, 64)


def _zigzag(value: int) -> int:
    return value * 2 if value >= 0 else -value * 2 - 1


def _encode_unsigned(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _decode_zigzag(buf: Buffer, pos: int, end: int, max_bytes: int, bits: int) -> tuple[int, int]:
    raw, pos = _decode_unsigned(buf, pos, end, max_bytes)
    if raw >> bits:
        raise InvalidRecordBatch(f"varint value {raw} does not fit in {bits} bits")
    return (raw >> 1) ^ -(raw & 1), pos


def _decode_unsigned(buf: Buffer, pos: int, end: int, max_bytes: int) -> tuple[int, int]:
    result = 0
    for shift in range(0, 7 * max_bytes, 7):
        if pos >= end:
            raise InvalidRecordBatch(f"truncated varint ending at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
    raise InvalidRecordBatch(f"varint longer than {max_bytes} bytes ending at byte {pos}")


# --- records ---------------------------------------------------------------------------------

Headers: TypeAlias = tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class Record:
    """One record as stored in a batch: offset and timestamp relative to the batch header."""

    offset_delta: int
    timestamp_delta: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    attributes: int = 0


class SimpleRecord(NamedTuple):
    """A record as a producer hands it over: absolute timestamp, no offset yet."""

    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int = 0


def encode_record(record: Record) -> bytes:
    """The wire form of one record, length prefix included."""
    body = bytearray(_INT8_STRUCT.pack(record.attributes))
    body += encode_varlong(record.timestamp_delta)
    body += encode_varint(record.offset_delta)
    _put_nullable(body, record.key)
    _put_nullable(body, record.value)
    body += encode_varint(len(record.headers))
    for name, value in record.headers:
        _put_nullable(body, name.encode("utf-8"))
        _put_nullable(body, value)
    return encode_varint(len(body)) + body


def _put_nullable(out: bytearray, data: bytes | None) -> None:
    if data is None:
        out += encode_varint(-1)
    else:
        out += encode_varint(len(data))
        out += data


def build_batch(
    records: Sequence[SimpleRecord],
    *,
    base_offset: int = 0,
    base_timestamp: int | None = None,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    is_transactional: bool = False,
    is_control: bool = False,
    compression: int = Compression.NONE,
    compressor: Compressor | None = None,
    partition_leader_epoch: int = -1,
    timestamp_type: int = TimestampType.CREATE_TIME,
) -> bytes:
    """A batch of `records` at offset deltas 0..n-1, as a producer builds it.

    base_timestamp defaults to the first record's timestamp (as Kafka clients do), -1 if empty.
    A compressed batch needs the codec id in `compression` and its `compressor`.
    """
    if base_timestamp is None:
        base_timestamp = records[0].timestamp_ms if records else NO_TIMESTAMP
    stored = [
        Record(i, r.timestamp_ms - base_timestamp, r.key, r.value, tuple(r.headers))
        for i, r in enumerate(records)
    ]
    return encode_batch(
        stored,
        base_timestamp=base_timestamp,
        max_timestamp=max((r.timestamp_ms for r in records), default=base_timestamp),
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        is_transactional=is_transactional,
        is_control=is_control,
        compression=compression,
        compressor=compressor,
        partition_leader_epoch=partition_leader_epoch,
        timestamp_type=timestamp_type,
    )


def encode_batch(
    records: Sequence[Record],
    *,
    base_timestamp: int,
    max_timestamp: int | None = None,
    last_offset_delta: int | None = None,
    base_offset: int = 0,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    is_transactional: bool = False,
    is_control: bool = False,
    compression: int = Compression.NONE,
    compressor: Compressor | None = None,
    partition_leader_epoch: int = -1,
    timestamp_type: int = TimestampType.CREATE_TIME,
) -> bytes:
    """A batch of already-relative `records` (e.g. compaction's survivors, gaps allowed).

    max_timestamp defaults to the largest record timestamp, last_offset_delta to the last
    record's offset delta (0 if empty).
    """
    if max_timestamp is None:
        max_timestamp = base_timestamp + max((r.timestamp_delta for r in records), default=0)
    if last_offset_delta is None:
        last_offset_delta = records[-1].offset_delta if records else 0
    attributes = _attributes(compression, compressor, timestamp_type, is_transactional, is_control)
    body = b"".join(encode_record(r) for r in records)
    if compressor is not None:
        body = compressor(body)
    out = bytearray(HEADER_SIZE) + body
    fields = (
        base_offset,
        len(out) - LOG_OVERHEAD,
        partition_leader_epoch,
        CURRENT_MAGIC,
        0,
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        len(records),
    )
    HEADER_STRUCT.pack_into(out, 0, *fields)
    _CRC_STRUCT.pack_into(out, CRC_OFFSET, crc32c.crc32c(memoryview(out)[ATTRIBUTES_OFFSET:]))
    return bytes(out)


def _attributes(
    compression: int,
    compressor: Compressor | None,
    timestamp_type: int,
    is_transactional: bool,
    is_control: bool,
) -> int:
    if compression not in _CODEC_IDS:
        raise ValueError(f"compression codec id {compression} is not one of 0-4")
    if (compression == Compression.NONE) != (compressor is None):
        raise ValueError("pass a compressor exactly when compression is not 0 (none)")
    if timestamp_type not in _TIMESTAMP_TYPES:
        raise ValueError(f"timestamp_type {timestamp_type} is not 0 or 1")
    return (
        compression
        | (TIMESTAMP_TYPE_BIT if timestamp_type else 0)
        | (TRANSACTIONAL_BIT if is_transactional else 0)
        | (CONTROL_BIT if is_control else 0)
    )


def decode_records(batch: Buffer, decompressor: Decompressor | None = None) -> list[Record]:
    """Validate one batch (as stored, gaps allowed) and decode its records.

    A compressed batch needs `decompressor(codec_id, data) -> data`; without one, ValueError.
    """
    header = validate_batch(batch, from_producer=False)
    body = _records_section(memoryview(batch), header, decompressor)
    return _decode_records_section(body, header.record_count)


def _records_section(
    view: memoryview, header: BatchHeader, decompressor: Decompressor | None
) -> memoryview:
    raw = view[HEADER_SIZE:]
    if header.compression == Compression.NONE:
        return raw
    if decompressor is None:
        codec = Compression(header.compression).name.lower()
        raise ValueError(f"batch is {codec}-compressed and no decompressor was given")
    return memoryview(decompressor(header.compression, bytes(raw)))


def _decode_records_section(body: memoryview, count: int) -> list[Record]:
    records: list[Record] = []
    pos = 0
    for index in range(count):
        try:
            record, pos = _decode_record(body, pos)
        except InvalidRecordBatch as err:
            raise InvalidRecordBatch(f"record {index} of {count}: {err}") from err
        records.append(record)
    if pos != len(body):
        raise InvalidRecordBatch(
            f"{len(body) - pos} bytes left after the {count} records the header announces"
        )
    return records


def _decode_record(body: memoryview, pos: int) -> tuple[Record, int]:
    length, start = decode_varint(body, pos)
    end = start + length
    if length < RECORD_BODY_MIN or end > len(body):
        raise InvalidRecordBatch(
            f"record length {length} at byte {pos} is impossible: "
            f"{len(body) - start} bytes remain, a record takes at least {RECORD_BODY_MIN}"
        )
    reader = _Reader(body, start, end)
    record = Record(
        attributes=reader.int8(),
        timestamp_delta=reader.varlong(),
        offset_delta=reader.varint(),
        key=reader.nullable_bytes(),
        value=reader.nullable_bytes(),
        headers=reader.headers(),
    )
    reader.expect_end()
    return record, end


class _Reader:
    """Bounds-checked cursor over one record's bytes."""

    def __init__(self, view: memoryview, pos: int, end: int) -> None:
        self.view = view
        self.pos = pos
        self.end = end

    def int8(self) -> int:
        self._need(1)
        value: int = _INT8_STRUCT.unpack_from(self.view, self.pos)[0]
        self.pos += 1
        return value

    def varint(self) -> int:
        value, self.pos = _decode_zigzag(self.view, self.pos, self.end, VARINT_BYTES_MAX, 32)
        return value

    def varlong(self) -> int:
        value, self.pos = _decode_zigzag(self.view, self.pos, self.end, VARLONG_BYTES_MAX, 64)
        return value

    def nullable_bytes(self) -> bytes | None:
        length = self.varint()
        if length == -1:
            return None
        if length < -1:
            raise InvalidRecordBatch(f"negative length {length} at byte {self.pos}")
        self._need(length)
        data = bytes(self.view[self.pos : self.pos + length])
        self.pos += length
        return data

    def headers(self) -> Headers:
        count = self.varint()
        if count < 0:
            raise InvalidRecordBatch(f"negative header count {count}")
        return tuple((self._header_key(), self.nullable_bytes()) for _ in range(count))

    def _header_key(self) -> str:
        raw = self.nullable_bytes()
        if raw is None:
            raise InvalidRecordBatch("null header key")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidRecordBatch(f"header key is not valid UTF-8: {err}") from err

    def expect_end(self) -> None:
        if self.pos != self.end:
            raise InvalidRecordBatch(
                f"record length says it ends at byte {self.end} but its fields end at {self.pos}"
            )

    def _need(self, size: int) -> None:
        if self.pos + size > self.end:
            raise InvalidRecordBatch(
                f"field of {size} bytes at byte {self.pos} overruns the record (ends at {self.end})"
            )
