"""Door-held consumer instances on a real in-process agent: records a confluent-kafka producer
wrote read back byte-exact with their offsets; positions from committed offsets or
auto.offset.reset; seeks; commits; mutually exclusive subscribe and assign; limits; an idle
instance expires, leaves its group and is gone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from streamhouse.agent import Agent, open_agent
from streamhouse.engine.consume import ConsumedRecord
from streamhouse.engine.consumer_instances import (
    ConsumerInstance,
    ConsumerInstanceExists,
    ConsumerInstanceNotFound,
    ConsumerInstances,
    ConsumerStateConflict,
    InstanceConfig,
    OffsetReset,
    TooManyConsumerInstances,
)
from streamhouse.engine.failure import AgentFailure
from streamhouse.errors import ErrorCode
from streamhouse.io.system_rng import SystemRng
from streamhouse.names import TopicPartition
from tests.unit.sasl_world import agent_settings
from tests.unit.test_group_member import FAST, WAIT_S, unique

READ_WAIT_MS = 200
READS_MAX = 100
EARLIEST = InstanceConfig(auto_offset_reset=OffsetReset.EARLIEST, auto_commit_enable=False)

Sent = tuple[int, int, bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...]]


async def new_partition(agent: Agent, prefix: str) -> TopicPartition:
    """The one partition of a new topic."""
    topic = unique(prefix)
    await agent.admin.create_topic(topic, 1)
    return TopicPartition(topic, 0)


def run(
    tmp_path: Path,
    scenario: Callable[[Agent, ConsumerInstances], Awaitable[None]],
    **options: Any,
) -> None:
    """Run `scenario` against an agent of the test's loop and a registry over its services."""

    async def main() -> None:
        agent = await open_agent(agent_settings(tmp_path, "PLAINTEXT"))
        context = agent.kafka.context
        instances = ConsumerInstances(
            agent.consumers.groups,
            agent.admin,
            agent.fetch,
            context.clock,
            SystemRng(),
            member_timeouts=FAST,
            **options,
        )
        instances.start(AgentFailure())
        try:
            await scenario(agent, instances)
        finally:
            await instances.close()
            await agent.close()

    asyncio.run(main())


async def produce(
    agent: Agent,
    topic: str,
    records: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes]]]],
) -> list[Sent]:
    """Produce with confluent-kafka; what each record was stored as, from delivery reports."""

    def send() -> list[Sent]:
        delivered: list[Sent] = []
        producer = Producer({"bootstrap.servers": f"127.0.0.1:{agent.kafka_port}", "linger.ms": 5})

        def reporter(
            key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
        ) -> Any:
            def report(error: Any, message: Any) -> None:  # headers are not in the report
                assert error is None, error
                stored = (message.partition(), message.offset(), key, value, tuple(headers))
                delivered.append(stored)

            return report

        for partition, key, value, headers in records:
            producer.produce(
                topic,
                value,
                key,
                partition=partition,
                headers=headers or None,
                on_delivery=reporter(key, value, headers),
            )
        assert producer.flush(WAIT_S) == 0
        return delivered

    return await asyncio.to_thread(send)


def seen(topic: str, read: list[tuple[str, ConsumedRecord]]) -> list[Sent]:
    assert all(name == topic for name, _ in read)
    return [(r.partition, r.offset, r.key, r.value, r.headers) for _, r in read]


async def read_until(instance: ConsumerInstance, count: int) -> list[tuple[str, ConsumedRecord]]:
    """Records until `count` are read (bounded in reads and time)."""
    found: list[tuple[str, ConsumedRecord]] = []
    deadline = time.monotonic() + WAIT_S
    for _ in range(READS_MAX):
        if len(found) >= count or time.monotonic() > deadline:
            break
        found += await instance.records(READ_WAIT_MS)
    return found


def test_records_read_back_byte_exact(tmp_path: Path) -> None:
    async def scenario(agent: Agent, instances: ConsumerInstances) -> None:
        topic = unique("exact")
        await agent.admin.create_topic(topic, 2)
        sent = await produce(
            agent,
            topic,
            [
                (0, b"k1", b"v1", [("h", b"x"), ("e", b"")]),
                (1, None, b"\x00\xff binary", []),
                (0, b"k3", None, [("h2", b"y")]),
                (1, b"", b"", []),
                (0, b"k5", b"v" * 3000, []),
            ],
        )
        instance = instances.create(unique("group"), config=EARLIEST)
        await instance.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        read = await read_until(instance, len(sent))
        assert sorted(seen(topic, read)) == sorted(sent)
        assert instance.positions() == {TopicPartition(topic, 0): 3, TopicPartition(topic, 1): 2}
        assert await instance.records(0) == []  # nothing more

    run(tmp_path, scenario)


