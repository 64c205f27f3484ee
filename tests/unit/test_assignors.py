"""Kafka's range and roundrobin assignors: every subscribed partition goes to exactly one
member subscribed to its topic; range splits each topic in contiguous runs, the first members
taking the extra partitions; roundrobin deals partitions in turn; both are deterministic."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.log.assignors import (
    ASSIGNORS,
    AssignorMember,
    assign_range,
    assign_roundrobin,
)
from streamhouse.names import TopicPartition
from tests.property_budget import examples

TOPICS = ("a", "b", "c", "d")


@st.composite
def groups(draw: st.DrawFn) -> tuple[list[AssignorMember], dict[str, int]]:
    count = draw(st.integers(1, 7))
    ids = draw(
        st.lists(
            st.text("mxyz0123", min_size=1, max_size=4), min_size=count, max_size=count, unique=True
        )
    )
    members = [
        AssignorMember(
            member_id,
            draw(st.none() | st.sampled_from(["i1", "i2", "i3"])) if index % 2 else None,
            frozenset(draw(st.lists(st.sampled_from(TOPICS), max_size=4))),
        )
        for index, member_id in enumerate(ids)
    ]
    instances = [m.instance_id for m in members if m.instance_id is not None]
    if len(set(instances)) != len(instances):  # instance ids are unique in a group
        members = [AssignorMember(m.member_id, None, m.topics) for m in members]
    counts = {t: draw(st.integers(0, 9)) for t in TOPICS if draw(st.booleans())}
    return members, counts


@settings(max_examples=examples(300))
@given(group=groups(), name=st.sampled_from(sorted(ASSIGNORS)))
def test_every_subscribed_partition_is_assigned_once_to_a_subscriber(
    group: tuple[list[AssignorMember], dict[str, int]], name: str
) -> None:
    members, counts = group
    assigned = ASSIGNORS[name](members, counts)
    assert set(assigned) == {m.member_id for m in members}
    taken = Counter(tp for partitions in assigned.values() for tp in partitions)
    subscribed = {t for m in members for t in m.topics}
    wanted = {TopicPartition(t, p) for t in subscribed for p in range(counts.get(t, 0))}
    assert set(taken) == wanted and all(n == 1 for n in taken.values())
    by_id = {m.member_id: m for m in members}
    for member_id, partitions in assigned.items():
        assert all(tp.topic in by_id[member_id].topics for tp in partitions)
    assert ASSIGNORS[name](list(reversed(members)), counts) == assigned  # order does not matter


@settings(max_examples=examples(300))
@given(group=groups())
def test_range_splits_each_topic_in_contiguous_runs_the_first_taking_more(
    group: tuple[list[AssignorMember], dict[str, int]],
) -> None:
    members, counts = group
    assigned = assign_range(members, counts)
    order = sorted(members, key=lambda m: (0, m.instance_id) if m.instance_id else (1, m.member_id))
    for topic, count in counts.items():
        takers = [m for m in order if topic in m.topics]
        runs = [[tp.partition for tp in assigned[m.member_id] if tp.topic == topic] for m in takers]
        assert [p for run in runs for p in run] == list(range(count if takers else 0))
        sizes = [len(run) for run in runs]
        assert sizes == sorted(sizes, reverse=True) and (not sizes or sizes[0] - sizes[-1] <= 1)


def test_range_as_kafka_documents_it() -> None:
    """Kafka's RangeAssignor example: two consumers, two topics of three partitions."""
    members = [AssignorMember(c, None, frozenset({"t0", "t1"})) for c in ("C1", "C0")]
    assert assign_range(members, {"t0": 3, "t1": 3}) == {
        "C0": [
            TopicPartition("t0", 0),
            TopicPartition("t0", 1),
            TopicPartition("t1", 0),
            TopicPartition("t1", 1),
        ],
        "C1": [TopicPartition("t0", 2), TopicPartition("t1", 2)],
    }


def test_roundrobin_as_kafka_documents_it() -> None:
    """Kafka's RoundRobinAssignor example with differing subscriptions: C0 takes t0, C1 t0 and
    t1, C2 t0, t1 and t2 (t0 has 1 partition, t1 2, t2 3)."""
    members = [
        AssignorMember("C0", None, frozenset({"t0"})),
        AssignorMember("C1", None, frozenset({"t0", "t1"})),
        AssignorMember("C2", None, frozenset({"t0", "t1", "t2"})),
    ]
    tp = TopicPartition
    assert assign_roundrobin(members, {"t0": 1, "t1": 2, "t2": 3}) == {
        "C0": [tp("t0", 0)],
        "C1": [tp("t1", 0)],
        "C2": [tp("t1", 1), tp("t2", 0), tp("t2", 1), tp("t2", 2)],
    }


def test_static_members_come_first_by_instance_id() -> None:
    members = [
        AssignorMember("a", None, frozenset({"t"})),
        AssignorMember("z", "instance-1", frozenset({"t"})),
    ]
    assert assign_range(members, {"t": 3}) == {
        "z": [TopicPartition("t", 0), TopicPartition("t", 1)],
        "a": [TopicPartition("t", 2)],
    }


def test_a_missing_topic_assigns_nothing() -> None:
    members = [AssignorMember("a", None, frozenset({"gone"}))]
    for assign in ASSIGNORS.values():
        assert assign(members, {}) == {"a": []}
