"""Phase 5: keyed records land where the Java client would put them, in order.

confluent-kafka (partitioner murmur2_random) and kafka-python (default
partitioner) send keyed records to a 6-partition topic; each key's partition
equals Java's murmur2 formula computed here, and each partition reads back in
the order its records were sent.
"""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Producer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from streamhouse.kafka.partitioner import partition_of_key
from tests.e2e.conftest import Agent

PARTITIONS = 6
RECORDS = 300
KEYS = 40
TIMEOUT_S = 15


def java_partition(key: bytes, partitions: int) -> int:
    return partition_of_key(key, partitions)


def _key(index: int) -> bytes:
    return f"key-{index % KEYS}-{'x' * (index % 5)}".encode()


def _create(agent: Agent, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=agent.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    admin.close()


def _send_confluent(agent: Agent, topic: str) -> dict[int, int]:
    producer = Producer(
        {
            "bootstrap.servers": agent.bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "partitioner": "murmur2_random",
            "max.in.flight.requests.per.connection": 1,
        }
    )
    placed: dict[int, int] = {}

    def delivered(index: int) -> Callable[[object, object], None]:
        def report(error: object, message: object) -> None:
            assert error is None
            placed[index] = message.partition()  # type: ignore[attr-defined]

        return report

    for index in range(RECORDS):
        producer.produce(topic, key=_key(index), value=b"%d" % index, on_delivery=delivered(index))
    assert producer.flush(TIMEOUT_S) == 0
    return placed


def _send_kafka_python(agent: Agent, topic: str) -> dict[int, int]:
    producer = KafkaProducer(
        bootstrap_servers=agent.bootstrap,
        acks=1,
        enable_idempotence=False,
        max_in_flight_requests_per_connection=1,
    )
    futures = [
        producer.send(topic, key=_key(index), value=b"%d" % index) for index in range(RECORDS)
    ]
    producer.flush(TIMEOUT_S)
    placed = {index: future.get(TIMEOUT_S).partition for index, future in enumerate(futures)}
    producer.close()
    return placed


def _consume(agent: Agent, topic: str) -> dict[int, list[tuple[bytes, int]]]:
    consumer = KafkaConsumer(
        bootstrap_servers=agent.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=TIMEOUT_S * 1000,
    )
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    found: dict[int, list[tuple[bytes, int]]] = {p: [] for p in range(PARTITIONS)}
    for count, message in enumerate(consumer, start=1):
        found[message.partition].append((message.key, int(message.value)))
        if count == RECORDS:
            break
    consumer.close()
    return found


def _check(agent: Agent, topic: str, placed: dict[int, int]) -> None:
    assert len(placed) == RECORDS
    for index, partition in placed.items():
        assert partition == java_partition(_key(index), PARTITIONS), index
    assert len(set(placed.values())) == PARTITIONS  # the keys spread over every partition
    found = _consume(agent, topic)
    for partition in range(PARTITIONS):
        expected = [(_key(index), index) for index in range(RECORDS) if placed[index] == partition]
        assert found[partition] == expected


def test_confluent_murmur2_random_matches_java(agent: Agent) -> None:
    _create(agent, "phase5-ck")
    _check(agent, "phase5-ck", _send_confluent(agent, "phase5-ck"))


def test_kafka_python_default_partitioner_matches_java(agent: Agent) -> None:
    _create(agent, "phase5-kp")
    _check(agent, "phase5-kp", _send_kafka_python(agent, "phase5-kp"))
