"""Phase 4 (first cut): every codec from confluent-kafka and kafka-python is stored verbatim
and read back by the other client, byte-exact."""

from __future__ import annotations

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer
from confluent_kafka import TopicPartition as ConfluentPartition
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.e2e.conftest import Agent

CODECS = ["gzip", "snappy", "lz4", "zstd"]
RECORDS = 200
WAIT_S = 20


def _values(codec: str) -> list[bytes]:
    return [
        (f'{{"codec":"{codec}","n":{i},"pad":"' + "x" * (i % 50) + '"}').encode()
        for i in range(RECORDS)
    ]


def _confluent_read(bootstrap: str, topic: str) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{topic}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    consumer.assign([ConfluentPartition(topic, 0, OFFSET_BEGINNING)])
    found: list[bytes] = []
    while len(found) < RECORDS:
        message = consumer.poll(WAIT_S)
        assert message is not None, f"timed out after {len(found)} records"
        assert message.error() is None, message.error()
        found.append(message.value())
    consumer.close()
    return found


def _kafka_python_read(bootstrap: str, topic: str) -> list[bytes]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        consumer_timeout_ms=WAIT_S * 1000,
        auto_offset_reset="earliest",
    )
    consumer.assign([TopicPartition(topic, 0)])
    found = [message.value for _, message in zip(range(RECORDS), consumer, strict=False)]
    consumer.close()
    return found


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_produces_kafka_python_reads(agent: Agent, codec: str) -> None:
    topic = f"c-{codec}"
    producer = Producer(
        {"bootstrap.servers": agent.bootstrap, "compression.type": codec, "linger.ms": 20}
    )
    for value in _values(codec):
        producer.produce(topic, value=value, partition=0)
    assert producer.flush(WAIT_S) == 0
    assert _kafka_python_read(agent.bootstrap, topic) == _values(codec)


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_produces_confluent_reads(agent: Agent, codec: str) -> None:
    topic = f"k-{codec}"
    producer = KafkaProducer(
        bootstrap_servers=agent.bootstrap,
        compression_type=codec,
        linger_ms=20,
        enable_idempotence=False,  # InitProducerId arrives with the idempotent-producer issue
    )
    sent = [producer.send(topic, value=value, partition=0) for value in _values(codec)]
    producer.flush(WAIT_S)
    assert [future.get(WAIT_S).offset for future in sent] == list(range(RECORDS))
    producer.close()
    assert _confluent_read(agent.bootstrap, topic) == _values(codec)
