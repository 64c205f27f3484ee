"""Leases port: who may write a partition, and what its lease holder commits under its epoch.

A lease gives one agent a partition's epoch (DESIGN §3); every write made for
the partition is fenced by that epoch: a flush commit (an uploaded object and
its segment rows, moving the durable end) and a new log start. Read and
written together by the log and its flusher (and, once they exist, by the
merger and the reconciler, which work on objects and segment rows).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from streamhouse.log.object_format import BlockIndexEntry
from streamhouse.log.partition_txns import TxnChange
from streamhouse.log.producer_state import ProducerBatch
from streamhouse.names import TopicPartition


@dataclass(frozen=True)
class Lease:
    """A granted or renewed partition lease; `expires_ms` is in the metadata store's time."""

    tp: TopicPartition
    agent: str
    epoch: int
    expires_ms: int


@dataclass(frozen=True)
class SegmentRecord:
    """One block of an object: offsets [base_offset, last_offset] of one partition."""

    topic: str
    partition: int
    base_offset: int
    last_offset: int
    leader_epoch: int
    max_timestamp_ms: int
    object_key: str
    position: int
    length: int

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    @classmethod
    def of_block(cls, key: str, entry: BlockIndexEntry) -> SegmentRecord:
        """The row of a block its object's footer lists."""
        return cls(
            entry.topic,
            entry.partition,
            entry.first_offset,
            entry.last_offset,
            entry.leader_epoch,
            entry.max_timestamp_ms,
            key,
            entry.position,
            entry.length,
        )


@dataclass(frozen=True)
class ObjectRecord:
    """An object written by a flush."""

    key: str
    agent: str
    org: str
    size_bytes: int
    created_ms: int


@dataclass(frozen=True)
class ObjectRef:
    """An object's row as the reconciler sees it: what the flush recorded and how many segment
    rows point into the object now (0: nothing reads it any more; it may be deleted)."""

    key: str
    size_bytes: int
    created_ms: int
    segment_count: int
    # How long ago, in the store's time, the object lost its last segment row (retention,
    # DeleteRecords, a rewrite's swap); None when rows were never taken from it
    released_age_ms: int | None = None


@dataclass(frozen=True)
class FlushCommit:
    """Everything one flush commits in one transaction.

    `epochs` holds, per partition in the object, the lease epoch the writer
    holds; partitions whose epoch has moved on are left out of the commit.
    """

    obj: ObjectRecord
    segments: Sequence[SegmentRecord]
    epochs: Mapping[TopicPartition, int]
    # Idempotent producers' batches in this flush, per partition in offset order; folded into
    # the stored producer state of committed partitions only.
    producers: Mapping[TopicPartition, Sequence[ProducerBatch]] = field(default_factory=dict)
    # Producer states of those partitions last appended to before this time are dropped.
    producers_expire_before_ms: int = 0
    # Transactions that opened or ended in this flush, per partition in offset order; applied
    # to the stored open and aborted transactions of committed partitions only.
    txns: Mapping[TopicPartition, Sequence[TxnChange]] = field(default_factory=dict)


@dataclass(frozen=True)
class SegmentSwap:
    """A rewrite of a run of one partition's segment rows: `old` (consecutive rows, exactly as
    listed) give way to `new`, which point into the uploaded object `obj` and cover the same
    offsets, first to last (a compacted block keeps its offsets and leaves gaps inside).

    Fenced twice: by the lease epoch the rewriter holds, and by `old` still being the rows
    there (a flush never touches them, but retention, DeleteRecords and another rewrite may).
    """

    obj: ObjectRecord
    tp: TopicPartition
    epoch: int
    old: Sequence[SegmentRecord]
    new: Sequence[SegmentRecord]
    # A compaction round's swap moves the partition's checkpoint (its next first dirty
    # offset) forward to this, and stamps the round's time; None for a merge
    cleaned_end_offset: int | None = None

    def __post_init__(self) -> None:
        assert self.old and self.new, f"a swap of {self.tp} replaces rows with rows"
        for rows in (self.old, self.new):
            assert all(row.tp == self.tp for row in rows), f"a swap's rows are all of {self.tp}"
            for before, after in pairwise(rows):
                assert after.base_offset == before.last_offset + 1, (
                    f"a swap's rows of {self.tp} are consecutive: {before} then {after}"
                )
        assert self.old[0].base_offset == self.new[0].base_offset, "a swap keeps its first offset"
        assert self.old[-1].last_offset == self.new[-1].last_offset, "a swap keeps its last offset"
        assert all(row.object_key == self.obj.key for row in self.new), (
            f"a swap's new rows all point into {self.obj.key}"
        )


