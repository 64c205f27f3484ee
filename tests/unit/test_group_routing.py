"""A door's consumer in a group another agent coordinates: two agents share one store (processes
0 and 1 of one data directory), and a GroupMember on agent A in a group agent B coordinates
joins through B's Kafka listener beside a confluent-kafka consumer of the same group. They
split the topic, the group lives on B only, and offsets committed by either are where the other
starts. Manual commits and fetches on A of a group B coordinates land at B, and A describes
such a group and fetches all its offsets as a Kafka AdminClient sees them at B. On a SASL
listener there is no forwarding: the member stops naming B and the reason."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
)
from confluent_kafka import TopicPartition as KafkaPartition
from confluent_kafka.admin import AdminClient

from streamhouse.engine.coordinators import COORDINATOR_SLOTS, COORDINATOR_TOPIC, slot_of
from streamhouse.engine.group_calls import CoordinatedElsewhere
from streamhouse.engine.group_member import GroupMember, commit_offsets, committed_offsets
from streamhouse.errors import ErrorCode, NotCoordinator
from streamhouse.io.kafka_peer import StreamsGroupCalls
from streamhouse.kafka.consumer_protocol import decode_assignment
from streamhouse.log.group_state import GroupState
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import OffsetToCommit
from tests.unit.sasl_world import AgentThread
from tests.unit.test_forwarding import POLL_S, _pair, _within, running_pair
from tests.unit.test_group_member import (
    FAST,
    PARTITIONS,
    WAIT_S,
    KafkaMember,
    every_partition,
    shared,
)
from tests.unit.test_produce_fetch_services import CLIENT_TIMEOUT_S, call, engine

PLACED_TIMEOUT_S = 30  # for the coordinator slots to be placed on both agents

GROUP_IDS_TRIED_MAX = 10_000  # random group ids until one hashes to a wanted slot
RECORDS_PER_PARTITION = 6
RESPONSE_BYTES_MAX = 1024 * 1024


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AgentThread, AgentThread]]:
    with running_pair(tmp_path_factory.mktemp("pair")) as pair:
        yield pair


def group_coordinated_by(a: AgentThread, owner: AgentThread) -> str:
    """A fresh group id whose coordinator slot `owner` leads, as A's metadata store says, once
    the slots are placed on both agents."""
    slots: list[int] = []

    def placed() -> bool:
        leaders = []
        for partition in range(COORDINATOR_SLOTS):
            slot = TopicPartition(COORDINATOR_TOPIC, partition)
            hint = call(a, engine(a).admin.current_leader(slot, fresh=True))
            leaders.append(hint[0].agent_id if hint else "")
        slots[:] = [p for p, agent in enumerate(leaders) if agent == engine(owner).agent_id]
        return 0 < len(slots) < COORDINATOR_SLOTS and "" not in leaders

    _within(PLACED_TIMEOUT_S, placed, "the coordinator slots placed on both agents")
    for _ in range(GROUP_IDS_TRIED_MAX):
        group = f"routed-{uuid.uuid4().hex[:8]}"
        if slot_of(group).partition in slots:
            return group
    raise AssertionError(f"no group id of {GROUP_IDS_TRIED_MAX} hashes to slots {slots}")


def topic_with_records(a: AgentThread) -> str:
    topic = f"routed-{uuid.uuid4().hex[:8]}"
    call(a, engine(a).admin.create_topic(topic, PARTITIONS))
    producer = Producer({"bootstrap.servers": a.bootstrap, "acks": "all"})
    for partition in range(PARTITIONS):
        for index in range(RECORDS_PER_PARTITION):
            producer.produce(topic, f"{partition}-{index}".encode(), partition=partition)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0
    return topic


def member_on(a: AgentThread, group: str, topic: str) -> GroupMember:
    """A member on A's loop, subscribed to `topic`, through A's routed group calls."""

    async def subscribed() -> GroupMember:
        agent = engine(a)
        member = GroupMember(
            agent.consumers.groups, agent.admin, agent.kafka.context.clock, group, timeouts=FAST
        )
        member.subscribe([topic])
        return member

    return call(a, subscribed())


def members_at(agent: AgentThread, group: str) -> int | None:
    """How many members the agent's own coordinator holds for the group (None: no state)."""

    async def count() -> int | None:
        state = engine(agent).kafka.context.groups.group(group)
        return None if state is None else len(state.members)

    return call(agent, count())


