"""Kafka records inside a RecordBatch v2: encode and decode them, build whole batches.

Sans-IO. The produce path never needs this module (it keeps batches verbatim); tests, REST
produce/consume, compaction and SQL do. Headers are in `kafka.batch_header`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

import crc32c

from streamhouse.errors import InvalidRecordBatch
from streamhouse.kafka.batch_header import (
    ATTRIBUTES_OFFSET,
    CONTROL_BIT,
    CRC_OFFSET,
    CURRENT_MAGIC,
    DELETE_HORIZON_BIT,
    HEADER_SIZE,
    HEADER_STRUCT,
    LOG_OVERHEAD,
    RECORD_BODY_MIN,
    TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT,
    BatchHeader,
    Compression,
    TimestampType,
    validate_batch,
)
from streamhouse.kafka.sentinels import (
    NO_LEADER_EPOCH,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    NO_TIMESTAMP,
)
from streamhouse.kafka.varint import (
    VARINT_BYTES_MAX,
    VARLONG_BYTES_MAX,
    Buffer,
    decode_varint,
    decode_zigzag,
    encode_varint,
    encode_varlong,
)

Compressor: TypeAlias = Callable[[bytes], bytes]
"""Compresses a records section for the codec id passed alongside it."""
Decompressor: TypeAlias = Callable[[int, bytes], bytes]
"""Given (codec id, compressed records section), returns the uncompressed records section."""

_INT8_STRUCT = struct.Struct(">b")
_CRC_STRUCT = struct.Struct(">I")
_CODEC_IDS = frozenset(int(c) for c in Compression)
_TIMESTAMP_TYPES = frozenset(int(t) for t in TimestampType)

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
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    is_transactional: bool = False,
    is_control: bool = False,
    compression: int = Compression.NONE,
    compressor: Compressor | None = None,
    partition_leader_epoch: int = NO_LEADER_EPOCH,
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
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    is_transactional: bool = False,
    is_control: bool = False,
    compression: int = Compression.NONE,
    compressor: Compressor | None = None,
    partition_leader_epoch: int = NO_LEADER_EPOCH,
    timestamp_type: int = TimestampType.CREATE_TIME,
    has_delete_horizon: bool = False,
) -> bytes:
    """A batch of already-relative `records` (e.g. compaction's survivors, gaps allowed).

    max_timestamp defaults to the largest record timestamp, last_offset_delta to the last
    record's offset delta (0 if empty). `has_delete_horizon` sets the attribute bit saying
    base_timestamp is the delete horizon compaction stamped (KIP-534).
    """
    if max_timestamp is None:
        max_timestamp = base_timestamp + max((r.timestamp_delta for r in records), default=0)
    if last_offset_delta is None:
        last_offset_delta = records[-1].offset_delta if records else 0
    attributes = _attributes(compression, compressor, timestamp_type, is_transactional, is_control)
    if has_delete_horizon:
        attributes |= DELETE_HORIZON_BIT
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


def _decode_records_section(body: memoryview, count: int, *, quick: bool = True) -> list[Record]:
    """The records; `quick`: by `_quick_record` where it can (False: the checked reader only,
    which tests compare it with)."""
    data = bytes(body) if quick else b""  # one copy: bytes index and slice faster than a view
    records: list[Record] = []
    pos = 0
    for index in range(count):
        try:
            if not quick:
                raise _NotQuick()
            record, pos = _quick_record(data, pos)
        except (_NotQuick, IndexError, UnicodeDecodeError):
            try:  # the checked reader decodes the unusual record or names what is wrong
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


class _NotQuick(Exception):
    """The record is not one `_quick_record` decodes: the checked reader takes it over."""


_QUICK_VARINT_BYTES_MAX = 4  # 28 bits: fits a varint and a varlong, no overflow check needed


def _quick_record(data: bytes, pos: int) -> tuple[Record, int]:
    """`_decode_record` for the common record (varints of at most 4 bytes, well formed) with
    fewer calls and checks. It checks only what keeps it from answering another record than
    the checked reader would: any read past the record's end shows as the fields not ending
    where the length says (positions only grow); anything else it does not handle raises
    _NotQuick, IndexError or UnicodeDecodeError, and the caller asks the checked reader."""
    length, start = _quick_zigzag(data, pos)
    end = start + length
    if length < RECORD_BODY_MIN or end > len(data):
        raise _NotQuick()
    attributes = data[start]
    if attributes >= 0x80:
        attributes -= 0x100  # int8
    timestamp_delta, at = _quick_zigzag(data, start + 1)
    offset_delta, at = _quick_zigzag(data, at)
    key, at = _quick_bytes(data, at)
    value, at = _quick_bytes(data, at)
    count, at = _quick_zigzag(data, at)
    headers: Headers = ()
    if count:
        if count < 0:
            raise _NotQuick()
        found = []
        for _ in range(count):
            name, at = _quick_bytes(data, at)
            if name is None:
                raise _NotQuick()
            item, at = _quick_bytes(data, at)
            found.append((name.decode("utf-8"), item))
        headers = tuple(found)
    if at != end:
        raise _NotQuick()
    return Record(offset_delta, timestamp_delta, key, value, headers, attributes), end


def _quick_bytes(data: bytes, pos: int) -> tuple[bytes | None, int]:
    size, pos = _quick_zigzag(data, pos)
    if size < 0:
        if size != -1:
            raise _NotQuick()
        return None, pos
    return data[pos : pos + size], pos + size


def _quick_zigzag(data: bytes, pos: int) -> tuple[int, int]:
    raw = data[pos]
    if raw < 0x80:  # most varints in a record are one or two bytes: no loop for those
        return (raw >> 1) ^ -(raw & 1), pos + 1
    second = data[pos + 1]
    if second < 0x80:
        raw = (raw & 0x7F) | second << 7
        return (raw >> 1) ^ -(raw & 1), pos + 2
    raw = (raw & 0x7F) | (second & 0x7F) << 7
    for shift in range(14, 7 * _QUICK_VARINT_BYTES_MAX, 7):
        byte = data[pos + shift // 7]
        raw |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (raw >> 1) ^ -(raw & 1), pos + shift // 7 + 1
    raise _NotQuick()


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
        value, self.pos = decode_zigzag(self.view, self.pos, self.end, VARINT_BYTES_MAX, 32)
        return value

    def varlong(self) -> int:
        value, self.pos = decode_zigzag(self.view, self.pos, self.end, VARLONG_BYTES_MAX, 64)
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
