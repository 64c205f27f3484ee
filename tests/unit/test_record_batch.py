"""RecordBatch v2 codec: round trips, header fields, corruption and truncation, golden vectors."""

from __future__ import annotations

import gzip
import struct

import crc32c
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamhouse.errors import ErrorCode, InvalidRecordBatch
from streamhouse.kafka.batch_header import (
    ATTRIBUTES_OFFSET,
    CRC_OFFSET,
    HEADER_SIZE,
    HEADER_STRUCT,
    BatchHeader,
    Compression,
    TimestampType,
    iter_batches,
    parse_header,
    split_batches,
    validate_batch,
    with_base_offset,
)
from streamhouse.kafka.records import (
    Record,
    SimpleRecord,
    build_batch,
    decode_records,
    encode_batch,
    encode_record,
)
from streamhouse.kafka.varint import (
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    decode_varint,
    decode_varlong,
    encode_varint,
    encode_varlong,
)

# --- golden vectors ----------------------------------------------------------------------------
# Produced offline by kafka-python 3.0.12, kafka.record.default_records.DefaultRecordBatchBuilder
# (magic=2, batch_size=1 MiB), records appended at offsets 0, 1, 2 with the inputs below.
# kafka-python writes base_offset 0 and partition_leader_epoch 0.

# compression_type=0, is_transactional=True, producer_id=4242, producer_epoch=3, base_sequence=17
GOLDEN_PLAIN_RECORDS = [
    SimpleRecord(b"k1", b"hello", (), 1700000000000),
    SimpleRecord(None, b"world", (("h1", b"v1"), ("h2", None)), 1700000000005),
    SimpleRecord(b"", None, (), 1699999999990),
]
GOLDEN_PLAIN = bytes.fromhex(
    "00000000000000000000005c00000000020cb483c00010000000020000018bcfe568000000018bcfe568"
    "050000000000001092000300000011000000031a000000046b310a68656c6c6f002a000a02010a776f72"
    "6c6404046831047631046832010c001304000100"
)

# compression_type=1 (gzip), no producer id; records i=0..2:
# key b"key-%d" % i, value b"a" * 200, headers [("trace", b"x" * 10)], timestamp 1700000000000 + i
GOLDEN_GZIP_RECORDS = [
    SimpleRecord(b"key-%d" % i, b"a" * 200, (("trace", b"x" * 10),), 1700000000000 + i)
    for i in range(3)
]
GOLDEN_GZIP = bytes.fromhex(
    "0000000000000000000000730000000002e66a54a20001000000020000018bcfe568000000018bcfe568"
    "02ffffffffffffffffffffffffffff000000031f8b0800cecf076b02ff3bc5ccc0c0c0959d5aa96b3081"
    "3971980026ae92a2c4e454910a3838c5ccc0c404f6a6e130f7260b0bd89b46c3d99b009083bee4b50200"
    "00"
)


def _gunzip(codec: int, data: bytes) -> bytes:
    assert codec == Compression.GZIP
    return gzip.decompress(data)


def _expected(records: list[SimpleRecord]) -> list[Record]:
    base = records[0].timestamp_ms if records else -1
    return [
        Record(i, r.timestamp_ms - base, r.key, r.value, tuple(r.headers))
        for i, r in enumerate(records)
    ]


def test_golden_plain_parses_with_exact_header() -> None:
    header = validate_batch(GOLDEN_PLAIN)
    assert header == BatchHeader(
        base_offset=0,
        batch_length=len(GOLDEN_PLAIN) - 12,
        partition_leader_epoch=0,
        magic=2,
        crc=0x0CB483C0,
        attributes=0x10,
        last_offset_delta=2,
        base_timestamp=1700000000000,
        max_timestamp=1700000000005,
        producer_id=4242,
        producer_epoch=3,
        base_sequence=17,
        record_count=3,
    )
    assert header.is_transactional
    assert not header.is_control
    assert decode_records(GOLDEN_PLAIN) == _expected(GOLDEN_PLAIN_RECORDS)


