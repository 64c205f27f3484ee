"""Consumer groups with each client library: subscribe, consume, commit, close, resume.

confluent-kafka, aiokafka and kafka-python each consume half a topic in a group,
commit, close cleanly; a new member of the group resumes at the committed offset.
With confluent-kafka: a static member (`group.instance.id`) that restarts takes its
old place without a rebalance of the other member, and the cooperative-sticky
assignor splits and hands back partitions.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer

from tests.e2e.conftest import Agent, start_agent

RECORDS = 20
HALF = RECORDS // 2
WAIT_S = 40
POLL_S = 0.2
FAST_GROUPS = ("--group-initial-rebalance-delay-ms", "0", "--group-min-session-timeout-ms", "1000")


def _topic(bootstrap: str, name: str, partitions: int, records: int = RECORDS) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions)]).values():
        future.result(timeout=WAIT_S)
    producer = Producer({"bootstrap.servers": bootstrap})
    for index in range(records):
        producer.produce(name, value=b"%d" % index, partition=index % partitions)
    assert producer.flush(WAIT_S) == 0


def _confluent(bootstrap: str, group: str, **extra: Any) -> Consumer:
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 300,
        **extra,
    }
    return Consumer(config)


def _poll_values(consumer: Consumer, count: int) -> list[int]:
    found: list[int] = []
    deadline = time.monotonic() + WAIT_S
    while len(found) < count and time.monotonic() < deadline:
        message = consumer.poll(POLL_S)
        if message is not None and message.error() is None:
            found.append(int(message.value()))
    assert len(found) == count, f"only {found} within {WAIT_S} s"
    return found


def test_confluent_commits_and_resumes(group_agent: Agent) -> None:
    _topic(group_agent.bootstrap, "cg-confluent", 1)
    first = _confluent(group_agent.bootstrap, "g-confluent")
    first.subscribe(["cg-confluent"])
    assert _poll_values(first, HALF) == list(range(HALF))
    first.commit(asynchronous=False)
    first.close()
    second = _confluent(group_agent.bootstrap, "g-confluent")
    second.subscribe(["cg-confluent"])
    assert _poll_values(second, HALF) == list(range(HALF, RECORDS))
    second.close()


def test_committed_offsets_survive_a_restart(tmp_path: Path) -> None:
    running = start_agent(tmp_path / "data", *FAST_GROUPS)
    _topic(running.bootstrap, "cg-restart", 2)
    first = _confluent(running.bootstrap, "g-restart")
    first.subscribe(["cg-restart"])
    seen = _poll_values(first, HALF)
    first.commit(asynchronous=False)
    first.close()
    assert running.stop() == 0
    again = start_agent(tmp_path / "data", *FAST_GROUPS)
    try:
        second = _confluent(again.bootstrap, "g-restart")
        second.subscribe(["cg-restart"])
        rest = _poll_values(second, RECORDS - HALF)
        second.close()
    finally:
        assert again.stop() == 0
    assert sorted(seen + rest) == list(range(RECORDS))


def test_kafka_python_commits_and_resumes(group_agent: Agent) -> None:
    _topic(group_agent.bootstrap, "cg-kp", 1)

    def consume() -> list[int]:
        consumer = KafkaConsumer(
            "cg-kp",
            bootstrap_servers=group_agent.bootstrap,
            group_id="g-kp",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            consumer_timeout_ms=WAIT_S * 1000,
            max_poll_records=HALF,
        )
        found: list[int] = []
        for message in consumer:
            found.append(int(message.value))
            if len(found) == HALF:
                break
        consumer.commit()
        consumer.close()
        return found

    assert consume() == list(range(HALF))
    assert consume() == list(range(HALF, RECORDS))


async def _aiokafka_consume(bootstrap: str) -> list[int]:
    consumer = AIOKafkaConsumer(
        "cg-aio",
        bootstrap_servers=bootstrap,
        group_id="g-aio",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[int] = []
    try:
        deadline = time.monotonic() + WAIT_S
        while len(found) < HALF and time.monotonic() < deadline:
            message = await asyncio.wait_for(consumer.getone(), WAIT_S)
            found.append(int(message.value))
        await consumer.commit()
    finally:
        await consumer.stop()
    return found


def test_aiokafka_commits_and_resumes(group_agent: Agent) -> None:
    _topic(group_agent.bootstrap, "cg-aio", 1)
    assert asyncio.run(_aiokafka_consume(group_agent.bootstrap)) == list(range(HALF))
    assert asyncio.run(_aiokafka_consume(group_agent.bootstrap)) == list(range(HALF, RECORDS))


class _Tracked:
    """A confluent consumer that records every assignment it is given."""

    def __init__(self, bootstrap: str, group: str, **extra: Any) -> None:
        self.consumer = _confluent(bootstrap, group, **extra)
        self.assigned: list[set[int]] = []
        self.owned: set[int] = set()

    def subscribe(self, topic: str) -> None:
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, consumer: Consumer, partitions: list[Any]) -> None:
        self.assigned.append({p.partition for p in partitions})
        self.owned |= {p.partition for p in partitions}

    def _on_revoke(self, consumer: Consumer, partitions: list[Any]) -> None:
        self.owned -= {p.partition for p in partitions}


def _poll_until(members: list[_Tracked], done: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done() and time.monotonic() < deadline:
        for member in members:
            member.consumer.poll(POLL_S)
    assert done(), [m.owned for m in members]


def test_static_member_rejoins_without_rebalance(group_agent: Agent) -> None:
    _topic(group_agent.bootstrap, "cg-static", 4)
    a = _Tracked(group_agent.bootstrap, "g-static", **{"group.instance.id": "a"})
    b = _Tracked(group_agent.bootstrap, "g-static", **{"group.instance.id": "b"})
    a.subscribe("cg-static")
    b.subscribe("cg-static")
    _poll_until([a, b], lambda: a.owned and b.owned and a.owned | b.owned == {0, 1, 2, 3})
    rebalances_of_b = len(b.assigned)
    owned_by_a = set(a.owned)
    a.consumer.close()  # a static member does not leave the group on close
    again = _Tracked(group_agent.bootstrap, "g-static", **{"group.instance.id": "a"})
    again.subscribe("cg-static")
    _poll_until([again, b], lambda: bool(again.owned))
    for _ in range(10):  # b keeps polling: a rebalance would reach it through its heartbeats
        b.consumer.poll(POLL_S)
    assert again.owned == owned_by_a
    assert len(b.assigned) == rebalances_of_b
    again.consumer.close()
    b.consumer.close()


def test_cooperative_sticky_assignor(group_agent: Agent) -> None:
    _topic(group_agent.bootstrap, "cg-coop", 4)
    coop = {"partition.assignment.strategy": "cooperative-sticky"}
    a = _Tracked(group_agent.bootstrap, "g-coop", **coop)
    a.subscribe("cg-coop")
    _poll_until([a], lambda: a.owned == {0, 1, 2, 3})
    b = _Tracked(group_agent.bootstrap, "g-coop", **coop)
    b.subscribe("cg-coop")
    _poll_until([a, b], lambda: a.owned and b.owned and a.owned | b.owned == {0, 1, 2, 3})
    assert not a.owned & b.owned
    b.consumer.close()  # leaves the group: a gets b's partitions back
    _poll_until([a], lambda: a.owned == {0, 1, 2, 3})
    a.consumer.close()
