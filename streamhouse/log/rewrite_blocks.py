"""Re-blocking for a rewrite: the stored batches of a run of one partition's blocks, laid out
again as blocks that tile the run's offsets (pure; the engine reads and uploads).

A rewrite (the merger, compaction) reads a run of consecutive blocks, hands their batches in
offset order to a transform, and writes what comes back as new blocks. Batches stay verbatim.
A block holds batches of one leader epoch (its footer entry and segment row carry it) and at
most a named number of raw bytes (one batch alone may exceed it). The new blocks cover the
run's offsets first to last without a gap between them, so their rows can replace the old
ones: a block starts where the one before it ended, the first at the run's first offset and
the last ends at the run's last offset, whatever the transform dropped at either end.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from streamhouse.kafka.batch_header import iter_batches
from streamhouse.log.object_format import BLOCK_RAW_BYTES_MAX, BlockSpec
from streamhouse.names import TopicPartition


@dataclass(frozen=True)
class StoredBatch:
    """One record batch as stored, with the leader epoch of the block that held it."""

    leader_epoch: int
    base_offset: int
    last_offset: int
    max_timestamp_ms: int
    data: bytes


def stored_batches(raw: bytes, leader_epoch: int) -> Iterator[StoredBatch]:
    """The batches of a decoded block, each checked (CRC, sizes) as it is read."""
    for header, view in iter_batches(raw, from_producer=False):
        yield StoredBatch(
            leader_epoch, header.base_offset, header.last_offset, header.max_timestamp, bytes(view)
        )


def check_transformed(
    tp: TopicPartition, before: Sequence[StoredBatch], after: Sequence[StoredBatch]
) -> None:
    """A transform's output is our own invariant: batches in offset order, never overlapping,
    within the offsets it was given, each in the leader epoch its offsets were written in."""
    if not after:
        return
    assert before, f"a transform of {tp} returned batches for none"
    assert before[0].base_offset <= after[0].base_offset, (tp, before[0], after[0])
    assert after[-1].last_offset <= before[-1].last_offset, (tp, before[-1], after[-1])
    for earlier, later in itertools.pairwise(after):
        assert earlier.last_offset < later.base_offset, f"{tp}: {earlier} overlaps {later}"
    index = 0  # both in offset order: one walk over the input
    for batch in after:
        assert batch.base_offset <= batch.last_offset, (tp, batch)
        while before[index].last_offset < batch.base_offset:
            index += 1
        covering = index
        while covering < len(before) and before[covering].base_offset <= batch.last_offset:
            written = before[covering]
            assert written.leader_epoch == batch.leader_epoch, (
                f"{tp}: a batch at {batch.base_offset}..{batch.last_offset} moved to epoch "
                f"{batch.leader_epoch} from {written.leader_epoch}"
            )
            covering += 1
        assert covering > index, f"{tp}: a batch at {batch.base_offset} where none was"


def reblock(
    tp: TopicPartition,
    first_offset: int,
    last_offset: int,
    batches: Sequence[StoredBatch],
    block_bytes_max: int,
    empty_epoch: int,
) -> list[BlockSpec]:
    """Blocks of at most `block_bytes_max` raw bytes (at least one batch each), one leader
    epoch each, tiling [first_offset, last_offset]. No batches at all (a transform dropped
    every one): one empty block in `empty_epoch` holds the offsets."""
    assert first_offset <= last_offset, (tp, first_offset, last_offset)
    bytes_max = min(block_bytes_max, BLOCK_RAW_BYTES_MAX)
    groups: list[list[StoredBatch]] = []
    size_bytes = 0
    for batch in batches:
        assert first_offset <= batch.base_offset and batch.last_offset <= last_offset, (tp, batch)
        current = groups[-1] if groups else None
        fits = current is not None and size_bytes + len(batch.data) <= bytes_max
        if current is None or not fits or current[-1].leader_epoch != batch.leader_epoch:
            groups.append([batch])
            size_bytes = len(batch.data)
        else:
            current.append(batch)
            size_bytes += len(batch.data)
    if not groups:
        return [BlockSpec(tp.topic, tp.partition, empty_epoch, first_offset, last_offset, -1, b"")]
    starts = [first_offset] + [group[0].base_offset for group in groups[1:]]
    ends = [start - 1 for start in starts[1:]] + [last_offset]
    blocks = []
    for group, start, end in zip(groups, starts, ends, strict=True):
        data = b"".join(batch.data for batch in group)
        assert len(data) <= BLOCK_RAW_BYTES_MAX, (tp, len(data))
        max_timestamp_ms = max(batch.max_timestamp_ms for batch in group)
        blocks.append(
            BlockSpec(
                tp.topic, tp.partition, group[0].leader_epoch, start, end, max_timestamp_ms, data
            )
        )
    return blocks
