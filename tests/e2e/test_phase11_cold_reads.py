"""Phase 11: on moto's S3 server, after a restart with the agent's local state wiped, consumers
read everything back from the object store, byte-exact."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, TopicPartition

from tests.e2e.conftest import start_agent

RECORDS = 500
PARTITIONS = 3
TIMEOUT_S = 30


def _read_all(bootstrap: str, topic: str) -> dict[int, list[bytes]]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        consumer_timeout_ms=TIMEOUT_S * 1000,
    )
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    found: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    for _, message in zip(range(RECORDS), consumer, strict=False):
        found[message.partition].append(message.value)
    consumer.close()
    return found


def test_cold_reads_from_s3_after_local_state_is_wiped(
    tmp_path: Path, moto_s3_with_credentials: str
) -> None:
    bucket = f"phase11-{uuid.uuid4().hex[:12]}"
    s3 = ("--object-store", f"s3://{bucket}/cluster", "--s3-endpoint", moto_s3_with_credentials)
    data_dir = tmp_path / "data"
    agent = start_agent(data_dir, *s3)
    expected: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    try:
        admin = AdminClient({"bootstrap.servers": agent.bootstrap})
        admin.create_topics([NewTopic("cold", PARTITIONS, 1)])["cold"].result(TIMEOUT_S)
        failures: list[object] = []
        producer = Producer(
            {
                "bootstrap.servers": agent.bootstrap,
                "acks": "all",
                "compression.type": "zstd",
                "linger.ms": 10,
            }
        )
        for index in range(RECORDS):
            value = f"cold-{index}-".encode() * (index % 5 + 1)
            partition = index % PARTITIONS
            producer.produce(
                "cold",
                value=value,
                partition=partition,
                on_delivery=lambda error, _: error and failures.append(error),
            )
            expected[partition].append(value)
        assert producer.flush(TIMEOUT_S) == 0
        assert failures == []
    finally:
        assert agent.stop() == 0
    assert not (data_dir / "objects").exists(), "objects must go to S3, not the local dir"
    shutil.rmtree(data_dir / "local")  # WAL, agent id: all local state but the metadata store

    restarted = start_agent(data_dir, *s3)
    try:
        assert _read_all(restarted.bootstrap, "cold") == expected
    finally:
        assert restarted.stop() == 0
