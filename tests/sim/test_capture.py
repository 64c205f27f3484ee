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
) -> bytes:
    """A v2 record batch as a leader stores it: base offset and leader epoch stamped."""
    producer_id, producer_epoch, sequence = producer
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
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