def test_golden_plain_is_rebuilt_byte_identical() -> None:
    built = build_batch(
        GOLDEN_PLAIN_RECORDS,
        producer_id=4242,
        producer_epoch=3,
        base_sequence=17,
        is_transactional=True,
        partition_leader_epoch=0,
    )
    assert built == GOLDEN_PLAIN


def test_golden_gzip_decodes_through_decompressor() -> None:
    header = validate_batch(GOLDEN_GZIP)
    assert header.compression == Compression.GZIP
    assert header.producer_id == -1
    assert decode_records(GOLDEN_GZIP, _gunzip) == _expected(GOLDEN_GZIP_RECORDS)


def test_golden_gzip_is_rebuilt_byte_identical_with_the_same_compressed_bytes() -> None:
    compressed = GOLDEN_GZIP[HEADER_SIZE:]

    def replay(body: bytes) -> bytes:
        assert body == gzip.decompress(compressed)
        return compressed

    built = build_batch(
        GOLDEN_GZIP_RECORDS,
        compression=Compression.GZIP,
        compressor=replay,
        partition_leader_epoch=0,
    )
    assert built == GOLDEN_GZIP


def test_compressed_batch_without_decompressor_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="gzip-compressed and no decompressor"):
        decode_records(GOLDEN_GZIP)


# --- round trips -------------------------------------------------------------------------------

nullable_bytes = st.none() | st.binary(max_size=64)
headers = st.lists(st.tuples(st.text(max_size=12), nullable_bytes), max_size=4).map(tuple)
timestamps = st.integers(min_value=-(2**40), max_value=2**42)
simple_records = st.builds(SimpleRecord, nullable_bytes, nullable_bytes, headers, timestamps)


@given(st.lists(simple_records, min_size=1, max_size=40))
def test_build_validate_decode_round_trip(records: list[SimpleRecord]) -> None:
    batch = build_batch(records)
    header = validate_batch(batch)
    assert header.record_count == len(records)
    assert header.last_offset_delta == len(records) - 1
    assert header.base_timestamp == records[0].timestamp_ms
    assert header.max_timestamp == max(r.timestamp_ms for r in records)
    assert decode_records(batch) == _expected(records)


@given(
    producer_id=st.integers(0, INT64_MAX),
    producer_epoch=st.integers(0, 2**15 - 1),
    base_sequence=st.integers(0, INT32_MAX),
    base_offset=st.integers(0, 2**62),
    leader_epoch=st.integers(-1, INT32_MAX),
    is_transactional=st.booleans(),
    timestamp_type=st.sampled_from(TimestampType),
)
def test_header_fields_round_trip(
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
    base_offset: int,
    leader_epoch: int,
    is_transactional: bool,
    timestamp_type: TimestampType,
) -> None:
    batch = build_batch(
        [SimpleRecord(b"k", b"v", (), 5), SimpleRecord(None, None, (), 9)],
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        is_transactional=is_transactional,
        partition_leader_epoch=leader_epoch,
        timestamp_type=timestamp_type,
    )
    header = validate_batch(batch)
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (
        producer_id,
        producer_epoch,
        base_sequence,
    )
    assert header.base_offset == base_offset
    assert header.partition_leader_epoch == leader_epoch
    assert header.is_transactional == is_transactional
    assert header.timestamp_type == timestamp_type
    assert header.last_offset == base_offset + 1
    assert header.next_offset == base_offset + 2
    assert header.total_size == len(batch)
    assert (header.base_timestamp, header.max_timestamp) == (5, 9)


def test_many_records_round_trip() -> None:
    records = [
        SimpleRecord(str(i).encode(), bytes(i % 300), (("n", str(i).encode()),), 1000 + i % 7)
        for i in range(5000)
    ]
    batch = build_batch(records, base_offset=123)
    header = validate_batch(batch)
    assert (header.record_count, header.last_offset, header.next_offset) == (5000, 5122, 5123)
    assert decode_records(batch) == _expected(records)


