"""Metadata store port: topics, leases, durable offsets, segments, producers and group offsets.

The metadata store is the source of truth for what exists (DESIGN §2-§3).
Every write that concerns a partition is fenced by the partition's lease
epoch: a writer whose epoch has moved on is left out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from streamhouse.log.producer_state import ProducerBatch, ProducerSnapshot
from streamhouse.names import TopicPartition


@dataclass(frozen=True)
class TopicRecord:
    """A topic and its configuration overrides."""

    name: str
    partition_count: int
    configs: Mapping[str, str]
    created_ms: int


@dataclass(frozen=True)
class PartitionRecord:
    """The durable state of one partition.

    `durable_end_offset` is the offset after the last record committed to the
    object store; `log_start_offset` the first offset still readable.
    """

    topic: str
    partition: int
    leader_agent: str | None
    leader_epoch: int
    lease_expires_ms: int
    durable_end_offset: int
    log_start_offset: int

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True)
class Lease:
    """A granted or renewed partition lease."""

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


@dataclass(frozen=True)
class ObjectRecord:
    """An object written by a flush."""

    key: str
    agent: str
    org: str
    size_bytes: int
    created_ms: int


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


@dataclass(frozen=True)
class FlushOutcome:
    """Which partitions of a flush were committed and which were fenced out."""

    committed: frozenset[TopicPartition] = field(default_factory=frozenset)
    fenced: frozenset[TopicPartition] = field(default_factory=frozenset)


@dataclass(frozen=True)
class CommittedOffset:
    """A consumer group's committed position in one partition (OffsetCommit's payload)."""

    offset: int
    leader_epoch: int  # -1 when unknown
    metadata: str | None
    commit_ms: int


class MetadataStore(ABC):
    """SQLite, PostgreSQL, or the simulator's in-memory SQLite with faults."""

    @abstractmethod
    async def create_topic(
        self, name: str, partition_count: int, configs: Mapping[str, str], now_ms: int
    ) -> TopicRecord:
        """Create a topic and its partitions. Raises TopicAlreadyExists."""

    @abstractmethod
    async def get_topic(self, name: str) -> TopicRecord | None:
        """The topic, or None."""

    @abstractmethod
    async def list_topics(self) -> list[TopicRecord]:
        """Every topic, sorted by name."""

    @abstractmethod
    async def delete_topic(self, name: str) -> None:
        """Delete the topic, its partitions, segment rows and committed group offsets.

        Raises UnknownTopicOrPartition.
        """

    @abstractmethod
    async def add_partitions(self, name: str, new_total: int) -> TopicRecord:
        """Grow the topic to `new_total` fresh partitions.

        Raises InvalidPartitions unless `new_total` exceeds the current count, and
        UnknownTopicOrPartition if the topic does not exist.
        """

    @abstractmethod
    async def set_topic_configs(
        self, name: str, configs: Mapping[str, str | None], *, incremental: bool
    ) -> TopicRecord:
        """Change the topic's configuration overrides.

        Incremental: each key is set, or deleted where its value is None; other
        keys stay. Otherwise the overrides become exactly `configs` (None values
        left out). Raises UnknownTopicOrPartition.
        """

    @abstractmethod
    async def get_partition(self, tp: TopicPartition) -> PartitionRecord:
        """The partition's state. Raises UnknownTopicOrPartition."""

    @abstractmethod
    async def acquire_lease(
        self, tp: TopicPartition, agent: str, now_ms: int, ttl_ms: int
    ) -> Lease | None:
        """Take or renew the partition's lease.

        The holder renews without changing the epoch (even after expiry, as long
        as nobody took it meanwhile). Anyone else gets it only when it has
        expired, and then the epoch is bumped. Returns None when another agent
        holds an unexpired lease. Raises UnknownTopicOrPartition.
        """

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
    async def list_objects(self) -> list[ObjectRecord]:
        """Every committed object, sorted by key."""

    @abstractmethod
    async def set_log_start_offset(self, tp: TopicPartition, offset: int) -> int:
        """Move the log start forward (never back); returns the resulting log start."""

    @abstractmethod
    async def list_producer_states(self, tp: TopicPartition) -> list[ProducerSnapshot]:
        """Idempotent producers' state as of the partition's durable end, by producer id."""

    @abstractmethod
    async def reserve_group_generations(self, group_id: str, count: int) -> int:
        """Reserve `count` generation numbers of a consumer group; returns the first. Each
        reservation starts above every earlier one, so a coordinator that restarts (or moves)
        never hands out a generation twice."""

    @abstractmethod
    async def allocate_producer_id(self) -> int:
        """A producer id never handed out before (by any agent sharing this store)."""

    @abstractmethod
    async def commit_offsets(
        self, group_id: str, offsets: Mapping[TopicPartition, CommittedOffset]
    ) -> None:
        """Store (insert or replace) the group's offsets in one transaction.

        Raises UnknownTopicOrPartition, committing nothing, when a partition
        does not exist.
        """

    @abstractmethod
    async def fetch_offsets(
        self, group_id: str, partitions: Sequence[TopicPartition] | None = None
    ) -> dict[TopicPartition, CommittedOffset]:
        """The group's committed offsets for `partitions` (None: all it has).

        Partitions without a committed offset are absent from the answer.
        """

    @abstractmethod
    async def delete_offsets(self, group_id: str, partitions: Sequence[TopicPartition]) -> None:
        """Forget the group's offsets of these partitions (absent ones are ignored)."""

    @abstractmethod
    async def delete_group_offsets(self, group_id: str) -> None:
        """Forget every offset of the group."""

    @abstractmethod
    async def list_offset_groups(self) -> list[str]:
        """Every group that has at least one committed offset, sorted."""

    @abstractmethod
    async def expire_offsets(self, group_id: str, committed_before_ms: int) -> int:
        """Delete the group's offsets committed before `committed_before_ms`; returns how many."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""
