"""Balanced ownership with real agent processes on one PostgreSQL and one moto S3 bucket: two
agents each lead half of a topic's partitions; one stopped with SIGTERM hands its partitions
over (flushed, released) and the other produces to them well within the lease TTL; a joining
agent takes its share from a lone agent promptly; a reassignment moves a partition's lease to
the named agent (kafka-python's admin), and a group's coordinator slot too, while a
confluent-kafka consumer goes on committing; kafka-python and aiokafka producers follow
partitions handed over; every record acknowledged before is still there."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

from aiokafka import AIOKafkaProducer
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer
from kafka import TopicPartition as KafkaPartition
from kafka.admin import KafkaAdminClient

from streamhouse.config import Settings
from streamhouse.engine.coordinators import slot_of
from streamhouse.testing.agent_process import AgentProcess
from tests.e2e.conftest import start_agent, within

PARTITIONS = 6
TTL_S = Settings().lease_ttl_ms / 1000
HEARTBEAT_S = Settings().agent_heartbeat_interval_ms / 1000
OWNERSHIP_S = Settings().ownership_interval_ms / 1000
PROCESS_SLACK_S = 3.0  # Metadata round trips and process scheduling on a busy machine
HANDED_OVER_WITHIN_S = TTL_S / 2  # "well within the TTL": the leases are released, not expired
SHARE_WITHIN_S = HEARTBEAT_S + 2 * OWNERSHIP_S + PROCESS_SLACK_S  # seen, handed over, taken
REQUEST_TIMEOUT_S = 10
RECORDS_PER_PARTITION = 20


def _shared(postgres_url: str, s3_endpoint: str) -> tuple[str, ...]:
    bucket = f"ownership-{uuid.uuid4().hex[:12]}"
    return (
        "--metadata-url",
        postgres_url,
        "--object-store",
        f"s3://{bucket}/cluster",
        "--s3-endpoint",
        s3_endpoint,
    )


def _leaders(agent: AgentProcess, topic: str) -> dict[int, int]:
    """partition -> leader node id, as the agent's Metadata answers."""
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    listed = admin.list_topics(topic, timeout=REQUEST_TIMEOUT_S).topics[topic].partitions
    return {index: p.leader for index, p in listed.items()}


def _create_topic(agent: AgentProcess, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS)])
    futures[topic].result(timeout=REQUEST_TIMEOUT_S)


def _produce(agent: AgentProcess, topic: str, partitions: list[int], tag: str) -> None:
    """RECORDS_PER_PARTITION records to each partition, acks=all; fails on any error."""
    producer = Producer({"bootstrap.servers": agent.bootstrap, "acks": "all"})
    errors: list[KafkaError] = []

    def delivered(error: KafkaError | None, _: Message) -> None:
        if error is not None:
            errors.append(error)

    for partition in partitions:
        for n in range(RECORDS_PER_PARTITION):
            producer.produce(
                topic, f"{tag}-{n}".encode(), partition=partition, on_delivery=delivered
            )
    assert producer.flush(REQUEST_TIMEOUT_S * 3) == 0, "records left undelivered"
    assert not errors, errors


