"""Phase 4: every codec from each of confluent-kafka, kafka-python and aiokafka is stored
verbatim and read back byte-exact by another client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioPartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer
from confluent_kafka import TopicPartition as ConfluentPartition
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.e2e.conftest import Agent, start_agent

CODECS = ["gzip", "snappy", "lz4", "zstd"]
RECORDS = 200
WAIT_S = 20


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """One agent for the module: every test writes and reads a topic of its own (client and
    codec in its name), so none sees another's records; it stops cleanly after them all."""
    with start_agent(tmp_path_factory.mktemp("compression") / "data") as running:
        yield running
        running.stop_cleanly()


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


def _confluent_produce(bootstrap: str, topic: str, codec: str) -> None:
    config = {"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 20}
    producer = Producer(config)
    for value in _values(codec):
        producer.produce(topic, value=value, partition=0)
    assert producer.flush(WAIT_S) == 0


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_produces_kafka_python_reads(agent: Agent, codec: str) -> None:
    topic = f"c-{codec}"
    _confluent_produce(agent.bootstrap, topic, codec)
    assert _kafka_python_read(agent.bootstrap, topic) == _values(codec)


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_produces_confluent_reads(agent: Agent, codec: str) -> None:
    topic = f"k-{codec}"
    producer = KafkaProducer(
        bootstrap_servers=agent.bootstrap,
        compression_type=codec,
        linger_ms=20,
    )
    sent = [producer.send(topic, value=value, partition=0) for value in _values(codec)]
    producer.flush(WAIT_S)
    assert [future.get(WAIT_S).offset for future in sent] == list(range(RECORDS))
    producer.close()
    assert _confluent_read(agent.bootstrap, topic) == _values(codec)


async def _aiokafka_produce(bootstrap: str, topic: str, codec: str) -> list[int]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, compression_type=codec, linger_ms=20, acks=1
    )
    await producer.start()
    try:
        sent = [await producer.send(topic, value, partition=0) for value in _values(codec)]
        return [(await future).offset for future in sent]
    finally:
        await producer.stop()


async def _aiokafka_read(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([AioPartition(topic, 0)])
        found: list[bytes] = []
        while len(found) < RECORDS:
            batches = await consumer.getmany(timeout_ms=WAIT_S * 1000)
            assert batches, f"timed out after {len(found)} records"
            found.extend(message.value for messages in batches.values() for message in messages)
        return found
    finally:
        await consumer.stop()


@pytest.mark.parametrize("codec", CODECS)
def test_aiokafka_produces_confluent_reads(agent: Agent, codec: str) -> None:
    topic = f"a-{codec}"
    offsets = asyncio.run(
        asyncio.wait_for(_aiokafka_produce(agent.bootstrap, topic, codec), WAIT_S)
    )
    assert offsets == list(range(RECORDS))
    assert _confluent_read(agent.bootstrap, topic) == _values(codec)


@pytest.mark.parametrize("codec", CODECS)
def test_aiokafka_reads_confluent(agent: Agent, codec: str) -> None:
    topic = f"ca-{codec}"
    _confluent_produce(agent.bootstrap, topic, codec)
    found = asyncio.run(asyncio.wait_for(_aiokafka_read(agent.bootstrap, topic), WAIT_S * 2))
    assert found == _values(codec)
