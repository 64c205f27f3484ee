"""Which blocks of the bucket extend a partition's log when metadata is rebuilt from footers.

Blocks come from the footers of objects the restored snapshot does not know. Several may cover
one offset: a flush fenced out after its upload, a leader that lost its lease while a later
one wrote the same offsets, an upload retried under a new key. The rule (DESIGN §2): the
later leader epoch wins from the first offset it wrote. A block of epoch e is kept only if it
ends before the first offset any later epoch wrote; the log then grows block by block from
the durable end, and stops at the first gap (blocks beyond it are reported, not used).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from streamhouse.log.object_format import BlockIndexEntry


@dataclass(frozen=True)
class FoundBlock:
    """A block listed in the footer of the object under `key`."""

    key: str
    entry: BlockIndexEntry

    @property
    def first_offset(self) -> int:
        return self.entry.first_offset

    @property
    def last_offset(self) -> int:
        return self.entry.last_offset

    @property
    def leader_epoch(self) -> int:
        return self.entry.leader_epoch


@dataclass(frozen=True)
class SkippedBlock:
    block: FoundBlock
    why: str


@dataclass(frozen=True)
class PartitionChain:
    """The blocks that extend one partition's log from `start_offset` to `end_offset`."""

    start_offset: int
    end_offset: int
    blocks: tuple[FoundBlock, ...]
    skipped: tuple[SkippedBlock, ...]


def plan_chain(durable_end_offset: int | None, found: Iterable[FoundBlock]) -> PartitionChain:
    """The chain of blocks from `durable_end_offset` (None: a partition the snapshot does not
    know, whose log starts at the first offset its blocks hold)."""
    blocks = sorted(found, key=_order)
    skipped: list[SkippedBlock] = []
    if durable_end_offset is None:
        start = min((b.first_offset for b in blocks), default=0)
    else:
        start = durable_end_offset
    candidates = []
    for block in blocks:
        if block.last_offset < start:
            skipped.append(SkippedBlock(block, f"below the durable end {start}"))
        elif block.first_offset < start:
            skipped.append(SkippedBlock(block, f"straddles the durable end {start}"))
        else:
            candidates.append(block)
    superseded_from = _superseded_from(candidates)
    by_first: dict[int, FoundBlock] = {}
    for block in candidates:
        limit = superseded_from.get(block.leader_epoch)
        if limit is not None and block.last_offset >= limit:
            why = f"a later leader epoch wrote from offset {limit}"
            skipped.append(SkippedBlock(block, why))
            continue
        kept = by_first.get(block.first_offset)
        if kept is not None:  # the same offsets uploaded twice (a retried flush): keep one
            skipped.append(SkippedBlock(block, f"duplicates the block in {kept.key}"))
            continue
        by_first[block.first_offset] = block
    chain: list[FoundBlock] = []
    end = start
    while end in by_first:
        block = by_first.pop(end)
        chain.append(block)
        end = block.last_offset + 1
    for block in by_first.values():
        skipped.append(SkippedBlock(block, f"beyond a gap: the log ends at offset {end}"))
    return PartitionChain(start, end, tuple(chain), tuple(skipped))


def _order(block: FoundBlock) -> tuple[int, int, int, str]:
    """Longest block first among equal starts, then by key: a deterministic choice."""
    return (block.first_offset, -block.last_offset, block.leader_epoch, block.key)


def _superseded_from(blocks: list[FoundBlock]) -> dict[int, int]:
    """Per epoch, the first offset written by any later epoch (epochs no later one follows
    are absent)."""
    first_of_epoch: dict[int, int] = {}
    for block in blocks:
        epoch = block.leader_epoch
        first_of_epoch[epoch] = min(
            first_of_epoch.get(epoch, block.first_offset), block.first_offset
        )
    limits: dict[int, int] = {}
    later_first: int | None = None
    for epoch in sorted(first_of_epoch, reverse=True):
        if later_first is not None:
            limits[epoch] = later_first
        first = first_of_epoch[epoch]
        later_first = first if later_first is None else min(later_first, first)
    return limits
