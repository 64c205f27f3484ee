"""Phase 3 (first cut): unmodified clients produce and consume byte-exact records.

confluent-kafka and kafka-python produce keys, headers, null keys/values and
explicit timestamps; kafka-python reads them back by assignment; after a restart
the same records come back from the object store.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Producer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from tests.e2e.conftest import Agent, start_agent

RECORDS = 50
POLL_TIMEOUT_MS = 10_000


def _expected(prefix: str) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]], int]]:
    rows = []
    for index in range(RECORDS):
        key = None if index % 7 == 0 else f"{prefix}-key-{index}".encode()
        value = f"{prefix}-value-{index}".encode() * (index % 4 + 1)
        if index % 11 == 5 and key is not None:
            value = None
        headers = [("h", f"{index}".encode())] if index % 3 else []
        rows.append((key, value, headers, 1_700_000_000_000 + index))
    return rows


def _consume_all(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=POLL_TIMEOUT_MS,
    )
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    found = []
    for message in consumer:
        found.append(message)
        if len(found) == count:
            break
    consumer.close()
    return found


def _check(found: list[Any], expected: list[Any]) -> None:
    assert len(found) == len(expected)
    for offset, (message, (key, value, headers, timestamp)) in enumerate(
        zip(found, expected, strict=True)
    ):
        assert message.offset == offset
        assert (message.key, message.value) == (key, value)
        assert [(k, v) for k, v in message.headers] == headers
        assert message.timestamp == timestamp


def test_confluent_producer_then_kafka_python_consumer(agent: Agent) -> None:
    admin = KafkaAdminClient(bootstrap_servers=agent.bootstrap)
    admin.create_topics([NewTopic("phase3", num_partitions=1, replication_factor=1)])
    admin.close()
    producer = Producer({"bootstrap.servers": agent.bootstrap, "acks": "all", "linger.ms": 5})
    expected = _expected("ck")
    for key, value, headers, timestamp in expected:
        producer.produce(
            "phase3",
            value=value,
            key=key,
            headers=headers or None,
            timestamp=timestamp,
            partition=0,
        )
    assert producer.flush(30) == 0
    _check(_consume_all(agent.bootstrap, "phase3", RECORDS), expected)


def test_kafka_python_round_trip_survives_restart(agent: Agent) -> None:
    producer = KafkaProducer(bootstrap_servers=agent.bootstrap, acks=1)
    expected = _expected("kp")
    for key, value, headers, timestamp in expected:
        producer.send(
            "auto-created",
            key=key,
            value=value,
            headers=headers,
            timestamp_ms=timestamp,
            partition=0,
        )
    producer.flush(30)
    producer.close()
    _check(_consume_all(agent.bootstrap, "auto-created", RECORDS), expected)
    assert agent.stop() == 0
    restarted = start_agent(agent.data_dir)
    try:
        _check(_consume_all(restarted.bootstrap, "auto-created", RECORDS), expected)
    finally:
        assert restarted.stop() == 0
