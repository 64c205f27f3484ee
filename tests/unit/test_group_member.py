"""A GroupMember shares a consumer group with a real Kafka consumer (confluent-kafka) on a real
in-process agent: their assignments are disjoint and cover the topic whichever of them leads,
the member takes everything once the consumer leaves, and offsets committed by either are
where the other starts."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaPartition

from streamhouse.agent import Agent, open_agent
from streamhouse.engine.group_calls import LocalGroupCalls
from streamhouse.engine.group_member import (
    GroupMember,
    MemberTimeouts,
    commit_offsets,
    committed_offsets,
)
from streamhouse.engine.groups import GroupCoordinator
from streamhouse.errors import ErrorCode, StreamHouseError
from streamhouse.kafka.consumer_protocol import decode_subscription
from streamhouse.log.group_state import JoinRequest, JoinResponse
from streamhouse.names import TopicPartition
from tests.unit.sasl_world import agent_settings

PARTITIONS = 4
WAIT_S = 30
POLL_S = 0.2
FAST = MemberTimeouts(
    session_timeout_ms=6_000, rebalance_timeout_ms=10_000, heartbeat_interval_ms=200
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class KafkaMember:
    """A confluent-kafka consumer subscribed in a thread of its own, polling until stopped;
    `assigned` is its current assignment, `first_offsets` the first offset it read per
    partition."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.assigned: set[TopicPartition] = set()
        self.first_offsets: dict[TopicPartition, int] = {}
        self._stop = threading.Event()
        self._closed = False
        self._commits: queue.Queue[tuple[dict[TopicPartition, int], threading.Event]] = (
            queue.Queue()
        )
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 200,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "partition.assignment.strategy": "range,roundrobin",
            }
        )
        self._topic = topic
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def start(self) -> KafkaMember:
        self._consumer.subscribe(
            [self._topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        self._thread.start()
        return self

    def _on_assign(self, _: Any, partitions: list[KafkaPartition]) -> None:
        self.assigned = {TopicPartition(p.topic, p.partition) for p in partitions}

    def _on_revoke(self, _: Any, partitions: list[KafkaPartition]) -> None:
        self.assigned = set()

    def _poll(self) -> None:
        deadline = time.monotonic() + 4 * WAIT_S
        while not self._stop.is_set() and time.monotonic() < deadline:
            self._commit_queued()
            message = self._consumer.poll(POLL_S)
            if message is not None and message.error() is None:
                tp = TopicPartition(message.topic(), message.partition())
                self.first_offsets.setdefault(tp, message.offset())

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit on the polling thread (a synchronous commit waits for an answer that a poll
        on another thread would take) and wait until it is done."""
        done = threading.Event()
        self._commits.put((offsets, done))
        assert done.wait(WAIT_S), "the commit did not finish"

    def _commit_queued(self) -> None:
        while not self._commits.empty():
            offsets, done = self._commits.get()
            wanted = [KafkaPartition(tp.topic, tp.partition, at) for tp, at in offsets.items()]
            self._consumer.commit(offsets=wanted, asynchronous=False)
            done.set()

    def stop(self) -> None:
        """Stop polling and close the consumer (it leaves the group); again: nothing."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(WAIT_S)
        self._consumer.close()


def run(tmp_path: Path, scenario: Callable[[Agent], Awaitable[None]]) -> None:
    """Run `scenario` against an agent of the test's own loop (blocking clients run in
    threads, so the agent keeps serving them)."""

    async def main() -> None:
        agent = await open_agent(agent_settings(tmp_path, "PLAINTEXT"))
        try:
            await scenario(agent)
        finally:
            await agent.close()

    asyncio.run(main())


def member(agent: Agent, group: str) -> GroupMember:
    context = agent.kafka.context
    return GroupMember(agent.consumers.groups, agent.admin, context.clock, group, timeouts=FAST)


def bootstrap(agent: Agent) -> str:
    return f"127.0.0.1:{agent.kafka_port}"


async def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(POLL_S)


async def topic_with_records(agent: Agent, records_per_partition: int = 0) -> str:
    topic = unique("shared")
    await agent.admin.create_topic(topic, PARTITIONS)
    if records_per_partition:

        def produce() -> None:
            producer = Producer({"bootstrap.servers": bootstrap(agent)})
            for partition in range(PARTITIONS):
                for index in range(records_per_partition):
                    producer.produce(topic, f"{partition}-{index}".encode(), partition=partition)
            assert producer.flush(WAIT_S) == 0

        await asyncio.to_thread(produce)
    return topic


def every_partition(topic: str) -> set[TopicPartition]:
    return {TopicPartition(topic, p) for p in range(PARTITIONS)}


def shared(ours: GroupMember, kafka: KafkaMember, topic: str) -> bool:
    """Whether the member and the Kafka consumer hold disjoint parts of the whole topic."""
    mine, theirs = set(ours.assignment()), kafka.assigned
    return (
        bool(mine)
        and bool(theirs)
        and not mine & theirs
        and mine | theirs == every_partition(topic)
    )


@pytest.mark.parametrize("member_first", [True, False], ids=["member-leads", "kafka-leads"])
def test_member_and_kafka_consumer_split_the_topic(tmp_path: Path, member_first: bool) -> None:
    run(tmp_path, lambda agent: split_the_topic(agent, member_first))


async def split_the_topic(agent: Agent, member_first: bool) -> None:
    topic = await topic_with_records(agent)
    group = unique("group")
    ours = member(agent, group)
    kafka = KafkaMember(bootstrap(agent), group, topic)
    try:
        if member_first:
            ours.subscribe([topic])
            assert await ours.wait_assigned(WAIT_S * 1000)
            assert ours.assignment() == every_partition(topic)
            kafka.start()
        else:
            kafka.start()
            await eventually(lambda: kafka.assigned == every_partition(topic), "kafka has all")
            ours.subscribe([topic])

        await eventually(lambda: shared(ours, kafka, topic), "the two share the partitions")
        state = agent.kafka.context.groups.group(group)
        assert state is not None and (state.leader == ours.member_id) == member_first
        for metadata in agent.kafka.context.groups.subscriptions(group):  # librdkafka's bytes too
            assert decode_subscription(metadata).topics == (topic,)
        await asyncio.to_thread(kafka.stop)
        await eventually(lambda: ours.assignment() == every_partition(topic), "the member has all")
    finally:
        await ours.close()
        await asyncio.to_thread(kafka.stop)
    left = agent.kafka.context.groups.group(group)
    assert left is None or not left.members  # the member left on close


def test_member_commits_are_where_a_kafka_consumer_starts(tmp_path: Path) -> None:
    run(tmp_path, member_commits_are_where_a_kafka_consumer_starts)


async def member_commits_are_where_a_kafka_consumer_starts(agent: Agent) -> None:
    topic = await topic_with_records(agent, records_per_partition=6)
    group = unique("group")
    ours = member(agent, group)
    ours.subscribe([topic])
    assert await ours.wait_assigned(WAIT_S * 1000)
    wanted = {TopicPartition(topic, p): p + 1 for p in range(PARTITIONS)}
    await ours.commit(wanted)
    assert await ours.committed(every_partition(topic)) == wanted
    await ours.close()
    kafka = KafkaMember(bootstrap(agent), group, topic).start()
    try:
        await eventually(
            lambda: len(kafka.first_offsets) == PARTITIONS, "kafka read every partition"
        )
        assert kafka.first_offsets == wanted
    finally:
        await asyncio.to_thread(kafka.stop)


def test_kafka_consumer_commits_are_where_a_member_starts(tmp_path: Path) -> None:
    run(tmp_path, kafka_consumer_commits_are_where_a_member_starts)


async def kafka_consumer_commits_are_where_a_member_starts(agent: Agent) -> None:
    topic = await topic_with_records(agent, records_per_partition=6)
    group = unique("group")
    kafka = KafkaMember(bootstrap(agent), group, topic).start()
    wanted = {TopicPartition(topic, p): 5 - p for p in range(PARTITIONS)}
    try:
        await eventually(lambda: kafka.assigned == every_partition(topic), "kafka has all")
        await asyncio.to_thread(kafka.commit, wanted)
    finally:
        await asyncio.to_thread(kafka.stop)
    ours = member(agent, group)
    try:
        ours.subscribe([topic])
        assert await ours.wait_assigned(WAIT_S * 1000)
        assert await ours.committed(ours.assignment()) == wanted
    finally:
        await ours.close()


def test_a_commit_of_an_old_generation_is_fenced(tmp_path: Path) -> None:
    run(tmp_path, a_commit_of_an_old_generation_is_fenced)


async def a_commit_of_an_old_generation_is_fenced(agent: Agent) -> None:
    topic = await topic_with_records(agent)
    group = unique("group")
    coordinator = agent.consumers.groups
    first, second = member(agent, group), member(agent, group)
    try:
        first.subscribe([topic])
        assert await first.wait_assigned(WAIT_S * 1000)
        old_generation = first.generation
        second.subscribe([topic])
        await eventually(
            lambda: (
                len(first.assignment() | second.assignment()) == PARTITIONS
                and first.generation > old_generation
                and bool(second.assignment())
            ),
            "both members are assigned",
        )
        with pytest.raises(StreamHouseError) as fenced:
            await commit_offsets(
                coordinator, group, {TopicPartition(topic, 0): 1}, old_generation, first.member_id
            )
        assert fenced.value.code is ErrorCode.ILLEGAL_GENERATION
        with pytest.raises(StreamHouseError) as refused:  # a manual commit while members exist
            await commit_offsets(coordinator, group, {TopicPartition(topic, 0): 1})
        assert refused.value.code is ErrorCode.UNKNOWN_MEMBER_ID
    finally:
        await first.close()
        await second.close()
    # with no members left, the simple consumer's commit (generation -1, no member) passes
    await commit_offsets(coordinator, group, {TopicPartition(topic, 2): 3})
    assert await committed_offsets(coordinator, group, [TopicPartition(topic, 2)]) == {
        TopicPartition(topic, 2): 3
    }


def test_a_closed_member_refuses_calls(tmp_path: Path) -> None:
    run(tmp_path, a_closed_member_refuses_calls)


async def a_closed_member_refuses_calls(agent: Agent) -> None:
    topic = await topic_with_records(agent)
    ours = member(agent, unique("group"))
    ours.subscribe([topic])
    assert await ours.wait_assigned(WAIT_S * 1000)
    await ours.close()
    with pytest.raises(StreamHouseError) as closed:
        await ours.commit({TopicPartition(topic, 0): 1})
    assert closed.value.code is ErrorCode.UNKNOWN_MEMBER_ID


def test_member_and_aiokafka_consumer_split_the_topic_by_roundrobin(tmp_path: Path) -> None:
    run(tmp_path, split_with_aiokafka)


async def split_with_aiokafka(agent: Agent) -> None:
    """aiokafka offers only "roundrobin" and leads (it joins first): the member reads the
    assignment an aiokafka leader writes, and the group uses the one protocol both offer."""
    topic = await topic_with_records(agent)
    group = unique("group")
    kafka = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap(agent),
        group_id=group,
        session_timeout_ms=6000,
        heartbeat_interval_ms=200,
        enable_auto_commit=False,
    )
    await kafka.start()
    ours = member(agent, group)
    try:
        await eventually(lambda: len(kafka.assignment()) == PARTITIONS, "aiokafka has all")
        ours.subscribe([topic])

        def theirs() -> set[TopicPartition]:
            return {TopicPartition(tp.topic, tp.partition) for tp in kafka.assignment()}

        await eventually(
            lambda: (
                len(ours.assignment()) == len(theirs()) == PARTITIONS // 2
                and set(ours.assignment()) | theirs() == every_partition(topic)
            ),
            "the two share the partitions",
        )
        state = agent.kafka.context.groups.group(group)
        assert state is not None and state.protocol_name == "roundrobin"
        assert state.leader != ours.member_id
        await kafka.stop()
        await eventually(lambda: ours.assignment() == every_partition(topic), "the member has all")
    finally:
        await ours.close()
        await kafka.stop()


def test_a_new_subscription_rejoins_with_it(tmp_path: Path) -> None:
    run(tmp_path, resubscribe)


async def resubscribe(agent: Agent) -> None:
    first, second = await topic_with_records(agent), await topic_with_records(agent)
    ours = member(agent, unique("group"))
    try:
        ours.subscribe([first])
        assert await ours.wait_assigned(WAIT_S * 1000)
        assert ours.assignment() == every_partition(first)
        ours.subscribe([first, second])
        await eventually(
            lambda: ours.assignment() == every_partition(first) | every_partition(second),
            "the member has both topics",
        )
        assert ours.subscription() == {first, second}
    finally:
        await ours.close()


class FirstJoinAnswerHeld(LocalGroupCalls):
    """The agent's own coordinator, but the answer to a member's first JoinGroup (the member
    id the coordinator assigns) is held on its way back until released: a member closed in
    that moment has joined as far as the coordinator knows."""

    def __init__(self, coordinator: GroupCoordinator) -> None:
        super().__init__(coordinator)
        self.answered = asyncio.Event()
        self.release = asyncio.Event()

    async def join(self, group_id: str, request: JoinRequest) -> JoinResponse:
        answer = await super().join(group_id, request)
        if not request.member_id and not self.answered.is_set():
            self.answered.set()
            await self.release.wait()
        return answer


def test_a_member_closed_while_its_id_is_on_the_way_leaves_the_group(tmp_path: Path) -> None:
    run(tmp_path, closed_while_its_id_is_on_the_way)


async def closed_while_its_id_is_on_the_way(agent: Agent) -> None:
    """Its pending member would hold the group's next rebalance until its session expired."""
    topic = await topic_with_records(agent)
    group = unique("group")
    held = FirstJoinAnswerHeld(agent.kafka.context.groups)
    clock = agent.kafka.context.clock
    first = GroupMember(held, agent.admin, clock, group, timeouts=FAST)
    first.subscribe([topic])
    await asyncio.wait_for(held.answered.wait(), WAIT_S)
    closing = asyncio.ensure_future(first.close())
    await asyncio.sleep(POLL_S)
    held.release.set()
    await asyncio.wait_for(closing, WAIT_S)
    second = member(agent, group)
    second.subscribe([topic])
    # well inside the session timeout a left-behind pending member would hold the rebalance for
    assert await second.wait_assigned(FAST.session_timeout_ms // 2)
    assert second.assignment() == every_partition(topic)
    await second.close()
