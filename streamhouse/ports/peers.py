"""Peer requests ports: Produce, Fetch and ListOffsets to the agent leading a partition, and
the consumer group requests (and their inspection) to the agent coordinating a group.

The REST and gRPC doors serve every partition and every group of the cluster; a partition
another agent leads is served by asking that agent over its Kafka listener, as a Kafka client
would (engine/forwarding.py), and a group another agent coordinates likewise
(engine/group_calls.py). Kafka clients find leaders and coordinators themselves and never
come this way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from streamhouse.errors import ErrorCode
from streamhouse.log.group_state import (
    GroupSummary,
    JoinRequest,
    JoinResponse,
    MemberLeave,
    SyncRequest,
    SyncResponse,
)
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import OffsetToCommit


@dataclass(frozen=True)
class PeerProduced:
    """A leader's answer to one partition's batch: its Kafka error code (0: appended and
    acknowledged as asked) with its message, and the batch's first offset."""

    error_code: int
    base_offset: int
    error_message: str | None = None


@dataclass(frozen=True)
class PeerFetched:
    """A leader's answer for one partition of a Fetch: its error code, its offsets, the
    records field as sent (whole batches, a cut one at the end dropped by the reader), and the
    aborted transactions among them, as (producer id, first offset) (None reading
    uncommitted)."""

    error_code: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    records: bytes = b""
    aborted: tuple[tuple[int, int], ...] | None = None


@dataclass(frozen=True)
class PeerOffset:
    """A leader's answer to one ListOffsets query: its error code and the offset."""

    error_code: int
    offset: int


@dataclass(frozen=True)
class GroupOffset:
    """A group's committed position in one partition, as OffsetFetch answers it."""

    offset: int
    leader_epoch: int  # -1 when unknown
    metadata: str | None


@dataclass(frozen=True)
class OffsetQuery:
    """One ListOffsets question: the offset for `timestamp` (EARLIEST_TIMESTAMP, …)."""

    timestamp: int
    read_committed: bool


class PeerRequests(ABC):
    """Kafka requests to another agent's listener, each bounded in time by the adapter.
    Every method raises PeerUnreachable when the agent cannot be reached, does not answer in
    time, or answers something that does not decode."""

    @abstractmethod
    async def produce(
        self, host: str, port: int, tp: TopicPartition, batch: bytes, acks: int, timeout_ms: int
    ) -> PeerProduced:
        """Produce `batch` to `tp` with Kafka's `acks` (1 or -1: an answer is awaited)."""

    @abstractmethod
    async def fetch(
        self,
        host: str,
        port: int,
        positions: Sequence[tuple[TopicPartition, int]],
        max_bytes: int,
        *,
        read_committed: bool,
        max_wait_ms: int,
    ) -> dict[TopicPartition, PeerFetched]:
        """One Fetch of the partitions from their offsets, about `max_bytes` in all (each
        partition's first batch whatever its size), waiting up to `max_wait_ms` for a byte."""

    @abstractmethod
    async def list_offsets(
        self, host: str, port: int, tp: TopicPartition, queries: Sequence[OffsetQuery]
    ) -> list[PeerOffset]:
        """One ListOffsets per query, in order, over one connection."""


class GroupCalls(ABC):
    """The group coordinator of a group, as a door's consumer (or a door describing the group)
    calls it (engine/group_calls.py:
    this agent's, another agent's, or whichever coordinates the group). Answers carry the
    coordinator's Kafka error codes: NOT_COORDINATOR, it does not coordinate the group;
    COORDINATOR_NOT_AVAILABLE, it could not answer (or be reached)."""

    @abstractmethod
    async def join(self, group_id: str, request: JoinRequest) -> JoinResponse:
        """JoinGroup; answered once the rebalance completes (the request's rebalance timeout
        bounds the wait)."""

    @abstractmethod
    async def sync(
        self, group_id: str, request: SyncRequest, *, rebalance_timeout_ms: int
    ) -> SyncResponse:
        """SyncGroup; a follower's waits for the leader's assignments (at most the member's
        `rebalance_timeout_ms`)."""

    @abstractmethod
    async def heartbeat(
        self, group_id: str, member_id: str, instance_id: str | None, generation: int
    ) -> ErrorCode:
        """Heartbeat."""

    @abstractmethod
    async def leave(
        self, group_id: str, leaving: Sequence[tuple[str, str | None]]
    ) -> list[MemberLeave]:
        """LeaveGroup of (member id, instance id) pairs, one answer each."""

    @abstractmethod
    async def commit_offsets(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        instance_id: str | None,
        offsets: Mapping[TopicPartition, OffsetToCommit],
    ) -> dict[TopicPartition, ErrorCode]:
        """OffsetCommit (generation -1 and no member id: a simple consumer's); the answer for
        each partition."""

    @abstractmethod
    async def fetch_offsets(
        self, group_id: str, partitions: Sequence[TopicPartition] | None
    ) -> dict[TopicPartition, GroupOffset]:
        """The group's committed offsets of `partitions` (None: every partition it has one
        in), for those that have one. Raises NotCoordinator, or StreamHouseError with the
        coordinator's code (PeerUnreachable when it could not be reached)."""

    @abstractmethod
    async def describe(self, group_id: str) -> GroupSummary:
        """DescribeGroups: the group's state, protocol and members (Dead when it has neither
        members nor committed offsets). Raises as `fetch_offsets` does."""


class PeerGroups(ABC):
    """The group coordinators of other agents, over their Kafka listeners (JoinGroup,
    SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups), each request
    bounded in time by the adapter: a join or sync by the wait it asks for and a margin."""

    @abstractmethod
    def at(self, host: str, port: int) -> GroupCalls:
        """The coordinator of the agent whose Kafka listener is host:port."""
