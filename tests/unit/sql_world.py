"""What the SQL tests share: an agent in a thread whose flushes the test makes (the flush
interval is long, so records stay in the tail until `flush`), topics made and filled by
confluent-kafka, and everything a Kafka consumer reads of a topic."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamhouse.agent import Agent, open_http
from streamhouse.engine.authentication import Authenticator
from streamhouse.server.http_api import AgentHttp
from streamhouse.sql.service import SqlResult
from tests.unit.sasl_world import AgentThread, agent_settings

CLIENT_TIMEOUT_S = 20
LONG_FLUSH_INTERVAL_MS = 600_000
CONSUME_POLLS_MAX = 60


def start_sql_agent(
    directory: Path, authenticator: Authenticator | None = None, protocol: str = "PLAINTEXT"
) -> AgentThread:
    """An agent with its HTTP door (on a free port) that flushes only when told."""
    settings = agent_settings(directory, protocol).with_overrides(
        http_port=0, flush_interval_ms=LONG_FLUSH_INTERVAL_MS
    )

    async def http(agent: Agent) -> AgentHttp:
        return await open_http(agent, asyncio.Event())

    return AgentThread(settings, authenticator, door_openers=(http,)).start()


def http_port(agent: AgentThread) -> int:
    door = agent.doors[0]
    assert isinstance(door, AgentHttp)
    return door.port


def new_topic(agent: AgentThread, partitions: int = 1, prefix: str = "sql") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    admin.create_topics([NewTopic(name, partitions)])[name].result(CLIENT_TIMEOUT_S)
    return name


def produce(
    agent: AgentThread,
    topic: str,
    values: list[bytes | None],
    partition: int = 0,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    producer = Producer({"bootstrap.servers": agent.bootstrap, "acks": "1", "linger.ms": 0})
    for index, value in enumerate(values):
        producer.produce(
            topic, value=value, key=b"k%d" % index, partition=partition, headers=headers
        )
    assert producer.flush(CLIENT_TIMEOUT_S) == 0


def flush(agent: AgentThread) -> None:
    """Write every pending record to an object now."""
    assert agent.agent is not None
    agent.call(agent.agent.log.flusher.flush_once())


def query(agent: AgentThread, text: str) -> SqlResult:
    assert agent.agent is not None
    return agent.call(agent.agent.sql.query(text))


def consumed(agent: AgentThread, topic: str, partitions: int) -> set[tuple[int, int, bytes]]:
    """(partition, offset, value) of every record a read_committed consumer reads."""
    consumer = Consumer(
        {
            "bootstrap.servers": agent.bootstrap,
            "group.id": f"g-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.assign([KafkaPartition(topic, p, 0) for p in range(partitions)])
    found: set[tuple[int, int, bytes]] = set()
    idle = 0
    try:
        while idle < 3 and len(found) < 100_000:
            message = consumer.poll(1)
            if message is None:
                idle += 1
                continue
            if message.error() is None:
                found.add((message.partition(), message.offset(), message.value() or b""))
    finally:
        consumer.close()
    return found


def running_sql_agent(
    factory: pytest.TempPathFactory, name: str, authenticator: Authenticator | None = None
) -> Iterator[AgentThread]:
    """A module fixture's agent (`yield from` it): started in a fresh directory, stopped after."""
    protocol = "PLAINTEXT" if authenticator is None else "SASL_PLAINTEXT"
    running = start_sql_agent(factory.mktemp(name) / "data", authenticator, protocol)
    yield running
    running.stop()
