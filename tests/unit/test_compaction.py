"""Log compaction's plan against a small reference model of Kafka's cleaner, round after round:
last value per key, offsets and order kept, nothing at or above the first uncleanable offset
touched, tombstones and markers gone only past their horizon, aborted data gone; plus the
offset map's bound and the when-to-clean rules."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from streamhouse.kafka.batch_header import Compression, parse_header, validate_batch
from streamhouse.kafka.compression import compress, decompressor
from streamhouse.kafka.control_records import (
    CONTROL_KEY,
    CONTROL_VALUE,
    TxnMarker,
    encode_marker_batch,
)
from streamhouse.kafka.records import SimpleRecord, build_batch, decode_records
from streamhouse.kafka.sentinels import NO_PRODUCER_EPOCH, NO_PRODUCER_ID
from streamhouse.log.compaction import (
    CleaningRound,
    OffsetMap,
    dirty_ratio,
    first_uncleanable_offset,
    should_clean,
)
from streamhouse.log.partition_txns import AbortedTxn
from tests.property_budget import examples

DECOMPRESS = decompressor(1 << 20)
RETENTION_MS = 1_000
START_MS = 100_000
KEYS = [b"a", b"b", b"c", b"d", None]  # None: a record without a key
PRODUCERS = [1, 2]
UNBOUNDED = 10**9

# --- the reference model -----------------------------------------------------------------------

ModelRecord = tuple[int, bytes | None, bytes | None, int]  # offset, key, value, timestamp


@dataclass
class ModelBatch:
    """A batch as the model sees it: no bytes, just what a cleaner decides on."""

    base: int
    last: int
    records: list[ModelRecord]
    producer_id: int = NO_PRODUCER_ID
    transactional: bool = False
    marker: bool | None = None  # None: data; True: COMMIT; False: ABORT
    horizon: int | None = None
    codec: int = Compression.NONE


@dataclass
class ModelLog:
    batches: list[ModelBatch]
    aborted: list[AbortedTxn] = field(default_factory=list)


def _model_round(
    log: ModelLog, dirty_start: int, uncleanable: int, now: int, entries_max: int
) -> list[ModelBatch]:
    """One cleaning round, written from Kafka's documented rules and nothing else."""

    def aborted(batch: ModelBatch) -> bool:
        return batch.transactional and any(
            a.producer_id == batch.producer_id and a.first_offset <= batch.base <= a.last_offset
            for a in log.aborted
        )

    below = [b for b in log.batches if b.last < uncleanable]
    latest: dict[bytes, int] = {}
    end = uncleanable
    for batch in below:
        if batch.marker is not None or aborted(batch):
            continue
        for offset, key, _, _ in batch.records:
            if key is None or offset < dirty_start:
                continue
            if key not in latest and len(latest) >= entries_max:
                end = min(end, offset)
                break
            latest[key] = offset
        if end < uncleanable:
            break

    def txn_data_seen(marker: ModelBatch) -> bool:
        if marker.marker is False:
            ranges = [
                (a.first_offset, a.last_offset)
                for a in log.aborted
                if a.producer_id == marker.producer_id and a.last_offset == marker.base
            ]
            return any(
                b.transactional and b.marker is None and b.producer_id == marker.producer_id
                for b in log.batches
                for first, last in ranges
                if first <= b.base <= last
            )
        previous = max(
            (
                b.base
                for b in log.batches
                if b.marker is not None
                and b.producer_id == marker.producer_id
                and b.base < marker.base
            ),
            default=-1,
        )
        return any(
            b.transactional
            and b.marker is None
            and b.producer_id == marker.producer_id
            and previous < b.base < marker.base
            and not aborted(b)
            for b in log.batches
        )

    out: list[ModelBatch] = []
    for batch in log.batches:
        if batch.base >= end or batch.last >= uncleanable:
            out.append(batch)
            continue
        ends_round = batch.last + 1 == end
        if batch.marker is not None:
            if txn_data_seen(batch):
                out.append(batch)
            elif batch.horizon is None:
                out.append(_with(batch, batch.records, now + RETENTION_MS))
            elif now < batch.horizon or ends_round:
                out.append(batch)
            continue
        kept = []
        if not aborted(batch):
            for record in batch.records:
                offset, key, value, _ = record
                if offset >= end:
                    kept.append(record)
                elif key is None:
                    continue
                elif offset >= latest.get(key, -1) and (
                    value is not None or batch.horizon is None or now < batch.horizon
                ):
                    kept.append(record)
        horizon = batch.horizon
        if horizon is None and any(value is None for _, _, value, _ in kept):
            horizon = now + RETENTION_MS
        if kept or ends_round:
            out.append(_with(batch, kept, horizon))
    return out