def test_positions_start_from_commits_and_seeks_move_them(tmp_path: Path) -> None:
    async def scenario(agent: Agent, instances: ConsumerInstances) -> None:
        tp = await new_partition(agent, "seek")
        topic = tp.topic
        await produce(agent, topic, [(0, None, f"v{i}".encode(), []) for i in range(6)])
        group = unique("group")
        first = instances.create(group, "first", EARLIEST)
        await first.assign([tp])
        assert len(await read_until(first, 6)) == 6
        await first.commit({tp: 4})
        assert await first.committed([tp]) == {tp: 4}
        await instances.delete(group, "first")
        with pytest.raises(ConsumerInstanceNotFound):
            instances.get(group, "first")
        with pytest.raises(ConsumerInstanceNotFound):
            await first.records(0)

        second = instances.create(group, "second", EARLIEST)
        await second.assign([tp])
        assert [r.offset for _, r in await read_until(second, 2)] == [4, 5]  # from the commit
        await second.seek(tp, 1)
        assert [r.value for _, r in await read_until(second, 5)] == [
            b"v1",
            b"v2",
            b"v3",
            b"v4",
            b"v5",
        ]
        await second.seek_to_beginning([tp])
        assert second.positions() == {tp: 0}
        await second.seek_to_end([tp])
        assert second.positions() == {tp: 6} and await second.records(0) == []
        await second.seek(tp, 1_000)  # out of range: reset by the policy (earliest)
        assert await second.records(0) == [] and second.positions() == {tp: 0}
        assert [r.offset for _, r in await read_until(second, 6)] == list(range(6))
        await second.commit()  # everything consumed
        assert await second.committed([tp]) == {tp: 6}
        with pytest.raises(ConsumerStateConflict):
            await second.seek(TopicPartition(topic, 7), 0)
        with pytest.raises(ConsumerStateConflict):
            await second.subscribe([topic])  # assigned: subscribing is refused

    run(tmp_path, scenario)


def test_latest_reads_only_what_comes_after(tmp_path: Path) -> None:
    async def scenario(agent: Agent, instances: ConsumerInstances) -> None:
        tp = await new_partition(agent, "latest")
        topic = tp.topic
        await produce(agent, topic, [(0, None, b"old", [])])
        instance = instances.create(unique("group"))  # defaults: latest
        await instance.assign([tp])
        assert await instance.records(0) == [] and instance.positions() == {tp: 1}
        waiting = asyncio.ensure_future(instance.records(WAIT_S * 1000))  # waits for data
        await produce(agent, topic, [(0, None, b"new", [])])
        read = await waiting
        assert [(r.offset, r.value) for _, r in read] == [(1, b"new")]

    run(tmp_path, scenario)


def test_subscribed_instances_share_the_group_and_auto_commit(tmp_path: Path) -> None:
    async def scenario(agent: Agent, instances: ConsumerInstances) -> None:
        topic = unique("shared")
        await agent.admin.create_topic(topic, 2)
        await produce(agent, topic, [(p, None, b"x", []) for p in (0, 1) for _ in range(3)])
        group = unique("group")
        config = InstanceConfig(auto_offset_reset=OffsetReset.EARLIEST, auto_commit_enable=True)
        one, two = instances.create(group, "one", config), instances.create(group, "two", config)
        await one.subscribe([topic])
        await two.subscribe([topic])
        assert one.subscription() == {topic}
        deadline = time.monotonic() + WAIT_S
        while not (len(one.assignments()) == 1 and len(two.assignments()) == 1):
            assert time.monotonic() < deadline, "the two instances never split the topic"
            await asyncio.sleep(0.1)
        assert one.assignments() | two.assignments() == {
            TopicPartition(topic, 0),
            TopicPartition(topic, 1),
        }
        (mine,) = one.assignments()
        (other,) = two.assignments()
        assert len(await read_until(one, 3)) == 3
        await instances.delete(group, "one")  # auto commit as it leaves
        assert await two.committed([mine]) == {mine: 3}
        deadline = time.monotonic() + WAIT_S
        while len(two.assignments()) != 2:  # the partition it left comes to the other
            assert time.monotonic() < deadline, "the remaining instance never got both"
            await asyncio.sleep(0.1)
        rest = await read_until(two, 3)  # its own from the start; the other's from the commit
        assert sorted((r.partition, r.offset) for _, r in rest) == [
            (other.partition, offset) for offset in range(3)
        ]
        assert await two.records(0) == []
        with pytest.raises(ConsumerStateConflict):
            await two.assign([mine])  # subscribed: assigning is refused
        await two.unsubscribe()
        assert two.assignments() == frozenset()

    run(tmp_path, scenario)


