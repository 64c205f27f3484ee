"""Broker defaults an operator sets on `streamhouse agent`, as Kafka's broker configs:
`--num-partitions` (num.partitions) sizes auto-created topics and CreateTopics asking for -1;
`--no-auto-create-topics` (auto.create.topics.enable=false) makes Metadata answer
UNKNOWN_TOPIC_OR_PARTITION for a topic that does not exist (INVALID_TOPIC_EXCEPTION for
an illegal name, as with auto-create on)."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streamhouse.kafka import codec
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.entities import build
from tests.e2e.conftest import start_agent
from tests.fixtures.kafka_wire import raw_call

WAIT_S = 15
METADATA_VERSION = 12
E_NONE = 0
E_UNKNOWN_TOPIC_OR_PARTITION = 3
E_INVALID_TOPIC_EXCEPTION = 17


def _metadata_errors(port: int, *names: str) -> dict[str, int]:
    request = build(
        codec.request_schema(ApiKey.METADATA, METADATA_VERSION),
        {"topics": [{"name": name} for name in names], "allow_auto_topic_creation": True},
    )
    answer = raw_call(port, request)
    return {topic.name: int(topic.error_code) for topic in answer.topics}


def test_num_partitions_sizes_auto_created_and_default_sized_topics(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "data", "--num-partitions", "3")
    try:
        producer = Producer({"bootstrap.servers": agent.bootstrap})
        producer.produce("auto-made", b"v")
        assert producer.flush(WAIT_S) == 0
        admin = AdminClient({"bootstrap.servers": agent.bootstrap})
        admin.create_topics([NewTopic("sized-by-broker")])["sized-by-broker"].result(WAIT_S)
        listed = admin.list_topics(timeout=WAIT_S).topics
        assert len(listed["auto-made"].partitions) == 3
        assert len(listed["sized-by-broker"].partitions) == 3
    finally:
        assert agent.stop() == 0


def test_without_auto_create_metadata_answers_unknown_topic(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "data", "--no-auto-create-topics")
    try:
        admin = AdminClient({"bootstrap.servers": agent.bootstrap})
        admin.create_topics([NewTopic("made", 1)])["made"].result(WAIT_S)
        assert _metadata_errors(agent.port, "missing", "made", "bad name!") == {
            "missing": E_UNKNOWN_TOPIC_OR_PARTITION,
            "made": E_NONE,
            "bad name!": E_INVALID_TOPIC_EXCEPTION,  # illegal, created or not
        }
        assert "missing" not in admin.list_topics(timeout=WAIT_S).topics
    finally:
        assert agent.stop() == 0


def test_auto_create_is_off_by_environment_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STREAMHOUSE_AUTO_CREATE_TOPICS=false turns it off as the flag does."""
    monkeypatch.setenv("STREAMHOUSE_AUTO_CREATE_TOPICS", "false")
    agent = start_agent(tmp_path / "data")
    try:
        assert _metadata_errors(agent.port, "missing") == {"missing": E_UNKNOWN_TOPIC_OR_PARTITION}
    finally:
        assert agent.stop() == 0
