"""Kafka's client-side partition assignors "range" and "roundrobin", as pure functions: what a
group leader computes from its members' subscriptions and the topics' partition counts.

Members are ordered as Kafka's assignors order them: members with a group instance id first,
by instance id, then the others by member id. A subscribed topic with no known partition count
(it does not exist) gets no partitions. Every member has an entry, possibly empty.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from streamhouse.names import TopicPartition

RANGE = "range"
ROUNDROBIN = "roundrobin"


@dataclass(frozen=True)
class AssignorMember:
    """One member as an assignor sees it."""

    member_id: str
    instance_id: str | None
    topics: frozenset[str]


Assignor = Callable[[Sequence[AssignorMember], Mapping[str, int]], dict[str, list[TopicPartition]]]


def _ordered(members: Sequence[AssignorMember]) -> list[AssignorMember]:
    def key(member: AssignorMember) -> tuple[int, str]:
        if member.instance_id is not None:
            return (0, member.instance_id)
        return (1, member.member_id)

    return sorted(members, key=key)


def _subscribed_topics(
    members: Sequence[AssignorMember], partition_counts: Mapping[str, int]
) -> list[str]:
    topics = {topic for member in members for topic in member.topics}
    return sorted(topic for topic in topics if partition_counts.get(topic, 0) > 0)


def assign_range(
    members: Sequence[AssignorMember], partition_counts: Mapping[str, int]
) -> dict[str, list[TopicPartition]]:
    """Each topic on its own: its partitions split into contiguous runs, one per subscribed
    member in order; when they do not divide evenly the first members get one more."""
    ordered = _ordered(members)
    assigned: dict[str, list[TopicPartition]] = {m.member_id: [] for m in ordered}
    for topic in _subscribed_topics(ordered, partition_counts):
        takers = [m for m in ordered if topic in m.topics]
        count = partition_counts[topic]
        share, extra = divmod(count, len(takers))
        start = 0
        for index, member in enumerate(takers):
            length = share + (1 if index < extra else 0)
            assigned[member.member_id] += [
                TopicPartition(topic, p) for p in range(start, start + length)
            ]
            start += length
        assert start == count, f"range split {topic!r} into {start} of {count} partitions"
    return assigned


def assign_roundrobin(
    members: Sequence[AssignorMember], partition_counts: Mapping[str, int]
) -> dict[str, list[TopicPartition]]:
    """Every partition of every subscribed topic, by topic then partition, dealt to the members
    in turn; a member not subscribed to a partition's topic is passed over for it."""
    ordered = _ordered(members)
    assigned: dict[str, list[TopicPartition]] = {m.member_id: [] for m in ordered}
    turn = 0
    for topic in _subscribed_topics(ordered, partition_counts):
        for partition in range(partition_counts[topic]):
            # some member subscribes to the topic, so this finds one within a full cycle
            for _ in range(len(ordered)):
                member = ordered[turn % len(ordered)]
                turn += 1
                if topic in member.topics:
                    assigned[member.member_id].append(TopicPartition(topic, partition))
                    break
            else:
                raise AssertionError(f"no member subscribes to {topic!r}")
    return assigned


ASSIGNORS: dict[str, Assignor] = {RANGE: assign_range, ROUNDROBIN: assign_roundrobin}