def test_attribute_bits() -> None:
    def header(attributes: int) -> BatchHeader:
        return BatchHeader(0, 49, -1, 2, 0, attributes, 0, 0, 0, -1, -1, -1, 0)

    for codec in Compression:
        assert header(codec).compression == codec
    assert header(0x08).timestamp_type == TimestampType.LOG_APPEND_TIME
    assert header(0x10).is_transactional
    assert header(0x20).is_control
    assert header(0x40).has_delete_horizon
    plain = header(0)
    assert (plain.timestamp_type, plain.is_transactional, plain.is_control) == (0, False, False)


def test_control_flag_is_kept() -> None:
    batch = build_batch(
        [SimpleRecord(b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00\x00", (), 7)],
        is_control=True,
        is_transactional=True,
        producer_id=9,
        producer_epoch=0,
        base_sequence=-1,
    )
    header = validate_batch(batch, from_producer=False)
    assert header.is_control
    assert header.is_transactional


def test_empty_and_gapped_batches_as_left_by_compaction() -> None:
    survivors = [Record(1, 0, b"a", b"1"), Record(4, 3, b"b", None)]
    gapped = encode_batch(survivors, base_timestamp=100, last_offset_delta=6, base_offset=10)
    header = validate_batch(gapped, from_producer=False)
    assert (header.record_count, header.last_offset, header.max_timestamp) == (2, 16, 103)
    assert decode_records(gapped) == survivors
    with pytest.raises(InvalidRecordBatch, match="last_offset_delta 6 implies 7 records"):
        validate_batch(gapped)

    empty = encode_batch([], base_timestamp=100, last_offset_delta=6)
    assert validate_batch(empty, from_producer=False).record_count == 0
    assert decode_records(empty) == []
    with pytest.raises(InvalidRecordBatch, match="at least one record"):
        validate_batch(empty)


def test_encode_record_layout() -> None:
    record = Record(
        offset_delta=1, timestamp_delta=-1, key=None, value=b"v", headers=(("h", None),)
    )
    body = bytes([0x00, 0x01, 0x02, 0x01, 0x02]) + b"v" + bytes([0x02, 0x02]) + b"h" + b"\x01"
    assert encode_record(record) == encode_varint(len(body)) + body


# --- corruption ----------------------------------------------------------------------------------

SAMPLE = build_batch(
    [SimpleRecord(b"key", b"value", (("h", b"x"),), 1_700_000_000_000 + i) for i in range(3)]
)


@given(st.data())
def test_any_flipped_byte_under_the_crc_is_detected(data: st.DataObject) -> None:
    pos = data.draw(st.integers(CRC_OFFSET, len(SAMPLE) - 1), label="pos")
    flip = data.draw(st.integers(1, 255), label="xor")
    corrupt = bytearray(SAMPLE)
    corrupt[pos] ^= flip
    with pytest.raises(InvalidRecordBatch, match="CRC mismatch") as info:
        validate_batch(bytes(corrupt))
    assert info.value.code == ErrorCode.CORRUPT_MESSAGE
    with pytest.raises(InvalidRecordBatch, match="batch 1 at byte"):
        split_batches(SAMPLE + bytes(corrupt))


@pytest.mark.parametrize("magic", [0, 1])
def test_legacy_magic_is_unsupported_format(magic: int) -> None:
    corrupt = bytearray(SAMPLE)
    corrupt[16] = magic
    for call in (validate_batch, split_batches):
        with pytest.raises(InvalidRecordBatch, match=f"magic {magic}") as info:
            call(bytes(corrupt))
        assert info.value.code == ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT


def test_real_v1_message_set_is_unsupported_format() -> None:
    # crc, magic 1, attributes, timestamp, null key, value "hi": shorter than a v2 header
    message = struct.pack(">IbbqiI", 0, 1, 0, 0, -1, 2) + b"hi"
    message_set = struct.pack(">qi", 0, len(message)) + message
    with pytest.raises(InvalidRecordBatch, match="magic 1") as info:
        split_batches(message_set)
    assert info.value.code == ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT


@pytest.mark.parametrize("magic", [3, 127, -1])
def test_unknown_magic_is_corrupt(magic: int) -> None:
    corrupt = bytearray(SAMPLE)
    corrupt[16] = magic & 0xFF
    with pytest.raises(InvalidRecordBatch, match=f"unknown magic {magic}") as info:
        validate_batch(bytes(corrupt))
    assert info.value.code == ErrorCode.CORRUPT_MESSAGE


def _reheader(batch: bytes, **changes: int) -> bytes:
    """The batch with header fields replaced and the CRC recomputed (so only the rule fires)."""
    header = parse_header(batch)
    fields = {name: getattr(header, name) for name in BatchHeader.__dataclass_fields__}
    fields.update(changes)
    out = bytearray(batch)
    HEADER_STRUCT.pack_into(out, 0, *fields.values())
    struct.pack_into(">I", out, CRC_OFFSET, crc32c.crc32c(bytes(out[ATTRIBUTES_OFFSET:])))
    return bytes(out)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"record_count": -1}, "negative record_count"),
        ({"last_offset_delta": -1}, "negative last_offset_delta"),
        ({"record_count": 4}, "exceeds the offset range"),
        ({"attributes": 5}, "unknown compression codec id 5"),
        ({"record_count": 40, "last_offset_delta": 39}, "cannot fit in"),
    ],
)
def test_inconsistent_header_fields_are_rejected(changes: dict[str, int], message: str) -> None:
    with pytest.raises(InvalidRecordBatch, match=message):
        validate_batch(_reheader(SAMPLE, **changes), from_producer=False)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"last_offset_delta": 5}, "implies 6 records but record_count is 3"),
        ({"attributes": 0x20}, "control batches"),
        ({"attributes": 0x10}, "without a producer_id"),
        ({"producer_id": -2}, "invalid producer_id -2"),
        ({"producer_id": 7, "producer_epoch": 0}, "base_sequence -1"),
        ({"producer_id": 7, "base_sequence": 0}, "producer_epoch -1"),
    ],
)
def test_producer_rules(changes: dict[str, int], message: str) -> None:
    batch = _reheader(SAMPLE, **changes)
    with pytest.raises(InvalidRecordBatch, match=message):
        validate_batch(batch)
    validate_batch(batch, from_producer=False)