def _with(batch: ModelBatch, records: list[ModelRecord], horizon: int | None) -> ModelBatch:
    return ModelBatch(
        batch.base,
        batch.last,
        list(records),
        batch.producer_id,
        batch.transactional,
        batch.marker,
        horizon,
        batch.codec,
    )


# --- the model's logs as bytes, and back -------------------------------------------------------


def _encode(batch: ModelBatch) -> bytes:
    assert batch.horizon is None, "logs are built before any cleaning"
    if batch.marker is not None:
        marker = TxnMarker(batch.producer_id, 0, batch.marker, 1)
        return _rebase(encode_marker_batch(marker, batch.records[0][3]), batch.base)
    codec = batch.codec
    return build_batch(
        [SimpleRecord(key, value, (), ts) for _, key, value, ts in batch.records],
        base_offset=batch.base,
        producer_id=batch.producer_id,
        producer_epoch=0 if batch.producer_id != NO_PRODUCER_ID else NO_PRODUCER_EPOCH,
        base_sequence=0 if batch.producer_id != NO_PRODUCER_ID else -1,
        is_transactional=batch.transactional,
        compression=codec,
        compressor=None if codec == Compression.NONE else (lambda data: compress(codec, data)),
    )


def _rebase(batch: bytes, base_offset: int) -> bytes:
    return base_offset.to_bytes(8, "big", signed=True) + batch[8:]


def _decode(batch: bytes) -> tuple[int, int, list[ModelRecord], bool, int | None]:
    """What a cleaned batch holds, comparable with a model batch; validated on the way."""
    header = validate_batch(batch, from_producer=False)
    records = [
        (
            header.base_offset + r.offset_delta,
            r.key,
            r.value,
            header.base_timestamp + r.timestamp_delta,
        )
        for r in decode_records(batch, DECOMPRESS)
    ]
    horizon = header.base_timestamp if header.has_delete_horizon else None
    return header.base_offset, header.last_offset, records, header.is_control, horizon


def _model_view(batch: ModelBatch) -> tuple[int, int, list[ModelRecord], bool, int | None]:
    return batch.base, batch.last, batch.records, batch.marker is not None, batch.horizon


def _marker_record(offset: int, commit: bool, ts: int) -> ModelRecord:
    """The control record Kafka writes: key (version 0, type), value (version 0, coordinator
    epoch 1)."""
    return (offset, CONTROL_KEY.pack(0, int(commit)), CONTROL_VALUE.pack(0, 1), ts)


def _real_round(
    batches: list[bytes],
    aborted: list[AbortedTxn],
    dirty_start: int,
    uncleanable: int,
    now: int,
    entries_max: int,
) -> list[bytes]:
    offset_map = OffsetMap(dirty_start, uncleanable, aborted, DECOMPRESS, entries_max=entries_max)
    for batch in batches:
        if parse_header(batch).last_offset >= dirty_start and not offset_map.add(batch):
            break
    cleaning = CleaningRound(
        offset_map, aborted, DECOMPRESS, now_ms=now, delete_retention_ms=RETENTION_MS
    )
    out = []
    for batch in batches:
        cleaned = cleaning.clean(batch)
        if cleaned is not None:
            out.append(cleaned)
    return out


# --- generated logs ----------------------------------------------------------------------------