@pytest.mark.slow  # in make test-all: make test stays under 3 minutes
def test_a_member_on_a_and_a_kafka_consumer_share_a_group_b_coordinates(
    agents: tuple[AgentThread, AgentThread],
) -> None:
    a, b = agents
    group = group_coordinated_by(a, b)
    topic = topic_with_records(a)
    ours = member_on(a, group, topic)
    kafka = KafkaMember(a.bootstrap, group, topic)
    try:
        assert call(a, ours.wait_assigned(WAIT_S * 1000))
        assert ours.assignment() == every_partition(topic)
        kafka.start()

        _within(WAIT_S, lambda: shared(ours, kafka, topic), "the two share the partitions")
        assert members_at(b, group) == 2
        assert members_at(a, group) is None  # A never held the group: B did all of it
        mine, theirs = set(ours.assignment()), set(kafka.assigned)
        _within(WAIT_S, lambda: set(kafka.first_offsets) == theirs, "kafka read its partitions")
        kafka.commit({tp: 3 for tp in theirs})
        wanted = {tp: 4 for tp in mine}
        call(a, ours.commit(wanted))
        assert call(a, ours.committed(every_partition(topic))) == {
            **wanted,
            **{tp: 3 for tp in theirs},
        }
        call(a, ours.close())
        _within(WAIT_S, lambda: kafka.assigned == every_partition(topic), "kafka takes all")
        _within(WAIT_S, lambda: set(kafka.first_offsets) >= mine, "kafka read the member's")
        assert {tp: kafka.first_offsets[tp] for tp in mine} == wanted  # the member's commits
    finally:
        call(a, ours.close())
        kafka.stop()
    _within(WAIT_S, lambda: not members_at(b, group), "both left the group")


def test_manual_commits_on_a_land_at_the_coordinator_b(
    agents: tuple[AgentThread, AgentThread],
) -> None:
    a, b = agents
    group = group_coordinated_by(a, b)
    topic = topic_with_records(a)
    local = engine(a).kafka.context.groups
    refused = call(
        a,
        local.commit_offsets(
            group, -1, "", None, {TopicPartition(topic, 0): OffsetToCommit(1, -1, None)}
        ),
    )
    assert refused == {TopicPartition(topic, 0): ErrorCode.NOT_COORDINATOR}  # A alone cannot
    routed = engine(a).consumers.groups
    wanted = {TopicPartition(topic, p): 2 + p for p in range(PARTITIONS)}
    call(a, commit_offsets(routed, group, wanted))
    assert call(a, committed_offsets(routed, group, every_partition(topic))) == wanted
    consumer = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group})
    try:
        seen = _committed_once_found(consumer, topic)
    finally:
        consumer.close()
    assert {TopicPartition(tp.topic, tp.partition): tp.offset for tp in seen} == wanted


def _committed_once_found(consumer: Consumer, topic: str) -> list[KafkaPartition]:
    """librdkafka's committed offsets of `topic`, asked again while the group's coordinator
    answers NOT_COORDINATOR (the agents just started: the offsets partitions' leases may
    still move between them as they balance), as an application would."""
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    while True:
        try:
            return consumer.committed(  # type: ignore[no-any-return]
                [KafkaPartition(topic, p) for p in range(PARTITIONS)], CLIENT_TIMEOUT_S
            )
        except KafkaException as error:
            moving = error.args[0].code() == KafkaError.NOT_COORDINATOR
            if not moving or time.monotonic() >= deadline:
                raise
            time.sleep(POLL_S)