def test_batch_length_bounds() -> None:
    with pytest.raises(InvalidRecordBatch, match="below the minimum 49"):
        validate_batch(_reheader(SAMPLE, batch_length=48))
    with pytest.raises(InvalidRecordBatch, match="truncated"):
        validate_batch(_reheader(SAMPLE, batch_length=len(SAMPLE)))


def test_trailing_bytes() -> None:
    with pytest.raises(InvalidRecordBatch, match="trailing bytes"):
        validate_batch(SAMPLE + b"\x00")
    for extra in range(1, 12):
        with pytest.raises(InvalidRecordBatch, match="partial batch 1 at byte"):
            split_batches(SAMPLE + b"\x00" * extra)
        tail_ok = split_batches(SAMPLE + b"\x00" * extra, allow_partial_tail=True)
        assert [bytes(b) for b in tail_ok] == [SAMPLE]
    # twelve or more bytes hold a batch length, which must be sane even in a tail
    with pytest.raises(
        InvalidRecordBatch, match=r"batch 1 at byte \d+: batch_length 0 is below the minimum"
    ):
        split_batches(SAMPLE + b"\x00" * 12, allow_partial_tail=True)


# --- truncation and splitting -------------------------------------------------------------------


def test_every_prefix_of_one_batch_is_rejected() -> None:
    for size in range(len(SAMPLE)):
        prefix = SAMPLE[:size]
        with pytest.raises(InvalidRecordBatch):
            validate_batch(prefix)
        if size:
            with pytest.raises(InvalidRecordBatch, match="partial batch 0"):
                split_batches(prefix)
        assert split_batches(prefix, allow_partial_tail=True) == []


