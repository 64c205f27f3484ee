"""Phase 2: topic administration from unmodified admin clients.

confluent-kafka's AdminClient and kafka-python's KafkaAdminClient create topics
(a duplicate, a topic without partitions and one with more than
topic_partitions_max are refused), list them, describe
and alter their configs, add partitions (Metadata then shows the new count) and
delete them (then they are gone).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.metadata import MetadataRequest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    ResourceType,
)
from confluent_kafka.admin import NewTopic as CNewTopic
from kafka import KafkaConsumer
from kafka import errors as kafka_errors
from kafka.admin import ConfigResource as KConfigResource
from kafka.admin import (
    ConfigResourceType,
    KafkaAdminClient,
)
from kafka.admin import NewPartitions as KNewPartitions
from kafka.admin import NewTopic as KNewTopic

from streamhouse.config import Settings
from tests.e2e.conftest import Agent
from tests.fixtures.kafka_wire import produce_answers

TIMEOUT_S = 15
DEFAULTS = {
    "cleanup.policy": "delete",
    "retention.bytes": "-1",
    "segment.bytes": "1073741824",
    "segment.ms": "604800000",
    "max.message.bytes": "1048576",
}

INVALID_TOPIC_EXCEPTION = 17
UNKNOWN_TOPIC_OR_PARTITION = 3
ACKS_LEADER = 1


def _result(futures: dict[Any, Any]) -> Any:
    [future] = futures.values()
    return future.result(TIMEOUT_S)


def _error_code(futures: dict[Any, Any]) -> int:
    with pytest.raises(KafkaException) as raised:
        _result(futures)
    code: int = raised.value.args[0].code()
    return code


def _partition_count(admin: AdminClient, topic: str) -> int:
    described = admin.list_topics(topic=topic, timeout=TIMEOUT_S).topics[topic]
    assert described.error is None
    return len(described.partitions)


def _configs(admin: AdminClient, topic: str) -> dict[str, Any]:
    entries: dict[str, Any] = _result(
        admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
    )
    return entries


def test_confluent_admin_topic_lifecycle(agent: Agent) -> None:
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    config = {"retention.ms": "3600000"}
    assert _result(admin.create_topics([CNewTopic("p2-ck", 2, config=config)])) is None
    assert _error_code(admin.create_topics([CNewTopic("p2-ck", 3)])) == (
        KafkaError.TOPIC_ALREADY_EXISTS
    )
    assert _partition_count(admin, "p2-ck") == 2

    entries = _configs(admin, "p2-ck")
    assert entries["retention.ms"].value == "3600000"
    assert entries["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    for name, value in DEFAULTS.items():
        assert entries[name].value == value
        assert entries[name].source == ConfigSource.DEFAULT_CONFIG.value
    broker = _result(admin.describe_configs([ConfigResource(ResourceType.BROKER, "0")]))
    assert broker["num.partitions"].value == "1"  # the broker's configs, read-only defaults
    assert broker["num.partitions"].source == ConfigSource.DEFAULT_CONFIG.value
    assert broker["log.segment.bytes"].value == DEFAULTS["segment.bytes"]
    assert all(entry.is_read_only for entry in broker.values())
    assert _error_code(admin.describe_configs([ConfigResource(ResourceType.TOPIC, "none")])) == (
        KafkaError.UNKNOWN_TOPIC_OR_PART
    )

    changes = [
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET),
    ]
    resource = ConfigResource(ResourceType.TOPIC, "p2-ck", incremental_configs=changes)
    assert _result(admin.incremental_alter_configs([resource])) is None
    entries = _configs(admin, "p2-ck")
    assert entries["retention.ms"].value == "604800000"
    assert entries["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert entries["cleanup.policy"].value == "compact"
    unknown = [ConfigEntry("no.such", "1", incremental_operation=AlterConfigOpType.SET)]
    bad = ConfigResource(ResourceType.TOPIC, "p2-ck", incremental_configs=unknown)
    assert _error_code(admin.incremental_alter_configs([bad])) == KafkaError.INVALID_CONFIG

    assert _result(admin.create_partitions([NewPartitions("p2-ck", 4)], validate_only=True)) is None
    assert _partition_count(admin, "p2-ck") == 2
    assert _result(admin.create_partitions([NewPartitions("p2-ck", 4)])) is None
    assert _partition_count(admin, "p2-ck") == 4
    assert _error_code(admin.create_partitions([NewPartitions("p2-ck", 3)])) == (
        KafkaError.INVALID_PARTITIONS
    )

    assert _result(admin.delete_topics(["p2-ck"])) is None
    assert _error_code(admin.delete_topics(["p2-ck"])) == KafkaError.UNKNOWN_TOPIC_OR_PART
    kafka_python = KafkaAdminClient(bootstrap_servers=agent.bootstrap)
    assert "p2-ck" not in kafka_python.list_topics()
    kafka_python.close()


def test_kafka_python_admin_topic_lifecycle(agent: Agent) -> None:
    admin = KafkaAdminClient(bootstrap_servers=agent.bootstrap)
    admin.create_topics([KNewTopic("p2-kp", 1, 1, topic_configs={"segment.ms": "60000"})])
    with pytest.raises(kafka_errors.TopicAlreadyExistsError):
        admin.create_topics([KNewTopic("p2-kp", 1, 1)])
    with pytest.raises(kafka_errors.InvalidPartitionsError):
        admin.create_topics([KNewTopic("p2-kp-empty", 0, 1)])
    assert "p2-kp" in admin.list_topics()
    assert "p2-kp-empty" not in admin.list_topics()

    assert _kp_configs(admin, "p2-kp")["segment.ms"] == ("60000", "DYNAMIC_TOPIC_CONFIG")
    assert _kp_configs(admin, "p2-kp")["retention.ms"] == ("604800000", "DEFAULT_CONFIG")

    replace = KConfigResource(ConfigResourceType.TOPIC, "p2-kp", configs={"retention.ms": "1000"})
    admin.alter_configs([replace], raise_on_unknown=False, incremental=False)
    configs = _kp_configs(admin, "p2-kp")
    assert configs["retention.ms"] == ("1000", "DYNAMIC_TOPIC_CONFIG")
    # AlterConfigs replaces all overrides; kafka-python resends the other modified ones.
    assert configs["segment.ms"] == ("60000", "DYNAMIC_TOPIC_CONFIG")
    append = KConfigResource(
        ConfigResourceType.TOPIC, "p2-kp", configs={"cleanup.policy": ("APPEND", "compact")}
    )
    admin.alter_configs([append], raise_on_unknown=False, incremental=True)
    configs = _kp_configs(admin, "p2-kp")
    assert configs["cleanup.policy"] == ("delete,compact", "DYNAMIC_TOPIC_CONFIG")
    assert configs["retention.ms"] == ("1000", "DYNAMIC_TOPIC_CONFIG")  # incremental: kept

    admin.create_partitions({"p2-kp": KNewPartitions(3)})
    consumer = KafkaConsumer(bootstrap_servers=agent.bootstrap)
    assert consumer.partitions_for_topic("p2-kp") == {0, 1, 2}
    consumer.close()
    with pytest.raises(kafka_errors.InvalidPartitionsError):
        admin.create_partitions({"p2-kp": KNewPartitions(2)})

    admin.delete_topics(["p2-kp"])
    assert "p2-kp" not in admin.list_topics()
    with pytest.raises(kafka_errors.UnknownTopicOrPartitionError):
        admin.delete_topics(["p2-kp"])
    admin.close()


def _kp_configs(admin: KafkaAdminClient, topic: str) -> dict[str, tuple[str, str]]:
    resource = KConfigResource(ConfigResourceType.TOPIC, topic)
    described = admin.describe_configs([resource], config_filter="all")["topic"][topic]
    return {name: (entry["value"], entry["config_source"]) for name, entry in described.items()}


def test_confluent_lists_every_topic(agent: Agent) -> None:
    """librdkafka's all-topics Metadata request (which carries trailing bytes) is served."""
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    for name, count in (("listed-a", 1), ("listed-b", 3)):
        _result(admin.create_topics([CNewTopic(name, count, 1)]))
    listed = admin.list_topics(timeout=TIMEOUT_S).topics
    assert {name: len(listed[name].partitions) for name in ("listed-a", "listed-b")} == {
        "listed-a": 1,
        "listed-b": 3,
    }