@st.composite
def logs(draw: st.DrawFn) -> ModelLog:
    """Keyed records, tombstones, records without keys, transactional batches of two producers
    committed, aborted or left open, and markers of transactions that wrote nothing here."""
    batches: list[ModelBatch] = []
    aborted: list[AbortedTxn] = []
    open_txns: dict[int, int] = {}  # producer id -> first offset
    offset = 0
    for _ in range(draw(st.integers(1, 14))):
        producer = draw(st.sampled_from(PRODUCERS))
        kind = draw(st.sampled_from(["data", "data", "data", "txn", "txn", "marker"]))
        ts = START_MS - 50_000 + offset
        if kind == "marker":
            commit = draw(st.booleans())
            first = open_txns.pop(producer, None)
            if first is not None and not commit:
                aborted.append(AbortedTxn(producer, first, offset))
            batches.append(
                ModelBatch(
                    offset, offset, [_marker_record(offset, commit, ts)], producer, True, commit
                )
            )
            offset += 1
            continue
        count = draw(st.integers(1, 4))
        records: list[ModelRecord] = [
            (
                offset + i,
                draw(st.sampled_from(KEYS)),
                draw(st.sampled_from([None, b"v", b"w" * (offset % 7)])),
                ts + draw(st.integers(-5, 5)),
            )
            for i in range(count)
        ]
        codec = draw(st.sampled_from(list(Compression)))
        if kind == "txn":
            open_txns.setdefault(producer, offset)
            batches.append(ModelBatch(offset, offset + count - 1, records, producer, True, None))
        else:
            batches.append(ModelBatch(offset, offset + count - 1, records))
        batches[-1].codec = codec
        offset += count
    return ModelLog(batches, aborted)


def _stable_end(log: ModelLog) -> int:
    """The last stable offset of a generated log: the first offset of its earliest open
    transaction, else its end."""
    open_txns: dict[int, int] = {}
    for batch in log.batches:
        if batch.marker is not None:
            open_txns.pop(batch.producer_id, None)
        elif batch.transactional:
            open_txns.setdefault(batch.producer_id, batch.base)
    return min(open_txns.values(), default=log.batches[-1].last + 1)