def test_every_prefix_of_several_batches() -> None:
    batches = [
        build_batch([SimpleRecord(b"k%d" % i, b"v" * i, (), i)] * (i + 1), base_offset=10 * i)
        for i in range(3)
    ]
    joined = b"".join(batches)
    ends = [sum(map(len, batches[: i + 1])) for i in range(len(batches))]
    for size in range(len(joined) + 1):
        complete = [b for b, end in zip(batches, ends, strict=True) if end <= size]
        tail = split_batches(joined[:size], allow_partial_tail=True)
        assert [bytes(b) for b in tail] == complete
        if size in (0, *ends):
            assert [bytes(b) for b in split_batches(joined[:size])] == complete
        else:
            with pytest.raises(InvalidRecordBatch, match=f"partial batch {len(complete)}"):
                split_batches(joined[:size])


def test_iter_batches_yields_headers_and_zero_copy_views() -> None:
    first = build_batch([SimpleRecord(b"a", b"1", (), 1)])
    second = build_batch([SimpleRecord(b"b", b"2", (), 2)] * 2, base_offset=1)
    buf = bytearray(first + second)
    items = list(iter_batches(buf))
    assert [h.base_offset for h, _ in items] == [0, 1]
    assert [bytes(v) for _, v in items] == [first, second]
    assert all(v.obj is buf for _, v in items)


def test_parse_header_at_position() -> None:
    assert parse_header(b"xx" + SAMPLE, 2) == parse_header(SAMPLE)
    with pytest.raises(InvalidRecordBatch, match="truncated batch header: 60 bytes"):
        parse_header(SAMPLE[:60])


# --- re-offsetting ------------------------------------------------------------------------------


@given(
    base_offset=st.integers(0, INT64_MAX - 2), leader_epoch=st.none() | st.integers(-1, 2**31 - 1)
)
def test_with_base_offset_keeps_crc_and_touches_only_offset_and_epoch(
    base_offset: int, leader_epoch: int | None
) -> None:
    out = with_base_offset(SAMPLE, base_offset, leader_epoch)
    assert isinstance(out, bytes)
    header = validate_batch(out)
    assert header.base_offset == base_offset
    original = parse_header(SAMPLE)
    expected_epoch = original.partition_leader_epoch if leader_epoch is None else leader_epoch
    assert header.partition_leader_epoch == expected_epoch
    assert header.crc == original.crc
    changed = {i for i, (a, b) in enumerate(zip(SAMPLE, out, strict=True)) if a != b}
    assert changed <= set(range(8)) | set(range(12, 16))


def test_with_base_offset_accepts_views_and_rejects_bad_input() -> None:
    view = memoryview(b"pad" + GOLDEN_PLAIN)[3:]
    assert parse_header(with_base_offset(view, 42, 7)).base_offset == 42
    assert decode_records(with_base_offset(view, 42, 7)) == decode_records(GOLDEN_PLAIN)
    with pytest.raises(ValueError, match="base_offset -1"):
        with_base_offset(SAMPLE, -1)
    with pytest.raises(ValueError, match="not a record batch"):
        with_base_offset(SAMPLE[:60], 0)


# --- varints ------------------------------------------------------------------------------------

VARINTS = [
    (0, "00"),
    (-1, "01"),
    (1, "02"),
    (63, "7e"),
    (-64, "7f"),
    (64, "8001"),
    (INT32_MAX, "feffffff0f"),
    (INT32_MIN, "ffffffff0f"),
]
VARLONGS = [
    *VARINTS,
    (INT64_MAX, "feffffffffffffffff01"),
    (INT64_MIN, "ffffffffffffffffff01"),
]


