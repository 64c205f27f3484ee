"""Kafka's replica-placement answers for a cluster whose one replica is the object store.

Each partition has exactly one replica, the agent holding its lease, backed by the object
store; so a leader election is never needed, an agent has one virtual log directory, a
reassignment can only name the agent that leads the partition already (so none is ever in
progress), the metadata store is the quorum (spoken for by the agent asked, as each agent names
itself controller), and DescribeTopicPartitions pages through partitions with a cursor. These
are the pure rules; the admin service applies them to the metadata it reads.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from streamhouse.engine.cluster import AgentAddress, ClusterDescription
from streamhouse.errors import ErrorCode, StreamHouseError
from streamhouse.kafka.sentinels import NO_OFFSET, NO_TIMESTAMP
from streamhouse.names import TopicPartition
from streamhouse.ports.topics import PartitionRecord

LOG_DIR_PREFIX = "/streamhouse/agents/"  # + the agent id: the one log directory of an agent
QUORUM_TOPIC = "__cluster_metadata"  # the quorum's partition, named as KRaft names it
QUORUM_PARTITION = 0
QUORUM_EPOCH = 0  # the metadata store's leadership never changes hands: no election was held
NO_DIRECTORY_ID = uuid.UUID(int=0)  # a voter without a log directory id (KIP-853)
VOLUME_BYTES_UNKNOWN = -1  # DescribeLogDirs' total and usable bytes: the object store has no size


class ElectionType(enum.IntEnum):
    """ElectLeaders' election types (Kafka's values)."""

    PREFERRED = 0
    UNCLEAN = 1


def election_type(value: int) -> ElectionType:
    """The election type a request names; INVALID_REQUEST for one Kafka does not know."""
    try:
        return ElectionType(value)
    except ValueError:
        raise StreamHouseError(
            f"unknown election type {value} (0: preferred, 1: unclean)", ErrorCode.INVALID_REQUEST
        ) from None


def election_not_needed(tp: TopicPartition, kind: ElectionType) -> StreamHouseError:
    """Kafka's answer for a partition whose leader is already the one an election would pick."""
    return StreamHouseError(
        f"{tp}: no {kind.name.lower()} election needed: its only replica is the agent holding "
        "its lease, backed by the object store",
        ErrorCode.ELECTION_NOT_NEEDED,
    )


def log_dir_path(agent_id: str) -> str:
    """The one (virtual) log directory of an agent: every partition it leads is in it."""
    return LOG_DIR_PREFIX + agent_id


def check_log_dir(path: str, agent_id: str) -> None:
    """LOG_DIR_NOT_FOUND unless `path` is the agent's one log directory."""
    own = log_dir_path(agent_id)
    if path != own:
        raise StreamHouseError(
            f"log directory {path!r} does not exist: this agent has one, {own!r} (its "
            "partitions live in the object store), so replicas cannot move between directories",
            ErrorCode.LOG_DIR_NOT_FOUND,
        )


# --- reassignments -----------------------------------------------------------------------


@dataclass(frozen=True)
class Reassignment:
    """A reassignment in progress, as ListPartitionReassignments shows one."""

    tp: TopicPartition
    replicas: tuple[int, ...]
    adding: tuple[int, ...]
    removing: tuple[int, ...]


def check_reassignment(
    tp: TopicPartition, target: Sequence[int] | None, live: Collection[int], in_progress: bool
) -> None:
    """A reassignment moves a partition's lease to one named live agent; a cancel (no
    replica list) drops the pin of a move still in progress. Refused with Kafka's codes: a
    cancel with nothing in progress, a replica list not naming live agents once each, or
    naming more than one (the object store is the replica)."""
    if target is None:
        if not in_progress:
            raise StreamHouseError(
                f"{tp}: no reassignment is in progress to cancel",
                ErrorCode.NO_REASSIGNMENT_IN_PROGRESS,
            )
        return
    _check_replica_list(tp, target, live)
    if len(target) != 1:
        raise StreamHouseError(
            f"{tp}: {len(target)} replicas asked for; a partition has exactly one (the "
            "object store is the replica)",
            ErrorCode.INVALID_REPLICATION_FACTOR,
        )


def reassignment_of(record: PartitionRecord, nodes: Mapping[str, int]) -> Reassignment | None:
    """The move in progress of a partition pinned to a live agent (`nodes`: the live agents'
    node ids by agent id) that does not hold its live lease yet; None when there is none."""
    target = record.preferred_agent
    if target is None or target not in nodes:
        return None
    if record.lease_live and record.leader_agent == target:
        return None
    leader = nodes.get(record.leader_agent or "") if record.lease_live else None
    removing = () if leader is None else (leader,)
    return Reassignment(record.tp, (nodes[target],), (nodes[target],), removing)