def test_an_idle_instance_expires_and_leaves_its_group(tmp_path: Path) -> None:
    async def scenario(agent: Agent, instances: ConsumerInstances) -> None:
        topic = unique("idle")
        await agent.admin.create_topic(topic, 1)
        group = unique("group")
        instance = instances.create(group, "sleepy", EARLIEST)
        await instance.subscribe([topic])
        deadline = time.monotonic() + WAIT_S
        while not instance.assignments():
            assert time.monotonic() < deadline, "never assigned"
            await asyncio.sleep(0.05)
        coordinator = agent.kafka.context.groups
        while len(instances):
            assert time.monotonic() < deadline, "the idle instance never expired"
            await asyncio.sleep(0.05)
        with pytest.raises(ConsumerInstanceNotFound):
            instances.get(group, "sleepy")
        with pytest.raises(ConsumerInstanceNotFound) as gone:
            await instance.records(0)
        assert gone.value.code is ErrorCode.RESOURCE_NOT_FOUND
        state = coordinator.group(group)
        assert state is None or not state.members  # it left the group

    run(tmp_path, scenario, instance_idle_ms=300)


def test_names_are_unique_per_group_and_bounded(tmp_path: Path) -> None:
    async def scenario(agent: Agent, instances: ConsumerInstances) -> None:
        named = instances.create("g1", "same")
        assert instances.create("g2", "same") is not named  # scoped by group
        with pytest.raises(ConsumerInstanceExists):
            instances.create("g1", "same")
        generated = instances.create("g1")
        assert generated.name.startswith("rest-consumer-")
        with pytest.raises(TooManyConsumerInstances):
            instances.create("g1", "one-too-many")
        await instances.delete("g1", "same")
        instances.create("g1", "same")  # the name is free again

    run(tmp_path, scenario, instances_max=3)


def test_config_uses_confluent_names() -> None:
    config = InstanceConfig.parse(
        {
            "auto.offset.reset": "earliest",
            "auto.commit.enable": "false",
            "fetch.min.bytes": 10,
            "consumer.request.timeout.ms": 250,
            "isolation.level": None,
        }
    )
    assert config == InstanceConfig(OffsetReset.EARLIEST, False, 10, 250, False)
    assert InstanceConfig.parse({}) == InstanceConfig()
    assert InstanceConfig().auto_offset_reset is OffsetReset.LATEST
    for bad in (
        {"auto.offset.reset": "smallest"},
        {"auto.commit.enable": "yes"},
        {"fetch.min.bytes": "x"},
    ):
        with pytest.raises(ConsumerStateConflict) as refused:
            InstanceConfig.parse(bad)
        assert refused.value.code is ErrorCode.INVALID_CONFIG


def test_max_bytes_cuts_a_read_and_every_partition_gets_its_turn(tmp_path: Path) -> None:
    async def scenario(agent: Agent, instances: ConsumerInstances) -> None:
        topic = unique("budget")
        await agent.admin.create_topic(topic, 2)
        sent = await produce(
            agent, topic, [(p, None, bytes([i]) * 100, []) for p in (0, 1) for i in range(5)]
        )
        instance = instances.create(unique("group"), config=EARLIEST)
        await instance.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        read: list[tuple[str, ConsumedRecord]] = []
        partitions_first: list[int] = []
        for _ in range(READS_MAX):
            answered = await instance.records(0, max_bytes=250)
            assert 1 <= len(answered) <= 2 or (not answered and len(read) == len(sent))
            if not answered:
                break
            partitions_first.append(answered[0][1].partition)
            read += answered
        assert sorted(seen(topic, read)) == sorted(sent)  # each once, nothing skipped
        # neither partition waits for the other to be read to its end
        assert partitions_first[0] != partitions_first[1]

    run(tmp_path, scenario)