@pytest.mark.parametrize(("value", "wire"), VARINTS)
def test_varint_vectors(value: int, wire: str) -> None:
    assert encode_varint(value).hex() == wire
    assert decode_varint(bytes.fromhex(wire)) == (value, len(wire) // 2)


@pytest.mark.parametrize(("value", "wire"), VARLONGS)
def test_varlong_vectors(value: int, wire: str) -> None:
    assert encode_varlong(value).hex() == wire
    assert decode_varlong(b"\xaa" + bytes.fromhex(wire), 1) == (value, 1 + len(wire) // 2)


@given(st.integers(INT32_MIN, INT32_MAX))
def test_varint_round_trip(value: int) -> None:
    wire = encode_varint(value)
    assert decode_varint(wire + b"\xff") == (value, len(wire))
    assert encode_varlong(value) == wire


@given(st.integers(INT64_MIN, INT64_MAX))
def test_varlong_round_trip(value: int) -> None:
    wire = encode_varlong(value)
    assert decode_varlong(wire) == (value, len(wire))


def test_varint_range_and_malformed_input() -> None:
    for bad in (INT32_MAX + 1, INT32_MIN - 1):
        with pytest.raises(ValueError, match="outside int32"):
            encode_varint(bad)
    for bad in (INT64_MAX + 1, INT64_MIN - 1):
        with pytest.raises(ValueError, match="outside int64"):
            encode_varlong(bad)
    with pytest.raises(InvalidRecordBatch, match="truncated varint"):
        decode_varint(b"\x80\x80")
    with pytest.raises(InvalidRecordBatch, match="longer than 5 bytes"):
        decode_varint(b"\x80" * 5 + b"\x00")
    with pytest.raises(InvalidRecordBatch, match="does not fit in 32 bits"):
        decode_varint(bytes.fromhex("ffffffff1f"))
    with pytest.raises(InvalidRecordBatch, match="longer than 10 bytes"):
        decode_varlong(b"\x80" * 10 + b"\x00")


# --- malformed records ---------------------------------------------------------------------------


def _batch_with_body(body: bytes, count: int) -> bytes:
    """A header-valid uncompressed batch around a hand-made records section."""
    out = bytearray(HEADER_SIZE) + body
    fields = (0, len(out) - 12, -1, 2, 0, 0, max(count - 1, 0), 0, 0, -1, -1, -1, count)
    HEADER_STRUCT.pack_into(out, 0, *fields)
    struct.pack_into(">I", out, CRC_OFFSET, crc32c.crc32c(bytes(out[ATTRIBUTES_OFFSET:])))
    return bytes(out)


def _record(fields_hex: str) -> bytes:
    fields = bytes.fromhex(fields_hex)
    return encode_varint(len(fields)) + fields


# attributes 0, timestamp delta 0, offset delta 0, null key, null value, no headers
MINIMAL_FIELDS = "000000010100"


@pytest.mark.parametrize(
    ("body", "count", "message"),
    [
        (_record(MINIMAL_FIELDS) + bytes(7), 1, "7 bytes left after the 1 records"),
        (_record(MINIMAL_FIELDS) + _record("008080808080"), 2, "record 1 of 2: truncated varint"),
        (encode_varint(200) + bytes(7), 1, "record length 200 at byte 0 is impossible"),
        (encode_varint(5) + bytes(7), 1, "record length 5 at byte 0 is impossible"),
        (_record(MINIMAL_FIELDS + "00"), 1, "record length says it ends at byte 8 but"),
        (_record("0000000a010000"), 1, "field of 5 bytes at byte 5 overruns the record"),
        (_record("000000030100"), 1, "negative length -2"),
        (_record("000000010101"), 1, "negative header count -1"),
        (_record("0000000101020101"), 1, "null header key"),
        (_record("00000001010202ff01"), 1, "header key is not valid UTF-8"),
    ],
)
def test_malformed_records_are_rejected(body: bytes, count: int, message: str) -> None:
    with pytest.raises(InvalidRecordBatch, match=message):
        decode_records(_batch_with_body(body, count))


def test_hand_made_minimal_record_decodes() -> None:
    batch = _batch_with_body(_record(MINIMAL_FIELDS), 1)
    assert decode_records(batch) == [Record(0, 0, None, None, (), 0)]


# --- builder argument checks ----------------------------------------------------------------------


def test_builder_rejects_inconsistent_arguments() -> None:
    records = [SimpleRecord(b"k", b"v")]
    with pytest.raises(ValueError, match="compressor exactly when"):
        build_batch(records, compression=Compression.ZSTD)
    with pytest.raises(ValueError, match="compressor exactly when"):
        build_batch(records, compressor=lambda body: body)
    with pytest.raises(ValueError, match="codec id 7"):
        build_batch(records, compression=7, compressor=lambda body: body)
    with pytest.raises(ValueError, match="timestamp_type 2"):
        build_batch(records, timestamp_type=2)
