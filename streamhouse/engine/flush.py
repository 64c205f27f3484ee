"""The flush service: one object per org for everything pending on the agent, each committed.

A flush runs when synced pending bytes reach `flush_bytes_max` or the oldest
synced pending batch is `flush_interval_ms` old. It takes every batch whose
WAL entry is fsynced, writes one object (a block per partition), uploads it,
and commits all its segment rows in one transaction fenced by each
partition's lease epoch. Upload and commit are retried with capped,
jittered backoff (the commit is idempotent by object key). Only one flush is
in flight, so durable offsets of a partition advance in order.

Every object belongs to one org (its key is under `orgs/<org>/`), so when the
batches taken belong to several orgs (their topics' orgs) the flush writes and
commits one object per org, one after the other, and forgets each org's batches
(releasing their WAL entries) as soon as its commit is in. A partition belongs
to one org, so each partition's batches still go into one object in order; a
flush that gives up part-way leaves the orgs not yet committed pending, whole.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from streamhouse.config import Settings
from streamhouse.engine.partition_log import PartitionLog
from streamhouse.engine.waiting import sleep_or_until
from streamhouse.errors import NotLeader, StorageError
from streamhouse.log.ids import ULID_RANDOM_BYTES, object_key
from streamhouse.log.object_format import BlockSpec, encode_object
from streamhouse.log.partition_txns import TxnChange
from streamhouse.log.producer_state import ProducerBatch
from streamhouse.log.tail import TailBatch
from streamhouse.names import TopicPartition
from streamhouse.ports.buggify import FLUSH_EARLY, Buggify
from streamhouse.ports.clock import Clock
from streamhouse.ports.leases import (
    FlushCommit,
    FlushOutcome,
    LeaseStore,
    ObjectRecord,
    SegmentRecord,
)
from streamhouse.ports.object_store import ObjectStore
from streamhouse.ports.rng import Rng

T = TypeVar("T")
RETRY_BACKOFF_MS_MIN = 10
CLOSE_ATTEMPTS_MAX = 5


@dataclass
class PendingBatch:
    """A batch appended to the WAL and not yet in a committed object."""

    plog: PartitionLog
    leader_epoch: int
    batch: TailBatch
    appended_ms: int
    segment: int | None = None  # the WAL segment holding it, once fsynced
    producer: ProducerBatch | None = None  # set for an idempotent producer's batch
    txn: TxnChange | None = None  # a transaction that opened or ended with this batch
    # A transaction marker: its coordinator waits for it to be durable before the producer may
    # begin its next transaction, so it is flushed once synced, not at the interval's end
    urgent: bool = False


@dataclass
class FlushStats:
    """Counters for metrics, tests and benchmarks."""

    flushes: int = 0
    objects_put: int = 0
    bytes_put: int = 0
    put_retries: int = 0
    commit_retries: int = 0
    batches_flushed: int = 0
    batches_dropped: int = 0


@dataclass(frozen=True)
class FlushReport:
    """What one flush did."""

    key: str
    outcome: FlushOutcome
    batch_count: int
    size_bytes: int


class Flusher:
    """Owns the pending batches of the agent and turns them into committed objects."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        rng: Rng,
        objects: ObjectStore,
        leases: LeaseStore,
        agent_id: str,
        release_wal: Callable[[int], None],
        on_fenced: Callable[[PartitionLog], None],
        buggify: Buggify | None = None,
    ) -> None:
        self._settings = settings
        self._buggify = buggify or Buggify()
        self._clock = clock
        self._rng = rng
        self._objects = objects
        self._leases = leases
        self._agent_id = agent_id
        self._release_wal = release_wal
        self._on_fenced = on_fenced
        self._pending: deque[PendingBatch] = deque()
        self._synced_count = 0
        self._synced_bytes = 0
        self.pending_bytes = 0  # pending plus in flight: what the bound counts
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._flush_lock = asyncio.Lock()
        self._stopping = False
        self._early = False  # flush now, below both thresholds (an urgent batch, or buggify)
        self.stats = FlushStats()
        # Told after each flush that committed something (the snapshot writer owes a snapshot)
        self.on_committed: list[Callable[[], None]] = []

    def has_room(self) -> bool:
        return self.pending_bytes < self._settings.flush_pending_bytes_max

    async def wait_for_room(self) -> None:
        while not self.has_room():
            self._room.clear()
            await self._room.wait()

    def add(self, pending: PendingBatch) -> None:
        self._pending.append(pending)
        self.pending_bytes += len(pending.batch.data)

    def mark_synced(self, pending: PendingBatch, segment: int) -> None:
        """The WAL fsynced this batch; batches sync in the order they were added."""
        assert self._pending[self._synced_count] is pending, "WAL sync order broken"
        pending.segment = segment
        self._synced_count += 1
        self._synced_bytes += len(pending.batch.data)
        if pending.urgent:
            self._early = True
            self._wake.set()
        elif self._synced_count == 1 or self._synced_bytes >= self._settings.flush_bytes_max:
            self._wake.set()
        elif self._buggify.fires(FLUSH_EARLY):  # as if flush_bytes_max were tiny
            self._early = True
            self._wake.set()

    def drop_unsynced(self) -> None:
        """The WAL failed every unsynced entry: forget them (their offsets are rolled back)."""
        while len(self._pending) > self._synced_count:
            dropped = self._pending.pop()
            self.pending_bytes -= len(dropped.batch.data)
        self._wake_room()

    def _wake_room(self) -> None:
        if self.has_room():
            self._room.set()

    async def run(self) -> None:
        """Flush whenever a threshold is reached, until `stop`."""
        while not self._stopping:
            if self._synced_count == 0:
                self._wake.clear()
                await self._wake.wait()
                continue
            oldest_ms = self._pending[0].appended_ms
            due_in_ms = oldest_ms + self._settings.flush_interval_ms - self._clock.monotonic_ms()
            full = self._synced_bytes >= self._settings.flush_bytes_max or self._early
            if not full and due_in_ms > 0:
                self._wake.clear()
                await sleep_or_until(self._clock, due_in_ms, self._wake.wait())
                continue
            self._early = False
            await self.flush_once()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def flush_once(self) -> list[FlushReport]:
        """Flush every synced pending batch now: the reports of the objects written, one per
        org that had a live batch (none when nothing was pending)."""
        async with self._flush_lock:
            # Taken batches stay pending until their org's object is committed: if the flush
            # gives up, the WAL still holds them and nothing of theirs is released.
            taken = list(itertools.islice(self._pending, self._synced_count))
            by_org = _split_by_org(taken)
            reports = []
            for org, batches in by_org.items():
                report = await self._flush(org, batches)
                if report is not None:
                    reports.append(report)
                self._forget(batches, whole_prefix=len(by_org) == 1)
            return reports

    def _forget(self, done: list[PendingBatch], *, whole_prefix: bool) -> None:
        """Take flushed (or dropped) batches out of the pending ones and release their WAL
        entries. `whole_prefix`: they are the first len(done) pending, in order (one org's
        flush, the common case, pops them); else they are picked out, the others kept in
        order (every synced batch still before every unsynced one)."""
        if whole_prefix:
            for pending in done:
                assert self._pending.popleft() is pending
        else:
            flushed = {id(pending) for pending in done}
            kept = deque(p for p in self._pending if id(p) not in flushed)
            assert len(kept) == len(self._pending) - len(done), "flushed batches not pending"
            self._pending = kept
        for pending in done:
            assert pending.segment is not None
            self._release_wal(pending.segment)
            self.pending_bytes -= len(pending.batch.data)
            self._synced_bytes -= len(pending.batch.data)
        self._synced_count -= len(done)
        self._wake_room()

    async def _flush(self, org: str, taken: list[PendingBatch]) -> FlushReport | None:
        """One object under `org`'s prefix for the live ones of `taken` (all of that org)."""
        live = [p for p in taken if not p.plog.fenced]
        self.stats.batches_dropped += len(taken) - len(live)
        if not live:
            return None
        by_partition = _group_by_partition(live)
        now_ms = self._clock.now_ms()
        agent = self._agent_id
        blocks = [_block_spec(tp, batches) for tp, batches in sorted(by_partition.items())]
        data, footer = encode_object(blocks, org, agent, now_ms, self._settings.zstd_level)
        key = object_key(org, agent, now_ms, self._rng.randbytes(ULID_RANDOM_BYTES))
        await self._retry(lambda: self._objects.put(key, data), "put_retries")
        self.stats.objects_put += 1
        self.stats.bytes_put += len(data)
        segments = [SegmentRecord.of_block(key, entry) for entry in footer.blocks]
        epochs = {tp: batches[0].leader_epoch for tp, batches in by_partition.items()}
        commit = FlushCommit(
            ObjectRecord(key, agent, org, len(data), now_ms),
            segments,
            epochs,
            _collected(by_partition, lambda pending: pending.producer),
            now_ms - self._settings.producer_id_expiration_ms,
            _collected(by_partition, lambda pending: pending.txn),
        )
        outcome = await self._retry(lambda: self._leases.commit_flush(commit), "commit_retries")
        self._apply(outcome, by_partition)
        if outcome.committed:
            for listener in self.on_committed:
                listener()
        self.stats.flushes += 1
        return FlushReport(key, outcome, len(live), len(data))

    def _apply(
        self, outcome: FlushOutcome, by_partition: dict[TopicPartition, list[PendingBatch]]
    ) -> None:
        for tp, batches in sorted(by_partition.items()):
            plog = batches[0].plog
            if tp in outcome.committed:
                plog.made_durable(batches[-1].batch.end_offset)
                self.stats.batches_flushed += len(batches)
            else:
                assert tp in outcome.fenced, tp
                self.stats.batches_dropped += len(batches)
                plog.fence(NotLeader(f"lease of {tp} moved to another agent; retry the request"))
                self._on_fenced(plog)

    async def _retry(self, operation: Callable[[], Awaitable[T]], counter: str) -> T:
        backoff_ms = RETRY_BACKOFF_MS_MIN
        attempt = 0
        while True:
            attempt += 1
            try:
                return await operation()
            except StorageError:
                if self._stopping and attempt >= CLOSE_ATTEMPTS_MAX:
                    raise
                setattr(self.stats, counter, getattr(self.stats, counter) + 1)
                await self._clock.sleep_ms(backoff_ms // 2 + self._rng.randint(0, backoff_ms // 2))
                backoff_ms = min(backoff_ms * 2, self._settings.flush_retry_backoff_ms_max)


def _split_by_org(taken: list[PendingBatch]) -> dict[str, list[PendingBatch]]:
    """The batches of each org, in their order; one org (the common case) costs one pass."""
    if not taken:
        return {}
    first = taken[0].plog.org
    if all(pending.plog.org == first for pending in taken):
        return {first: taken}
    by_org: dict[str, list[PendingBatch]] = {}
    for pending in taken:
        by_org.setdefault(pending.plog.org, []).append(pending)
    return by_org


def _group_by_partition(batches: list[PendingBatch]) -> dict[TopicPartition, list[PendingBatch]]:
    grouped: dict[TopicPartition, list[PendingBatch]] = {}
    for pending in batches:
        grouped.setdefault(pending.plog.state.tp, []).append(pending)
    return grouped


def _collected(
    by_partition: dict[TopicPartition, list[PendingBatch]],
    pick: Callable[[PendingBatch], T | None],
) -> dict[TopicPartition, list[T]]:
    """What `pick` finds in each partition's batches, in offset order (partitions where it
    finds nothing are left out: they cost the commit nothing)."""
    found: dict[TopicPartition, list[T]] = {}
    for tp, batches in by_partition.items():
        picked = [item for item in map(pick, batches) if item is not None]
        if picked:
            found[tp] = picked
    return found


def _block_spec(tp: TopicPartition, batches: list[PendingBatch]) -> BlockSpec:
    first, last = batches[0].batch, batches[-1].batch
    for before, after in itertools.pairwise(batches):
        assert before.batch.end_offset == after.batch.base_offset, (tp, before, after)
        assert before.leader_epoch == after.leader_epoch, (tp, before, after)
    return BlockSpec(
        tp.topic,
        tp.partition,
        batches[0].leader_epoch,
        first.base_offset,
        last.last_offset,
        max(p.batch.max_timestamp_ms for p in batches),
        b"".join(p.batch.data for p in batches),
    )