@settings(max_examples=examples(400), deadline=None)
@given(
    log=logs(),
    cut=st.integers(0, 60),
    dirty_starts=st.lists(st.integers(0, 60), min_size=5, max_size=5),
    entries_max=st.sampled_from([1, 2, 3, UNBOUNDED]),
    log_start=st.sampled_from([0, 4, 12]),
)
# Found by CI (2026-12-01): once the ABORT marker at 7 was cleaned away, the cleaner took the
# producer's later committed batch (8) for part of that aborted transaction and dropped it
@example(
    log=ModelLog(
        batches=[
            ModelBatch(
                base=0,
                last=2,
                records=[(0, b"a", None, 50000), (1, b"a", None, 50000), (2, b"a", None, 50000)],
                producer_id=-1,
                transactional=False,
                marker=None,
                horizon=None,
                codec=Compression.NONE,
            ),
            ModelBatch(
                base=3,
                last=5,
                records=[(3, b"a", None, 50003), (4, b"a", None, 50003), (5, b"a", None, 50003)],
                producer_id=1,
                transactional=True,
                marker=None,
                horizon=None,
                codec=Compression.NONE,
            ),
            ModelBatch(
                base=6,
                last=6,
                records=[(6, b"a", b"v", 50006)],
                producer_id=-1,
                transactional=False,
                marker=None,
                horizon=None,
                codec=Compression.NONE,
            ),
            ModelBatch(
                base=7,
                last=7,
                records=[(7, b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00\x01", 50007)],
                producer_id=1,
                transactional=True,
                marker=False,
                horizon=None,
                codec=Compression.NONE,
            ),
            ModelBatch(
                base=8,
                last=8,
                records=[(8, b"a", b"v", 50008)],
                producer_id=1,
                transactional=True,
                marker=None,
                horizon=None,
                codec=Compression.NONE,
            ),
            ModelBatch(
                base=9,
                last=11,
                records=[(9, b"a", None, 50009), (10, b"a", None, 50009), (11, b"a", None, 50009)],
                producer_id=-1,
                transactional=False,
                marker=None,
                horizon=None,
                codec=Compression.NONE,
            ),
            ModelBatch(
                base=12,
                last=12,
                records=[(12, b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x01", 50012)],
                producer_id=1,
                transactional=True,
                marker=True,
                horizon=None,
                codec=Compression.NONE,
            ),
            ModelBatch(
                base=13,
                last=13,
                records=[(13, b"a", None, 50013)],
                producer_id=-1,
                transactional=False,
                marker=None,
                horizon=None,
                codec=Compression.NONE,
            ),
            ModelBatch(
                base=14,
                last=14,
                records=[(14, b"a", None, 50014)],
                producer_id=-1,
                transactional=False,
                marker=None,
                horizon=None,
                codec=Compression.NONE,
            ),
            ModelBatch(
                base=15,
                last=15,
                records=[(15, b"a", None, 50015)],
                producer_id=-1,
                transactional=False,
                marker=None,
                horizon=None,
                codec=Compression.NONE,
            ),
            ModelBatch(
                base=16,
                last=16,
                records=[(16, b"a", None, 50016)],
                producer_id=-1,
                transactional=False,
                marker=None,
                horizon=None,
                codec=Compression.NONE,
            ),
            ModelBatch(
                base=17,
                last=17,
                records=[(17, b"a", None, 50017)],
                producer_id=-1,
                transactional=False,
                marker=None,
                horizon=None,
                codec=Compression.NONE,
            ),
            ModelBatch(
                base=18,
                last=18,
                records=[(18, b"a", None, 50018)],
                producer_id=-1,
                transactional=False,
                marker=None,
                horizon=None,
                codec=Compression.NONE,
            ),
            ModelBatch(
                base=19,
                last=19,
                records=[(19, b"a", None, 50019)],
                producer_id=-1,
                transactional=False,
                marker=None,
                horizon=None,
                codec=Compression.NONE,
            ),
        ],
        aborted=[AbortedTxn(producer_id=1, first_offset=3, last_offset=7)],
    ),
    cut=9,
    dirty_starts=[9, 9, 9, 9, 0],
    entries_max=1,
    log_start=0,
)
def test_rounds_match_the_reference_model(
    log: ModelLog, cut: int, dirty_starts: list[int], entries_max: int, log_start: int
) -> None:
    uncleanable = min(cut, _stable_end(log))
    # Retention may have cut the log's start: every aborted transaction is still passed
    log = ModelLog([b for b in log.batches if b.base >= log_start], log.aborted)
    batches = [_encode(b) for b in log.batches]
    untouched = [b for b in batches if parse_header(b).last_offset >= uncleanable]
    model = log
    # Rounds at the same time, then with the horizon reached, then well past it
    for now, dirty_start in zip(
        [START_MS, START_MS, START_MS + RETENTION_MS - 1, START_MS + RETENTION_MS, 10**7],
        dirty_starts,
        strict=True,
    ):
        dirty_start = min(dirty_start, uncleanable)
        batches = _real_round(batches, log.aborted, dirty_start, uncleanable, now, entries_max)
        model = ModelLog(
            _model_round(model, dirty_start, uncleanable, now, entries_max), log.aborted
        )
        assert [_decode(b) for b in batches] == [_model_view(b) for b in model.batches]
        assert [b for b in batches if parse_header(b).last_offset >= uncleanable] == untouched
        offsets = [o for b in batches for o, *_ in _decode(b)[2]]
        assert offsets == sorted(set(offsets))


@settings(max_examples=examples(200), deadline=None)
@given(log=logs(), cut=st.integers(0, 60), now=st.integers(START_MS, START_MS + 3 * RETENTION_MS))
def test_cleaning_reaches_a_fixpoint(log: ModelLog, cut: int, now: int) -> None:
    """Cleaning again at the same time changes nothing, except that markers whose
    transactions the first round emptied get their horizon then (Kafka's two steps)."""
    uncleanable = min(cut, _stable_end(log))
    once = _real_round([_encode(b) for b in log.batches], log.aborted, 0, uncleanable, now, 10**9)
    twice = _real_round(once, log.aborted, 0, uncleanable, now, 10**9)
    thrice = _real_round(twice, log.aborted, 0, uncleanable, now, 10**9)
    assert thrice == twice
    if all(b.marker is None for b in log.batches):
        assert twice == once


def test_a_key_keeps_its_last_value_and_tombstones_go_past_the_horizon() -> None:
    log = ModelLog(
        [
            ModelBatch(0, 2, [(0, b"a", b"1", 1), (1, b"b", b"1", 2), (2, b"a", b"2", 3)]),
            ModelBatch(3, 4, [(3, b"b", None, 4), (4, b"c", b"1", 5)]),
            ModelBatch(5, 5, [(5, b"c", b"2", 6)]),
        ]
    )
    batches = [_encode(b) for b in log.batches]
    first = _real_round(batches, [], 0, 6, START_MS, UNBOUNDED)
    survivors = [(o, k, v) for b in first for o, k, v, _ in _decode(b)[2]]
    assert survivors == [(2, b"a", b"2"), (3, b"b", None), (5, b"c", b"2")]
    assert _decode(first[1])[4] == START_MS + RETENTION_MS  # the tombstone's horizon
    before = _real_round(first, [], 0, 6, START_MS + RETENTION_MS - 1, UNBOUNDED)
    assert before == first
    after = _real_round(first, [], 0, 6, START_MS + RETENTION_MS, UNBOUNDED)
    assert [(o, k, v) for b in after for o, k, v, _ in _decode(b)[2]] == [
        (2, b"a", b"2"),
        (5, b"c", b"2"),
    ]


def test_an_aborted_transaction_and_its_marker_go_in_three_rounds() -> None:
    log = ModelLog(
        [
            ModelBatch(0, 0, [(0, b"a", b"committed", 1)]),
            ModelBatch(1, 1, [(1, b"a", b"aborted", 2)], 7, True),
            ModelBatch(2, 2, [_marker_record(2, False, 3)], 7, True, False),
            ModelBatch(3, 3, [(3, b"z", b"end", 4)]),
        ],
        [AbortedTxn(7, 1, 2)],
    )
    batches = [_encode(b) for b in log.batches]
    first = _real_round(batches, log.aborted, 0, 4, START_MS, UNBOUNDED)
    assert [_decode(b)[:2] for b in first] == [(0, 0), (2, 2), (3, 3)]  # the value before stays
    assert _decode(first[1])[4] is None  # data seen this round: the marker stays as it is
    second = _real_round(first, log.aborted, 0, 4, START_MS, UNBOUNDED)
    assert _decode(second[1])[4] == START_MS + RETENTION_MS
    third = _real_round(second, log.aborted, 0, 4, START_MS + RETENTION_MS, UNBOUNDED)
    assert [_decode(b)[:2] for b in third] == [(0, 0), (3, 3)]


def test_a_full_map_ends_the_round_where_it_filled() -> None:
    batches = [
        _encode(ModelBatch(0, 1, [(0, b"a", b"1", 1), (1, b"a", b"2", 2)])),
        _encode(ModelBatch(2, 3, [(2, b"b", b"1", 3), (3, b"c", b"1", 4)])),
        _encode(ModelBatch(4, 5, [(4, b"c", b"2", 5), (5, b"b", b"2", 6)])),
    ]
    offset_map = OffsetMap(0, 6, [], DECOMPRESS, entries_max=2)
    assert offset_map.add(batches[0]) and not offset_map.add(batches[1])
    assert not offset_map.add(batches[2])  # stopped: nothing more is mapped
    assert (offset_map.full, offset_map.end_offset, len(offset_map)) == (True, 3, 2)
    cleaning = CleaningRound(offset_map, [], DECOMPRESS, now_ms=0, delete_retention_ms=1)
    cleaned = [cleaning.clean(b) for b in batches]
    assert cleaned[0] is not None and [r[0] for r in _decode(cleaned[0])[2]] == [1]
    assert cleaned[1] == batches[1] and cleaned[2] == batches[2]
    assert cleaning.stats.records_read == 4 and cleaning.stats.records_kept == 3


def test_the_map_stops_before_the_first_uncleanable_offset() -> None:
    batch = _encode(ModelBatch(0, 3, [(i, b"k", b"v", i) for i in range(4)]))
    offset_map = OffsetMap(0, 2, [], DECOMPRESS)
    assert not offset_map.add(batch)
    assert (len(offset_map), offset_map.full, offset_map.end_offset) == (0, False, 2)
    cleaning = CleaningRound(offset_map, [], DECOMPRESS, now_ms=0, delete_retention_ms=1)
    assert cleaning.clean(batch) == batch  # straddles the uncleanable offset: untouched


@pytest.mark.parametrize(
    ("clean", "dirty", "oldest", "due"),
    [
        (100, 100, None, False),  # ratio 0.5 is not above 0.5
        (99, 101, None, True),
        (0, 0, None, False),
        (1_000, 1, 1, True),  # dirty for longer than max.compaction.lag.ms
        (1_000, 1, 5_000, False),
        (1_000, 0, 1, False),  # nothing dirty, however old
        (1_000, 1, -1, False),  # no timestamp known
    ],
)
def test_when_a_partition_is_due(clean: int, dirty: int, oldest: int | None, due: bool) -> None:
    assert (
        should_clean(
            clean_bytes=clean,
            dirty_bytes=dirty,
            oldest_dirty_timestamp_ms=oldest,
            now_ms=10_000,
            min_cleanable_dirty_ratio=0.5,
            max_compaction_lag_ms=6_000,
        )
        is due
    )
    assert dirty_ratio(clean, dirty) == (dirty / (clean + dirty) if clean + dirty else 0.0)


def test_the_first_uncleanable_offset() -> None:
    segments = [(0, 1_000), (10, 8_000), (20, 9_500)]
    now = 10_000

    def first(lag_ms: int, durable: int = 30, lso: int = 30) -> int:
        return first_uncleanable_offset(
            durable_end_offset=durable,
            last_stable_offset=lso,
            dirty_segments=segments,
            now_ms=now,
            min_compaction_lag_ms=lag_ms,
        )

    assert first(0) == 30
    assert first(1_000) == 20  # 9_500 is younger than a second
    assert first(5_000) == 10
    assert first(5_000, lso=5) == 5
    assert first(0, durable=25, lso=28) == 25


def _keyless_batch() -> bytes:
    return _encode(ModelBatch(0, 1, [(0, None, b"x", 1), (1, b"k", b"v", 2)]))


def test_records_without_a_key_are_dropped() -> None:
    cleaned = _real_round([_keyless_batch()], [], 0, 2, START_MS, UNBOUNDED)
    assert [r[:3] for r in _decode(cleaned[0])[2]] == [(1, b"k", b"v")]


def test_a_commit_marker_goes_once_its_transaction_has_no_data_left() -> None:
    log = ModelLog(
        [
            ModelBatch(0, 0, [(0, b"a", b"in txn", 1)], 7, True),
            ModelBatch(1, 1, [_marker_record(1, True, 2)], 7, True, True),
            ModelBatch(2, 2, [_marker_record(2, True, 3)], 7, True, True),  # wrote nothing here
            ModelBatch(3, 3, [(3, b"a", b"later", 4)]),
            ModelBatch(4, 4, [(4, b"z", b"end", 5)]),
        ]
    )
    batches = [_encode(b) for b in log.batches]
    first = _real_round(batches, [], 0, 5, START_MS, UNBOUNDED)
    assert [_decode(b)[::4] for b in first] == [
        (1, None),  # its data was read this round: kept as it is
        (2, START_MS + RETENTION_MS),  # no data: horizon stamped
        (3, None),
        (4, None),
    ]
    second = _real_round(first, [], 0, 5, START_MS + RETENTION_MS, UNBOUNDED)
    assert [_decode(b)[::4] for b in second] == [
        (1, START_MS + 2 * RETENTION_MS),
        (3, None),
        (4, None),
    ]
    third = _real_round(second, [], 0, 5, START_MS + 2 * RETENTION_MS, UNBOUNDED)
    assert [_decode(b)[0] for b in third] == [3, 4]


def test_an_aborted_transaction_before_the_log_start_holds_nothing_back() -> None:
    """Retention took an aborted transaction and its marker; the producer's next transaction,
    committed, is not mistaken for it."""
    log = ModelLog(
        [
            ModelBatch(2, 2, [(2, b"a", b"committed", 1)], 7, True),
            ModelBatch(3, 3, [_marker_record(3, True, 2)], 7, True, True),
            ModelBatch(4, 4, [(4, b"z", b"end", 3)]),
        ],
        [AbortedTxn(7, 0, 1)],
    )
    batches = [_encode(b) for b in log.batches]
    cleaned = _real_round(batches, log.aborted, 2, 5, START_MS, UNBOUNDED)
    assert cleaned == batches
