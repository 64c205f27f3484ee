"""Re-blocking for a rewrite: blocks of one leader epoch and a bounded size tile a run's
offsets; a transform that moves a batch's epoch or overlaps batches is our own failure."""

from __future__ import annotations

import pytest

from streamhouse.kafka.records import SimpleRecord, build_batch
from streamhouse.log.rewrite_blocks import StoredBatch, check_transformed, reblock, stored_batches
from streamhouse.names import TopicPartition

TP = TopicPartition("t", 0)


def batch(epoch: int, first: int, last: int, size: int = 10) -> StoredBatch:
    return StoredBatch(epoch, first, last, first * 10, bytes([first % 256]) * size)


def test_blocks_split_at_epochs_and_sizes_and_tile_the_run() -> None:
    batches = [batch(1, 0, 1), batch(1, 2, 4), batch(1, 5, 5), batch(2, 6, 9), batch(2, 10, 10)]
    blocks = reblock(TP, 0, 12, batches, 20, 1)
    spans = [(b.leader_epoch, b.first_offset, b.last_offset, len(b.data)) for b in blocks]
    assert spans == [(1, 0, 4, 20), (1, 5, 5, 10), (2, 6, 12, 20)]  # the last ends the run
    assert b"".join(b.data for b in blocks) == b"".join(b.data for b in batches)
    assert [b.max_timestamp_ms for b in blocks] == [20, 50, 100]


def test_a_gap_left_by_a_transform_belongs_to_the_block_before_it() -> None:
    blocks = reblock(TP, 0, 9, [batch(1, 2, 3), batch(2, 7, 7)], 100, 1)
    assert [(b.leader_epoch, b.first_offset, b.last_offset) for b in blocks] == [
        (1, 0, 6),
        (2, 7, 9),
    ]


def test_nothing_kept_is_one_empty_block_over_the_run() -> None:
    [block] = reblock(TP, 3, 8, [], 100, 4)
    assert (block.leader_epoch, block.first_offset, block.last_offset, block.data) == (
        4,
        3,
        8,
        b"",
    )


def test_one_batch_larger_than_the_bound_is_a_block_alone() -> None:
    blocks = reblock(TP, 0, 2, [batch(1, 0, 0, 5), batch(1, 1, 1, 50), batch(1, 2, 2, 5)], 20, 1)
    assert [len(b.data) for b in blocks] == [5, 50, 5]


def test_stored_batches_read_a_block_back_verbatim() -> None:
    raw = [build_batch([SimpleRecord(None, b"v%d" % i, (), 7)], base_offset=i) for i in range(3)]
    found = list(stored_batches(b"".join(raw), 3))
    assert [(b.base_offset, b.last_offset, b.leader_epoch, b.data) for b in found] == [
        (i, i, 3, raw[i]) for i in range(3)
    ]


def test_a_transform_may_not_move_epochs_or_overlap() -> None:
    before = [batch(1, 0, 4), batch(2, 5, 9)]
    check_transformed(TP, before, [batch(2, 6, 9)])  # dropped and rewritten inside: fine
    with pytest.raises(AssertionError, match="epoch"):
        check_transformed(TP, before, [batch(2, 3, 4)])
    with pytest.raises(AssertionError, match="overlaps"):
        check_transformed(TP, before, [batch(1, 0, 2), batch(1, 2, 4)])
    with pytest.raises(AssertionError):
        check_transformed(TP, before, [batch(2, 5, 12)])  # beyond the run