def test_illegal_topic_names_are_refused(agent: Agent) -> None:
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    code = _error_code(admin.create_topics([CNewTopic("bad name!", 1, 1)]))
    assert code == KafkaError.TOPIC_EXCEPTION


def test_partition_counts_beyond_the_bound_are_refused(agent: Agent) -> None:
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    too_many = Settings().topic_partitions_max + 1
    code = _error_code(admin.create_topics([CNewTopic("too-wide", too_many, 1)]))
    assert code == KafkaError.INVALID_PARTITIONS
    _result(admin.create_topics([CNewTopic("widening", 1, 1)]))
    code = _error_code(admin.create_partitions([NewPartitions("widening", too_many)]))
    assert code == KafkaError.INVALID_PARTITIONS
    assert _partition_count(admin, "widening") == 1


def test_auto_create_of_an_illegal_name_answers_invalid_topic(agent: Agent) -> None:
    async def ask() -> dict[str, int]:
        client = AIOKafkaClient(bootstrap_servers=agent.bootstrap)
        await client.bootstrap()
        try:
            node = next(iter(client.cluster.brokers())).nodeId
            request = MetadataRequest(["bad name!", "fine-name"], allow_auto_topic_creation=True)
            response = await client.send(node, request)
            return {topic[1]: topic[0] for topic in response.topics}
        finally:
            await client.close()

    errors = asyncio.run(asyncio.wait_for(ask(), 30))
    assert errors == {"bad name!": INVALID_TOPIC_EXCEPTION, "fine-name": 0}


def test_produce_to_an_illegal_name_answers_invalid_topic(agent: Agent) -> None:
    """The one topic-name rule holds on Produce as on Metadata and CreateTopics."""
    answers = produce_answers(agent.port, ["bad name!", "never-made"], ACKS_LEADER)
    assert {name: code for name, (code, _) in answers.items()} == {
        "bad name!": INVALID_TOPIC_EXCEPTION,
        "never-made": UNKNOWN_TOPIC_OR_PARTITION,
    }
    failures: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": agent.bootstrap})
    producer.produce("bad name!", b"v", on_delivery=lambda error, _: failures.append(error))
    assert producer.flush(TIMEOUT_S) == 0
    assert [error.code() if error else None for error in failures] == [KafkaError.TOPIC_EXCEPTION]
