"""Phase 3 with aiokafka: an asyncio producer and consumer, byte-exact round trip."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.e2e.conftest import Agent

RECORDS = 40
WAIT_S = 20


async def _round_trip(bootstrap: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="gzip")
    await producer.start()
    sent = []
    try:
        for index in range(RECORDS):
            key = None if index % 5 == 0 else b"k%d" % index
            value = b"aio-%d" % index * (index % 3 + 1)
            headers = [("n", str(index).encode())]
            metadata = await producer.send_and_wait(
                "aio",
                value=value,
                key=key,
                headers=headers,
                partition=0,
                timestamp_ms=1_700_000_000_000 + index,
            )
            sent.append((metadata.offset, key, value, headers, 1_700_000_000_000 + index))
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition("aio", 0)])
        received = []
        while len(received) < RECORDS:
            batch = await consumer.getmany(timeout_ms=WAIT_S * 1000)
            assert batch, f"no data after {len(received)} records"
            for messages in batch.values():
                received += [
                    (m.offset, m.key, m.value, list(m.headers), m.timestamp) for m in messages
                ]
    finally:
        await consumer.stop()
    assert received == sent
    assert [offset for offset, *_ in sent] == list(range(RECORDS))


def test_aiokafka_round_trip(agent: Agent) -> None:
    asyncio.run(asyncio.wait_for(_round_trip(agent.bootstrap), 120))