def _counts(agent: AgentProcess, topic: str, rounds: int = 2) -> Counter[int]:
    """How many records each partition holds, read from the start until `rounds` sends of
    RECORDS_PER_PARTITION each are there (or a timeout)."""
    consumer = Consumer(
        {"bootstrap.servers": agent.bootstrap, "group.id": f"check-{uuid.uuid4().hex[:8]}"}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    counts: Counter[int] = Counter()
    deadline = time.monotonic() + REQUEST_TIMEOUT_S * 3
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                counts[message.partition()] += 1
            if sum(counts.values()) >= rounds * PARTITIONS * RECORDS_PER_PARTITION:
                break
    finally:
        consumer.close()
    return counts


def _node_of(agent: AgentProcess, topic: str) -> int:
    """This agent's node id: the leader named for a partition it leads."""
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    brokers = admin.list_topics(topic, timeout=REQUEST_TIMEOUT_S).brokers
    return next(node for node, b in brokers.items() if b.port == agent.port)


def _agents(
    tmp_path: Path, shared: tuple[str, ...], names: tuple[str, ...]
) -> Iterator[AgentProcess]:
    for name in names:
        yield start_agent(tmp_path / name, *shared)


def _balanced(leaders: dict[int, int]) -> bool:
    loads = Counter(leaders.values())
    return len(loads) == 2 and max(loads.values()) - min(loads.values()) <= 1


def _two_agents_balanced(
    stack: ExitStack, tmp_path: Path, shared: tuple[str, ...], topic: str
) -> tuple[AgentProcess, AgentProcess]:
    """Agents a and b seeing each other, the topic created and its partitions balanced."""
    a, b = (stack.enter_context(agent) for agent in _agents(tmp_path, shared, ("a", "b")))
    within(HEARTBEAT_S + PROCESS_SLACK_S, lambda: len(_brokers_of(a)) == 2, "a sees b")
    _create_topic(a, topic)
    within(SHARE_WITHIN_S, lambda: _balanced(_leaders(a, topic)), "partitions balanced")
    return a, b


def test_sigterm_hands_every_partition_over_well_within_the_lease_ttl(
    tmp_path: Path, moto_s3_with_credentials: str, postgres_database_url: str
) -> None:
    shared = _shared(postgres_database_url, moto_s3_with_credentials)
    topic = "handover"
    with ExitStack() as stack:
        a, b = _two_agents_balanced(stack, tmp_path, shared, topic)
        b_node = _node_of(b, topic)
        on_b = sorted(p for p, leader in _leaders(a, topic).items() if leader == b_node)
        _produce(a, topic, list(range(PARTITIONS)), "before")

        signalled = time.monotonic()
        b.stop_cleanly()  # SIGTERM: flush, release every lease, deregister, exit 0
        _produce(a, topic, on_b, "after")
        handed_over_s = time.monotonic() - signalled
        print(f"SIGTERM to acks=all on all {len(on_b)} moved partitions: {handed_over_s:.2f} s")
        assert handed_over_s < HANDED_OVER_WITHIN_S
        _produce(a, topic, [p for p in range(PARTITIONS) if p not in on_b], "after")
        counts = _counts(a, topic)
        assert counts == Counter(dict.fromkeys(range(PARTITIONS), 2 * RECORDS_PER_PARTITION))
        a.stop_cleanly()


def _brokers_of(agent: AgentProcess) -> dict[int, int]:
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    return {n: b.port for n, b in admin.list_topics(timeout=REQUEST_TIMEOUT_S).brokers.items()}


def test_a_joining_agent_takes_its_share_promptly_and_loses_nothing(
    tmp_path: Path, moto_s3_with_credentials: str, postgres_database_url: str
) -> None:
    shared = _shared(postgres_database_url, moto_s3_with_credentials)
    topic = "joining"
    with start_agent(tmp_path / "a", *shared) as a:
        _create_topic(a, topic)
        a_node = _node_of(a, topic)
        within(SHARE_WITHIN_S, lambda: set(_leaders(a, topic).values()) == {a_node}, "a leads")
        _produce(a, topic, list(range(PARTITIONS)), "before")
        started = time.monotonic()
        with start_agent(tmp_path / "b", *shared) as b:
            took_s = within(
                SHARE_WITHIN_S, lambda: _balanced(_leaders(a, topic)), "b takes its share"
            )
            print(
                f"start of b to its share of {PARTITIONS // 2}: "
                f"{time.monotonic() - started:.2f} s (balanced {took_s:.2f} s after b listened)"
            )
            _produce(b, topic, list(range(PARTITIONS)), "after")
            counts = _counts(b, topic)
            assert counts == Counter(dict.fromkeys(range(PARTITIONS), 2 * RECORDS_PER_PARTITION))
            b.stop_cleanly()
        a.stop_cleanly()


def test_a_reassignment_moves_the_lease_to_the_named_agent(
    tmp_path: Path, moto_s3_with_credentials: str, postgres_database_url: str
) -> None:
    shared = _shared(postgres_database_url, moto_s3_with_credentials)
    topic = "reassigned"
    with ExitStack() as stack:
        a, b = _two_agents_balanced(stack, tmp_path, shared, topic)
        b_node = _node_of(b, topic)
        moved = next(p for p, leader in _leaders(a, topic).items() if leader != b_node)
        _produce(a, topic, list(range(PARTITIONS)), "before")
        admin = KafkaAdminClient(bootstrap_servers=a.bootstrap)
        try:
            asked = time.monotonic()
            wanted = {KafkaPartition(topic, moved): [b_node]}
            assert admin.alter_partition_reassignments(wanted) == {
                KafkaPartition(topic, moved): None
            }
            listed = within(  # Metadata names b as soon as a released it, then b takes it
                SHARE_WITHIN_S, lambda: _leaders(a, topic)[moved] == b_node, "b named"
            )
            took_s = within(
                SHARE_WITHIN_S,
                lambda: admin.list_partition_reassignments() == {},
                "the lease taken (no move in progress)",
            )
            print(
                f"AlterPartitionReassignments: b named leader in {listed:.2f} s, "
                f"its lease taken {took_s:.2f} s later "
                f"({time.monotonic() - asked:.2f} s from the request)"
            )
        finally:
            admin.close()
        _produce(a, topic, list(range(PARTITIONS)), "after")
        within(  # the pin holds: the balancer does not move it back (b leads one more)
            SHARE_WITHIN_S, lambda: Counter(_leaders(a, topic).values())[b_node] >= 3, "kept"
        )
        assert _leaders(a, topic)[moved] == b_node
        counts = _counts(a, topic)
        assert counts == Counter(dict.fromkeys(range(PARTITIONS), 2 * RECORDS_PER_PARTITION))
        b.stop_cleanly()
        a.stop_cleanly()


def _slot_holder(agent: AgentProcess, group: str) -> int:
    """The node leading the group's coordinator slot, as Metadata names it."""
    slot = slot_of(group)
    return _leaders(agent, slot.topic)[slot.partition]


def _consume_and_commit(consumer: Consumer, count: int) -> int:
    """Read `count` records, committing synchronously after each; the last offset + 1."""
    read = 0
    position = -1
    deadline = time.monotonic() + REQUEST_TIMEOUT_S * 3
    while read < count:
        assert time.monotonic() < deadline, f"read {read} of {count}"
        message = consumer.poll(0.5)
        if message is None or message.error() is not None:
            continue
        read += 1
        position = message.offset() + 1
        consumer.commit(message=message, asynchronous=False)  # raises KafkaException on error
    return position


def test_group_commits_go_on_across_a_coordinator_move(
    tmp_path: Path, moto_s3_with_credentials: str, postgres_database_url: str
) -> None:
    shared = _shared(postgres_database_url, moto_s3_with_credentials)
    topic, group = "moving-coordinator", "billing"
    with ExitStack() as stack:
        a, b = (stack.enter_context(agent) for agent in _agents(tmp_path, shared, ("a", "b")))
        within(HEARTBEAT_S + PROCESS_SLACK_S, lambda: len(_brokers_of(a)) == 2, "a sees b")
        _create_topic(a, topic)
        _produce(a, topic, [0], "before")
        _produce(a, topic, [0], "after")
        slot = slot_of(group)
        within(SHARE_WITHIN_S, lambda: _slot_holder(a, group) >= 0, "the slot is taken")
        holder = _slot_holder(a, group)
        other = next(node for node in _brokers_of(a) if node != holder)
        consumer = Consumer(
            {
                "bootstrap.servers": a.bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        try:
            consumer.assign([TopicPartition(topic, 0, 0)])
            half = _consume_and_commit(consumer, RECORDS_PER_PARTITION)
            admin = KafkaAdminClient(bootstrap_servers=a.bootstrap)
            try:
                moved = admin.alter_partition_reassignments(
                    {KafkaPartition(slot.topic, slot.partition): [other]}
                )
                assert moved == {KafkaPartition(slot.topic, slot.partition): None}
                took_s = within(
                    SHARE_WITHIN_S,
                    lambda: admin.list_partition_reassignments() == {},
                    "the coordinator slot's lease moved",
                )
            finally:
                admin.close()
            print(f"coordinator slot's lease moved in {took_s:.2f} s")
            assert _slot_holder(a, group) == other
            end = _consume_and_commit(consumer, RECORDS_PER_PARTITION)  # commits go on
            (committed,) = consumer.committed([TopicPartition(topic, 0)], timeout=REQUEST_TIMEOUT_S)
        finally:
            consumer.close()
        assert half == RECORDS_PER_PARTITION
        assert end == committed.offset == 2 * RECORDS_PER_PARTITION
        b.stop_cleanly()
        a.stop_cleanly()


async def _aiokafka_sends(agent: AgentProcess, topic: str, tag: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=agent.bootstrap, acks="all")
    await producer.start()
    try:
        sent = [
            await producer.send(topic, f"{tag}-{n}".encode(), partition=p)
            for p in range(PARTITIONS)
            for n in range(RECORDS_PER_PARTITION)
        ]
        await asyncio.wait_for(asyncio.gather(*sent), REQUEST_TIMEOUT_S * 3)
    finally:
        await producer.stop()


def _kafka_python_sends(producer: KafkaProducer, topic: str, tag: str) -> None:
    sent = [
        producer.send(topic, f"{tag}-{n}".encode(), partition=p)
        for p in range(PARTITIONS)
        for n in range(RECORDS_PER_PARTITION)
    ]
    for future in sent:
        future.get(timeout=REQUEST_TIMEOUT_S * 3)


def test_aiokafka_and_kafka_python_follow_partitions_handed_over(
    tmp_path: Path, moto_s3_with_credentials: str, postgres_database_url: str
) -> None:
    shared = _shared(postgres_database_url, moto_s3_with_credentials)
    topic = "followed"
    with ExitStack() as stack:
        a, b = _two_agents_balanced(stack, tmp_path, shared, topic)
        producer = KafkaProducer(bootstrap_servers=a.bootstrap, acks="all", retries=10)
        try:
            _kafka_python_sends(producer, topic, "before")  # metadata cached: half led by b
            b.stop_cleanly()  # its partitions move to a
            _kafka_python_sends(producer, topic, "after")  # NOT_LEADER / refused: refresh
        finally:
            producer.close()
        asyncio.run(_aiokafka_sends(a, topic, "aiokafka"))
        counts = _counts(a, topic, rounds=3)
        assert counts == Counter(dict.fromkeys(range(PARTITIONS), 3 * RECORDS_PER_PARTITION))
        a.stop_cleanly()
