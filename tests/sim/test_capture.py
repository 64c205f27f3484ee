"""The capture reads what aiokafka drops: each batch's leader epoch (bytes 12..15 of its
RecordBatch v2 header), its producer, control markers, and whole answers per partition."""

from __future__ import annotations

import struct
from types import SimpleNamespace

from aiokafka.protocol.fetch import FetchRequest  # type: ignore[import-untyped]
from aiokafka.record.default_records import (  # type: ignore[import-untyped]
    DefaultRecordBatchBuilder,
)

from sim.capture import Watcher, observed_records
from sim.history import (
    CONTROL_ABORT,
    CONTROL_COMMIT,
    OFFSET_OUT_OF_RANGE,
    Event,
    FetchFailed,
    FetchObserved,
    ObservedRecord,
)

CONTROL_ATTRIBUTE = 0x20


def batch(
    base_offset: int,
    epoch: int,
    values: list[bytes],
    producer: tuple[int, int, int] = (-1, -1, -1),
    control: int | None = None,
    transactional: bool = False,
) -> bytes:
    """A v2 record batch as a leader stores it: base offset and leader epoch stamped."""
    producer_id, producer_epoch, sequence = producer
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=int(transactional),
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=sequence,
        batch_size=1 << 20,
    )
    for delta, value in enumerate(values):
        key = None if control is None else struct.pack(">hh", 0, control)
        builder.append(delta, timestamp=1, key=key, value=value, headers=[])
    data = bytearray(builder.build())
    struct.pack_into(">q", data, 0, base_offset)
    struct.pack_into(">i", data, 12, epoch)
    if control is not None:
        data[22] |= CONTROL_ATTRIBUTE  # attributes (int16 at 21..22); no CRC check here
    return bytes(data)


def test_records_carry_their_batch_epoch_from_the_fetch_offset_on() -> None:
    data = batch(10, 3, [b"a", b"b"]) + batch(12, 5, [b"c", b"d"])
    records, position = observed_records(data, 11)
    assert [(r.offset, r.value, r.leader_epoch) for r in records] == [
        (11, b"b", 3),
        (12, b"c", 5),
        (13, b"d", 5),
    ]
    assert position == 14


def test_a_batch_cut_short_by_the_size_limit_is_left_out() -> None:
    data = batch(0, 1, [b"a"]) + batch(1, 1, [b"b", b"c"])[:-5]
    records, position = observed_records(data, 0)
    assert [r.offset for r in records] == [0]
    assert position == 1
    assert observed_records(None, 7) == ((), 7)


def test_producer_ids_sequences_and_control_markers_are_read() -> None:
    data = batch(4, 2, [b"x", b"y"], producer=(7, 1, 40))
    data += batch(6, 2, [b""], producer=(7, 1, -1), control=1)
    records, position = observed_records(data, 4)
    assert records == (
        ObservedRecord(4, None, b"x", 2, None, 7, 1, 40),
        ObservedRecord(5, None, b"y", 2, None, 7, 1, 41),
        ObservedRecord(6, None, None, 2, CONTROL_COMMIT, 7, 1, -1),
    )
    assert position == 7


def test_a_fetch_answer_becomes_one_event_per_partition() -> None:
    recorded: list[Event] = []
    watcher = Watcher("reader", lambda: 500, recorded.append, {1: "agent-2"}.get)
    request = FetchRequest(0, 1, 1 << 20, 0, [("t", [(0, 3, 1 << 20), (1, 9, 1 << 20)])])
    partitions = [
        (0, 0, 5, 5, 2, [], -1, batch(3, 4, [b"a", b"b"])),
        (1, OFFSET_OUT_OF_RANGE, -1, -1, -1, [], -1, b""),
    ]
    answer = SimpleNamespace(API_VERSION=11, topics=[("t", partitions)])
    watcher.answered(1, request, answer, requested_us=100)
    fetched, failed = recorded
    assert isinstance(fetched, FetchObserved) and isinstance(failed, FetchFailed)
    assert (fetched.requested_us, fetched.at_us, fetched.fetch_offset) == (100, 500, 3)
    assert [(r.offset, r.leader_epoch) for r in fetched.records] == [(3, 4), (4, 4)]
    assert (fetched.high_watermark, fetched.log_start_offset) == (5, 2)
    assert (fetched.next_offset, fetched.agent) == (5, "agent-2")
    assert (failed.fetch_offset, failed.error_code, failed.agent) == (9, 1, "agent-2")


def test_read_committed_leaves_out_the_batches_of_aborted_transactions_as_clients_do() -> None:
    # producer 7 aborts (4..5, marker 6), producer 8 commits (7, marker 9), producer 7 again
    # (10, committed later): only the aborted transaction's own batches are left out
    data = batch(4, 2, [b"x", b"y"], producer=(7, 1, 0), transactional=True)
    data += batch(6, 2, [b""], producer=(7, 1, -1), control=0, transactional=True)
    data += batch(7, 2, [b"z"], producer=(8, 1, 0), transactional=True)
    data += batch(8, 2, [b"plain"])
    data += batch(9, 2, [b""], producer=(8, 1, -1), control=1, transactional=True)
    data += batch(10, 2, [b"w"], producer=(7, 1, 2), transactional=True)
    records, position = observed_records(data, 4, aborted=[(7, 4)])
    assert [(r.offset, r.value, r.control) for r in records] == [
        (6, None, CONTROL_ABORT),
        (7, b"z", None),
        (8, b"plain", None),
        (9, None, CONTROL_COMMIT),
        (10, b"w", None),
    ]
    assert position == 11
    everything, _ = observed_records(data, 4)  # read_uncommitted: all of it
    assert [r.offset for r in everything] == [4, 5, 6, 7, 8, 9, 10]


def test_a_read_committed_answer_records_its_last_stable_offset_and_isolation() -> None:
    recorded: list[Event] = []
    watcher = Watcher("rc", lambda: 500, recorded.append, {1: "agent-1"}.get)
    request = FetchRequest(0, 1, 1 << 20, 1, [("t", [(0, 0, 1 << 20)])])
    records = batch(0, 1, [b"gone"], producer=(7, 0, 0), transactional=True)
    records += batch(1, 1, [b""], producer=(7, 0, -1), control=0, transactional=True)
    for version, partition in (
        (4, (0, 0, 3, 2, [(7, 0)], records)),
        (7, (0, 0, 3, 2, 0, [(7, 0)], records)),
        (11, (0, 0, 3, 2, 0, [(7, 0)], -1, records)),
    ):
        answer = SimpleNamespace(API_VERSION=version, topics=[("t", [partition])])
        watcher.answered(1, request, answer, requested_us=100)
        fetched = recorded.pop()
        assert isinstance(fetched, FetchObserved)
        assert fetched.read_committed
        assert (fetched.last_stable_offset, fetched.high_watermark) == (2, 3)
        assert [(r.offset, r.control) for r in fetched.records] == [(1, CONTROL_ABORT)]
        assert fetched.next_offset == 2