def test_a_describes_a_group_b_coordinates_and_fetches_all_its_offsets(
    agents: tuple[AgentThread, AgentThread],
) -> None:
    a, b = agents
    group = group_coordinated_by(a, b)
    topic = topic_with_records(a)
    kafka = KafkaMember(a.bootstrap, group, topic).start()
    try:
        _within(WAIT_S, lambda: kafka.assigned == every_partition(topic), "kafka is assigned")
        kafka.commit({TopicPartition(topic, p): 1 + p for p in range(PARTITIONS)})
        with pytest.raises(NotCoordinator):  # A's own coordinator does not know the group
            call(a, engine(a).kafka.context.groups.describe(group))
        host, port = a.bootstrap.rsplit(":", 1)
        with pytest.raises(NotCoordinator):  # nor does A's Kafka door (DescribeGroups)
            call(a, StreamsGroupCalls(host, int(port), RESPONSE_BYTES_MAX).describe(group))
        routed = engine(a).consumers.groups
        ours = call(a, routed.describe(group))
        offsets = call(a, routed.fetch_offsets(group, None))
        admin = AdminClient({"bootstrap.servers": a.bootstrap})
        theirs = admin.describe_consumer_groups([group])[group].result(CLIENT_TIMEOUT_S)
        request = [ConsumerGroupTopicPartitions(group)]  # no partitions: every one
        listed = admin.list_consumer_group_offsets(request)[group].result(CLIENT_TIMEOUT_S)
    finally:
        kafka.stop()
    assert (ours.state, theirs.state.name) == (GroupState.STABLE, "STABLE")
    assert (ours.protocol_type, ours.protocol_name) == ("consumer", theirs.partition_assignor)
    assert [
        (m.member_id, m.client_id, m.client_host, m.instance_id, _assigned(m.assignment))
        for m in ours.members
    ] == [
        (
            m.member_id,
            m.client_id,
            m.host,
            m.group_instance_id,
            {TopicPartition(tp.topic, tp.partition) for tp in m.assignment.topic_partitions},
        )
        for m in theirs.members
    ]
    assert _assigned(ours.members[0].assignment) == every_partition(topic)
    assert {tp: (o.offset, o.leader_epoch, o.metadata or "") for tp, o in offsets.items()} == {
        TopicPartition(tp.topic, tp.partition): (
            tp.offset,
            -1 if tp.leader_epoch is None else tp.leader_epoch,
            tp.metadata or "",
        )
        for tp in listed.topic_partitions
    }
    assert {tp: found.offset for tp, found in offsets.items()} == {
        TopicPartition(topic, p): 1 + p for p in range(PARTITIONS)
    }


def _assigned(assignment: bytes) -> set[TopicPartition]:
    return set(decode_assignment(assignment).partitions)


def test_a_sasl_listener_refuses_group_forwarding_naming_the_coordinator(tmp_path: Path) -> None:
    a, b = _pair(tmp_path / "sasl", "SASL_PLAINTEXT")
    a.start()
    try:
        b.start()
        try:
            group = group_coordinated_by(a, b)
            topic = f"routed-{uuid.uuid4().hex[:8]}"
            call(a, engine(a).admin.create_topic(topic, PARTITIONS))
            ours = member_on(a, group, topic)
            with pytest.raises(CoordinatedElsewhere) as stopped:
                call(a, ours.wait_assigned(WAIT_S * 1000))
            assert engine(b).agent_id in str(stopped.value)
            assert "SASL_PLAINTEXT" in str(stopped.value)
            with pytest.raises(CoordinatedElsewhere):
                call(
                    a,
                    commit_offsets(
                        engine(a).consumers.groups, group, {TopicPartition(topic, 0): 1}
                    ),
                )
            call(a, ours.close())
        finally:
            b.stop()
    finally:
        a.stop()
