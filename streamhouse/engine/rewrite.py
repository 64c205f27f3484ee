"""The rewrite-and-swap step: a run of one partition's segment rows becomes one new object.

Shared by the merger (identity transform) and log compaction (a transform that rewrites or
drops batches, never moving an offset). For a partition this agent leads, under the lease
epoch it holds: read the run's blocks, hand their batches in offset order to the transform,
lay what comes back out as blocks of one leader epoch and at most a named size
(log/rewrite_blocks.py), encode one object (the flush's format, footer and key scheme, under
the partition's org), upload it, then swap the rows in one metadata transaction fenced by
that epoch and by the old rows being exactly as read (`LeaseStore.swap_segments`).

Crash-safe by construction: before the swap commits nothing points at the new object (a
crash, a refused swap or a swap given up leaves an orphan the reconciler deletes after its
grace); after it, the old objects are released and the reconciler deletes them a grace
later, so a reader that listed the old rows just before still finds them. A swap is never
attempted once the upload is half a grace old: past the grace the reconciler may have taken
the new object for an orphan. Listeners are told of every swap (the snapshot writer owes a
snapshot: the bucket alone must not describe the log by objects about to be deleted).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from streamhouse.config import Settings
from streamhouse.engine.object_reader import ObjectReader
from streamhouse.errors import StorageError, UnknownTopicOrPartition
from streamhouse.log.ids import ULID_RANDOM_BYTES, object_key
from streamhouse.log.object_format import encode_object
from streamhouse.log.rewrite_blocks import StoredBatch, check_transformed, reblock, stored_batches
from streamhouse.names import TopicPartition
from streamhouse.ports.buggify import (
    REWRITE_AFTER_LISTENERS,
    REWRITE_BEFORE_LISTENERS,
    REWRITE_BEFORE_SWAP,
    REWRITE_BEFORE_UPLOAD,
    REWRITE_GIVE_UP_AFTER_UPLOAD,
    REWRITE_SLOW_SWAP,
    REWRITE_STALE_EPOCH,
    Buggify,
)
from streamhouse.ports.clock import Clock
from streamhouse.ports.leases import LeaseStore, ObjectRecord, SegmentRecord, SegmentSwap
from streamhouse.ports.object_store import ObjectStore
from streamhouse.ports.rng import Rng
from streamhouse.tenancy.names import org_of

log = logging.getLogger("streamhouse.rewrite")

# A transform: the partition and a run's batches in offset order -> the batches to keep, in
# offset order, each at the offsets and in the leader epoch it was written (identity: merge)
Transform = Callable[[TopicPartition, Sequence[StoredBatch]], Sequence[StoredBatch]]
SWAP_ATTEMPTS_MAX = 3  # a swap whose store call failed is retried (it is idempotent)
SWAP_RETRY_BACKOFF_MS = 100
# A buggified swap waits this long after the upload: a lease may move or the agent crash
SLOW_SWAP_MS = 3_000


def identity(tp: TopicPartition, batches: Sequence[StoredBatch]) -> Sequence[StoredBatch]:
    """The merger's transform: every batch as it is."""
    return batches


class Swapped(Enum):
    """How a rewrite ended."""

    SWAPPED = "swapped"  # the new rows replaced the old ones
    REFUSED = "refused"  # fenced: the epoch moved on or the rows changed; the upload is orphan
    ABANDONED = "abandoned"  # the store kept failing or the upload grew too old; orphan


@dataclass(frozen=True)
class RewriteOutcome:
    """What one rewrite did: the object it uploaded and its size, the raw bytes read and
    written, and how the swap ended."""

    swapped: Swapped
    key: str
    object_bytes: int
    raw_bytes_read: int
    raw_bytes_written: int
    blocks_written: int


