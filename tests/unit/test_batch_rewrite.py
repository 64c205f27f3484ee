"""Rewriting a stored batch with records left out: every codec, byte-level, real-client batches,
delete horizons, bounded decompression."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.errors import InvalidRecordBatch
from streamhouse.kafka.batch_header import (
    DELETE_HORIZON_BIT,
    BatchHeader,
    Compression,
    TimestampType,
    parse_header,
    validate_batch,
    with_base_offset,
)
from streamhouse.kafka.batch_rewrite import filter_batch, stamp_delete_horizon
from streamhouse.kafka.compression import compress, decompressor
from streamhouse.kafka.records import Record, SimpleRecord, build_batch, decode_records
from tests.fixtures.kafka_wire import GOLDEN_BATCH
from tests.property_budget import examples
from tests.unit.test_compression import GOLDEN_GZIP, GOLDEN_LZ4, GOLDEN_SNAPPY, GOLDEN_ZSTD

BOUND = 1 << 20
DECOMPRESS = decompressor(BOUND)
# Batches as kafka-python built them, one per codec (none, gzip, snappy, lz4, zstd)
CLIENT_BATCHES = [GOLDEN_BATCH, GOLDEN_GZIP, GOLDEN_SNAPPY, GOLDEN_LZ4, GOLDEN_ZSTD]
# The header fields a rewrite keeps as they were (base_timestamp too unless a horizon is set)
KEPT_FIELDS = (
    "base_offset",
    "partition_leader_epoch",
    "magic",
    "last_offset_delta",
    "max_timestamp",
    "producer_id",
    "producer_epoch",
    "base_sequence",
)


def _absolute(header: BatchHeader, records: list[Record]) -> list[tuple[int, int, Record]]:
    """(offset, timestamp, record with its deltas blanked) of each record."""
    return [
        (
            header.base_offset + r.offset_delta,
            header.base_timestamp + r.timestamp_delta,
            Record(0, 0, r.key, r.value, r.headers, r.attributes),
        )
        for r in records
    ]


def _check_rewrite(original: bytes, rewritten: bytes, kept_offsets: set[int]) -> None:
    """The rewritten batch is well formed and is the original with only `kept_offsets`."""
    before, after = parse_header(original), validate_batch(rewritten, from_producer=False)
    for name in KEPT_FIELDS:
        assert getattr(after, name) == getattr(before, name), name
    assert after.attributes & ~DELETE_HORIZON_BIT == before.attributes & ~DELETE_HORIZON_BIT
    if not after.has_delete_horizon:
        assert after.base_timestamp == before.base_timestamp
    expected = [
        entry
        for entry in _absolute(before, decode_records(original, DECOMPRESS))
        if entry[0] in kept_offsets
    ]
    assert _absolute(after, decode_records(rewritten, DECOMPRESS)) == expected
    assert after.record_count == len(expected)


@pytest.mark.parametrize("client_batch", CLIENT_BATCHES, ids=[c.name for c in Compression])
def test_a_client_batch_rewritten_without_its_first_record(client_batch: bytes) -> None:
    batch = with_base_offset(client_batch, 500, leader_epoch=3)
    count = parse_header(batch).record_count
    rewritten = filter_batch(
        batch, lambda offset, key, tombstone: offset != 500, DECOMPRESS, keep_empty=True
    )
    assert rewritten is not None
    _check_rewrite(batch, rewritten, set(range(501, 500 + count)))
    assert parse_header(rewritten).compression == parse_header(batch).compression


@pytest.mark.parametrize("client_batch", CLIENT_BATCHES, ids=[c.name for c in Compression])
def test_all_kept_is_the_same_bytes_none_kept_is_none(client_batch: bytes) -> None:
    assert filter_batch(client_batch, lambda *_: True, DECOMPRESS) == client_batch
    assert filter_batch(client_batch, lambda *_: False, DECOMPRESS) is None


@pytest.mark.parametrize("codec", list(Compression))
def test_kept_empty_batch_covers_the_same_offsets(codec: Compression) -> None:
    batch = _batch([SimpleRecord(b"k", b"v", (), 7)] * 3, codec, base_offset=40)
    empty = filter_batch(batch, lambda *_: False, DECOMPRESS, keep_empty=True)
    assert empty is not None
    header = validate_batch(empty, from_producer=False)
    assert (header.record_count, header.base_offset, header.last_offset) == (0, 40, 42)
    assert header.compression == codec
    assert decode_records(empty, DECOMPRESS) == []


def _batch(records: list[SimpleRecord], codec: int, **fields: int | bool) -> bytes:
    compressor = None if codec == Compression.NONE else (lambda data: compress(codec, data))
    return build_batch(records, compression=codec, compressor=compressor, **fields)  # type: ignore[arg-type]


def test_a_kept_tombstone_gets_the_delete_horizon_once() -> None:
    records = [
        SimpleRecord(b"a", b"1", (), 1_000),
        SimpleRecord(b"b", None, (("h", b"x"),), 1_010),
        SimpleRecord(b"c", b"3", (), 990),
    ]
    batch = _batch(records, Compression.ZSTD, base_offset=10)
    stamped = filter_batch(batch, lambda o, k, t: o != 10, DECOMPRESS, delete_horizon_ms=90_000)
    assert stamped is not None
    header = parse_header(stamped)
    assert header.has_delete_horizon and header.base_timestamp == 90_000
    _check_rewrite(batch, stamped, {11, 12})
    # A batch with a horizon keeps it: everything kept is the same bytes again
    again = filter_batch(stamped, lambda *_: True, DECOMPRESS, delete_horizon_ms=95_000)
    assert again == stamped
    # no tombstone kept: no horizon
    plain = filter_batch(batch, lambda o, k, t: not t, DECOMPRESS, delete_horizon_ms=90_000)
    assert plain is not None and not parse_header(plain).has_delete_horizon


def test_a_marker_stamped_with_a_horizon_keeps_its_record() -> None:
    marker = build_batch(
        [SimpleRecord(b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x05", (), 3_000)],
        base_offset=9,
        producer_id=4,
        producer_epoch=2,
        is_transactional=True,
        is_control=True,
    )
    stamped = stamp_delete_horizon(marker, 50_000, DECOMPRESS)
    header = validate_batch(stamped, from_producer=False)
    assert header.is_control and header.is_transactional and header.has_delete_horizon
    assert header.base_timestamp == 50_000
    _check_rewrite(marker, stamped, {9})


def test_decompression_is_bounded() -> None:
    batch = _batch([SimpleRecord(b"k", b"\x00" * 100_000, (), 0)], Compression.ZSTD)
    with pytest.raises(InvalidRecordBatch, match="output_bytes_max"):
        filter_batch(batch, lambda *_: True, decompressor(10_000))


_records = st.lists(
    st.builds(
        SimpleRecord,
        st.one_of(st.none(), st.binary(max_size=8)),
        st.one_of(st.none(), st.binary(max_size=40)),
        st.lists(st.tuples(st.text(max_size=4), st.one_of(st.none(), st.binary(max_size=4))))
        .map(tuple)
        .filter(lambda h: len(h) <= 2),
        st.integers(0, 2**41),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=examples(300), deadline=None)
@given(
    records=_records,
    codec=st.sampled_from(list(Compression)),
    base_offset=st.integers(0, 2**40),
    transactional=st.booleans(),
    log_append_time=st.booleans(),
    keep_bits=st.integers(0, 2**12 - 1),
    horizon=st.one_of(st.none(), st.integers(0, 2**42)),
)
def test_any_batch_any_codec_round_trips(
    records: list[SimpleRecord],
    codec: Compression,
    base_offset: int,
    transactional: bool,
    log_append_time: bool,
    keep_bits: int,
    horizon: int | None,
) -> None:
    batch = _batch(
        records,
        codec,
        base_offset=base_offset,
        producer_id=77,
        producer_epoch=3,
        base_sequence=1_000,
        is_transactional=transactional,
        partition_leader_epoch=12,
        timestamp_type=TimestampType.LOG_APPEND_TIME if log_append_time else 0,
    )
    kept = {base_offset + i for i in range(len(records)) if keep_bits >> i & 1}
    rewritten = filter_batch(
        batch, lambda offset, *_: offset in kept, DECOMPRESS, delete_horizon_ms=horizon
    )
    if not kept:
        assert rewritten is None
        return
    assert rewritten is not None
    _check_rewrite(batch, rewritten, kept)
    tombstone_kept = any(records[o - base_offset].value is None for o in kept)
    assert parse_header(rewritten).has_delete_horizon == (horizon is not None and tombstone_kept)
    if len(kept) == len(records) and not parse_header(rewritten).has_delete_horizon:
        assert rewritten == batch