@dataclass(frozen=True)
class FlushOutcome:
    """Which partitions of a flush were committed and which were fenced out."""

    committed: frozenset[TopicPartition] = field(default_factory=frozenset)
    fenced: frozenset[TopicPartition] = field(default_factory=frozenset)


class LeaseStore(ABC):
    """Partition leases and the epoch-fenced writes of their holders."""

    @abstractmethod
    async def acquire_lease(self, tp: TopicPartition, agent: str, ttl_ms: int) -> Lease | None:
        """Take or renew the partition's lease for `ttl_ms` of the store's time.

        Expiry is judged by the metadata store's own clock, never the caller's, and the
        lease's `expires_ms` is in that time. The holder renews without changing the
        epoch (even after expiry, as long as nobody took it meanwhile). Anyone else gets
        it only when it has expired, and then the epoch is bumped. Returns None when
        another agent holds an unexpired lease. Raises UnknownTopicOrPartition.
        """

    @abstractmethod
    async def renew_leases(
        self, held: Mapping[TopicPartition, int], agent: str, ttl_ms: int
    ) -> dict[TopicPartition, Lease | None]:
        """Renew, in one transaction, the lease of each partition in `held` (partition ->
        epoch) that `agent` still holds at that epoch, expired or not, for `ttl_ms` of the
        store's time (judged as `acquire_lease` judges it). Never takes a lease: where another
        agent holds it or the epoch moved on, nothing changes and the answer is None. A
        partition that no longer exists has no entry in the answer."""

    @abstractmethod
    async def fence_own_leases(self, agent: str) -> int:
        """The agent lost its WAL (a new or wiped disk): every partition it holds, or held
        last, moves to a new epoch with an expired lease, so that records acknowledged from
        the lost WAL can never share an epoch with what is written next. Returns how many."""

    @abstractmethod
    async def release_lease(self, tp: TopicPartition, agent: str) -> None:
        """Expire the lease now if `agent` holds it (the epoch stays)."""

    @abstractmethod
    async def commit_flush(self, commit: FlushCommit) -> FlushOutcome:
        """Commit an uploaded object's segment rows in one transaction.

        For each partition whose epoch still matches, its rows are inserted and
        its durable end offset moves to the last row's end. Idempotent by object
        key: committing the same object again returns the first outcome.
        """

    @abstractmethod
    async def list_segments(
        self, tp: TopicPartition, from_offset: int = 0, limit: int = 1000
    ) -> list[SegmentRecord]:
        """Segment rows of the partition whose last offset is >= from_offset, by offset."""

    @abstractmethod
    async def partition_sizes(self, topic: str) -> dict[int, int]:
        """Bytes of the topic's committed segment rows (their blocks in objects), by partition;
        a partition without rows, and a topic that does not exist, has no entry."""

    @abstractmethod
    async def partition_objects(self, topic: str) -> dict[int, int]:
        """How many objects the topic's committed segment rows point into, by partition; a
        partition without rows, and a topic that does not exist, has no entry."""

    @abstractmethod
    async def partition_dirty_sizes(self, topic: str) -> dict[int, int]:
        """Bytes of the topic's committed segment rows at or past each partition's compaction
        checkpoint (`cleaned_end_offset`: rows a cleaning round has not covered), by
        partition; a partition without such rows has no entry."""

    @abstractmethod
    async def list_objects(self) -> list[ObjectRecord]:
        """Every committed object, sorted by key."""

    @abstractmethod
    async def list_object_refs(self, after_key: str = "", limit: int = 1000) -> list[ObjectRef]:
        """At most `limit` object rows whose key sorts after `after_key`, by key, each with
        its count of segment rows: one page of a walk over every object."""

    @abstractmethod
    async def object_segments(self, key: str) -> list[SegmentRecord]:
        """The segment rows pointing into the object, by partition and offset."""

    @abstractmethod
    async def forget_object(self, key: str) -> bool:
        """Delete the object's row and its flush outcome in one transaction, unless a
        segment row points into it. True if the row was deleted, False if rows point into
        it or there was no row."""

    @abstractmethod
    async def set_log_start_offset(self, tp: TopicPartition, offset: int) -> int:
        """Move the log start forward (never back); returns the resulting log start. Segment
        rows wholly below it go in the same transaction, and objects left without rows are
        stamped released (the reconciler deletes them a grace period later)."""

    @abstractmethod
    async def swap_segments(self, swap: SegmentSwap) -> bool:
        """Replace a run of a partition's segment rows by rows in a newly uploaded object, in
        one transaction: the object's row goes in, the old rows go, the new rows take their
        place, and objects left without rows are stamped released. True when swapped (also
        for a replay of a swap that committed); False, changing nothing, when the epoch moved
        on or the old rows are not all there as listed (the new object is then an orphan the
        reconciler deletes). Raises UnknownTopicOrPartition."""