class Rewriter:
    """Rewrites runs of segment rows into new objects and swaps them in (see module)."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        rng: Rng,
        objects: ObjectStore,
        leases: LeaseStore,
        agent_id: str,
        buggify: Buggify | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._rng = rng
        self._objects = objects
        self._leases = leases
        self._agent_id = agent_id
        self._buggify = buggify or Buggify()
        # Its own reader, without a cache: a rewrite reads each block once
        self._reader = ObjectReader(objects)
        # Told after each swap that committed (the snapshot writer owes a snapshot)
        self.on_swapped: list[Callable[[SegmentSwap], None]] = []

    async def rewrite(
        self,
        tp: TopicPartition,
        epoch: int,
        rows: Sequence[SegmentRecord],
        transform: Transform = identity,
        block_bytes_max: int | None = None,
        cleaned_end_offset: int | None = None,
    ) -> RewriteOutcome:
        """Rewrite `rows` (consecutive committed rows of `tp`, as just listed) under lease
        `epoch` into one new object of blocks of at most `block_bytes_max` raw bytes
        (merge_block_bytes_max by default); a compaction round's last run passes where the
        round ended, `cleaned_end_offset`, for the swap to move the checkpoint. Raises
        StorageError when reading the old blocks or uploading fails (nothing changed; an
        upload that half-happened is an orphan); a failed swap ends ABANDONED, a fenced one
        REFUSED."""
        assert rows, f"a rewrite of {tp} needs rows"
        before: list[StoredBatch] = []
        raw_bytes_read = 0
        for row in rows:
            assert row.tp == tp, (tp, row)
            block = await self._reader.read_block(row)
            raw_bytes_read += len(block.raw)
            before += stored_batches(block.raw, row.leader_epoch)
        after = list(transform(tp, before))
        check_transformed(tp, before, after)
        blocks = reblock(
            tp,
            rows[0].base_offset,
            rows[-1].last_offset,
            after,
            block_bytes_max or self._settings.merge_block_bytes_max,
            rows[0].leader_epoch,
        )
        now_ms = self._clock.now_ms()
        org = org_of(tp.topic)  # every object belongs to one org: the partition's
        data, footer = encode_object(blocks, org, self._agent_id, now_ms, self._settings.zstd_level)
        key = object_key(org, self._agent_id, now_ms, self._rng.randbytes(ULID_RANDOM_BYTES))
        uploaded_ms = self._clock.monotonic_ms()
        self._buggify.reached(REWRITE_BEFORE_UPLOAD)
        await self._objects.put(key, data)
        self._buggify.reached(REWRITE_BEFORE_SWAP)
        new = [SegmentRecord.of_block(key, entry) for entry in footer.blocks]
        swap = SegmentSwap(
            ObjectRecord(key, self._agent_id, org, len(data), now_ms),
            tp,
            epoch,
            rows,
            new,
            cleaned_end_offset,
        )
        swapped = await self._swap(swap, uploaded_ms)
        if swapped is Swapped.SWAPPED:
            self._buggify.reached(REWRITE_BEFORE_LISTENERS)
            for listener in self.on_swapped:
                listener(swap)
            self._buggify.reached(REWRITE_AFTER_LISTENERS)
        raw_bytes_written = sum(len(spec.data) for spec in blocks)
        return RewriteOutcome(
            swapped, key, len(data), raw_bytes_read, raw_bytes_written, len(blocks)
        )

    async def _swap(self, swap: SegmentSwap, uploaded_ms: int) -> Swapped:
        """The swap, retried while the store fails and the upload is young enough."""
        if self._buggify.fires(REWRITE_SLOW_SWAP):  # a lease move or a crash may come first
            await self._clock.sleep_ms(SLOW_SWAP_MS)
        if self._buggify.fires(REWRITE_GIVE_UP_AFTER_UPLOAD):  # as a crash right here would
            return Swapped.ABANDONED
        if self._buggify.fires(REWRITE_STALE_EPOCH):  # as if the lease had moved on meanwhile
            swap = dataclasses.replace(swap, epoch=swap.epoch - 1)
        deadline_ms = uploaded_ms + self._settings.reconcile_grace_ms // 2
        for attempt in range(1, SWAP_ATTEMPTS_MAX + 1):
            if self._clock.monotonic_ms() >= deadline_ms:
                log.warning(
                    "swap of %s into %s given up: the upload is too old", swap.tp, swap.obj.key
                )
                return Swapped.ABANDONED
            try:
                return (
                    Swapped.SWAPPED if await self._leases.swap_segments(swap) else Swapped.REFUSED
                )
            except UnknownTopicOrPartition:
                return Swapped.REFUSED  # deleted meanwhile
            except StorageError as error:
                log.warning("swap of %s failed (attempt %d): %s", swap.tp, attempt, error)
                if attempt < SWAP_ATTEMPTS_MAX:
                    await self._clock.sleep_ms(SWAP_RETRY_BACKOFF_MS * attempt)
        return Swapped.ABANDONED


async def pace(clock: Clock, raw_bytes: int, started_ms: int, bytes_per_s_max: int) -> None:
    """Sleep until `raw_bytes` rewritten since `started_ms` (monotonic) keep to
    `bytes_per_s_max`: the merger's and compaction's throttle."""
    due_ms = raw_bytes * 1000 // bytes_per_s_max
    wait_ms = started_ms + due_ms - clock.monotonic_ms()
    if wait_ms > 0:
        await clock.sleep_ms(wait_ms)