def _check_replica_list(tp: TopicPartition, target: Sequence[int], live: Collection[int]) -> None:
    problem = None
    if not target:
        problem = "an empty replica list"
    elif len(set(target)) != len(target):
        problem = f"a replica list naming an agent twice ({list(target)})"
    else:
        unknown = sorted(set(target) - set(live))
        if unknown:
            problem = f"agent(s) {unknown}, not in the cluster (live: {sorted(live)})"
    if problem is not None:
        raise StreamHouseError(
            f"{tp}: the assignment has {problem}", ErrorCode.INVALID_REPLICA_ASSIGNMENT
        )


# --- the quorum --------------------------------------------------------------------------


@dataclass(frozen=True)
class QuorumReplica:
    """A voter or observer of the quorum, as DescribeQuorum shows it."""

    node_id: int
    log_end_offset: int
    last_fetch_ms: int
    last_caught_up_ms: int


@dataclass(frozen=True)
class QuorumDescription:
    """The metadata store as the quorum: this agent speaks for it (leader and only voter, as it
    names itself controller); every other agent reads the store directly, an observer."""

    leader_id: int
    leader_epoch: int
    high_watermark: int
    voters: tuple[QuorumReplica, ...]
    observers: tuple[QuorumReplica, ...]
    voter_addresses: tuple[AgentAddress, ...]


def is_quorum_partition(named: Sequence[TopicPartition]) -> bool:
    """Whether a DescribeQuorum request names exactly the quorum's partition (as Kafka
    requires)."""
    return list(named) == [TopicPartition(QUORUM_TOPIC, QUORUM_PARTITION)]


def describe_quorum(cluster: ClusterDescription, now_ms: int) -> QuorumDescription:
    """The quorum as the agent that is `cluster.controller_id` answers at `now_ms`. The store
    has no log, so offsets are unknown; the leader is caught up at the moment it answers."""
    leader = cluster.controller_id
    voter = QuorumReplica(leader, NO_OFFSET, now_ms, now_ms)
    observers = tuple(
        QuorumReplica(agent.node_id, NO_OFFSET, NO_TIMESTAMP, NO_TIMESTAMP)
        for agent in cluster.agents
        if agent.node_id != leader
    )
    addresses = tuple(agent for agent in cluster.agents if agent.node_id == leader)
    return QuorumDescription(leader, QUORUM_EPOCH, NO_OFFSET, (voter,), observers, addresses)


# --- DescribeTopicPartitions' pages --------------------------------------------------------


@dataclass(frozen=True)
class PageCursor:
    """Where a page of partitions starts: this partition of this topic."""

    topic: str
    partition: int


@dataclass(frozen=True)
class PageSlice:
    """One topic of a page: the partitions shown, or None for a topic that does not exist."""

    topic: str
    partitions: range | None


def check_page_request(
    named: Sequence[str], cursor: PageCursor | None, partitions_max: int
) -> None:
    """INVALID_REQUEST for a limit below one, a negative cursor, or a cursor on a topic the
    request does not name (when it names any)."""
    if partitions_max < 1:
        raise StreamHouseError(
            f"response partition limit must be at least 1, not {partitions_max}",
            ErrorCode.INVALID_REQUEST,
        )
    if cursor is None:
        return
    if cursor.partition < 0:
        raise StreamHouseError(
            f"the cursor's partition must not be negative, not {cursor.partition}",
            ErrorCode.INVALID_REQUEST,
        )
    if named and cursor.topic not in named:
        raise StreamHouseError(
            f"the cursor's topic {cursor.topic!r} is not among the topics asked for",
            ErrorCode.INVALID_REQUEST,
        )


def plan_page(
    counts: Sequence[tuple[str, int | None]], cursor: PageCursor | None, partitions_max: int
) -> tuple[list[PageSlice], PageCursor | None]:
    """Kafka's paging over topics sorted by name, from the cursor on (each with its partition
    count, None if it does not exist): whole topics while they fit, then the part of the next
    one that does, and the cursor where the next page starts (None: nothing is left). A topic
    that does not exist takes no room."""
    assert partitions_max >= 1, partitions_max
    remaining = partitions_max
    page: list[PageSlice] = []
    for name, count in counts:
        if remaining == 0:
            return page, PageCursor(name, 0)
        if count is None:
            page.append(PageSlice(name, None))
            continue
        first = cursor.partition if cursor is not None and name == cursor.topic else 0
        shown = range(first, min(count, first + remaining))
        page.append(PageSlice(name, shown))
        if shown.stop < count:
            return page, PageCursor(name, shown.stop)
        remaining -= len(shown)
    return page, None
