"""Which blocks of the bucket extend a partition's log when metadata is rebuilt from footers.

Blocks come from the footers of objects the restored snapshot does not know. Several may cover
one offset: a flush fenced out after its upload, a leader that lost its lease while a later
one wrote the same offsets, an upload retried under a new key. The rule (DESIGN §2): the
later leader epoch wins from the first offset it wrote. A block of epoch e is kept only if it
ends before the first offset any later epoch wrote; the log then grows block by block from
the durable end, and stops at the first gap (blocks beyond it are reported, not used). Where
blocks covering the same offsets differently start at one offset (a merged object and,
within the reconciler's grace, the small objects it replaced), the one from which the chain
reaches furthest is taken: the log is never doubled, and a small object deleted already
does not cut it short while the merged one covers its offsets.
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
    by_first: dict[int, list[FoundBlock]] = {}
    for block in candidates:
        limit = superseded_from.get(block.leader_epoch)
        if limit is not None and block.last_offset >= limit:
            why = f"a later leader epoch wrote from offset {limit}"
            skipped.append(SkippedBlock(block, why))
            continue
        by_first.setdefault(block.first_offset, []).append(block)
    reach = _reach(by_first)
    chain: list[FoundBlock] = []
    end = start
    while end in by_first:
        starting = by_first.pop(end)
        block = max(starting, key=lambda b: reach[(b.key, b.first_offset)])  # first of equals
        for other in starting:
            if other is not block:  # the same offsets uploaded twice, or merged elsewhere
                skipped.append(SkippedBlock(other, f"duplicates the block in {block.key}"))
        chain.append(block)
        end = block.last_offset + 1
    for starting in by_first.values():
        for block in starting:
            if block.last_offset < end:
                why = f"covered by the chain's blocks (the log ends at offset {end})"
            else:
                why = f"beyond a gap: the log ends at offset {end}"
            skipped.append(SkippedBlock(block, why))
    return PartitionChain(start, end, tuple(chain), tuple(skipped))


def _reach(by_first: dict[int, list[FoundBlock]]) -> dict[tuple[str, int], int]:
    """Per block, how far a chain that takes it can go: blocks covering the same offsets
    differently (a merged object and, within the grace, the small ones it replaced, some
    perhaps deleted already) must not lead the chain into a gap another way avoids."""
    reach: dict[tuple[str, int], int] = {}
    best_from: dict[int, int] = {}
    for first in sorted(by_first, reverse=True):
        for block in by_first[first]:
            after = block.last_offset + 1
            reach[(block.key, first)] = best_from.get(after, after)
        best_from[first] = max(reach[(b.key, first)] for b in by_first[first])
    return reach


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
