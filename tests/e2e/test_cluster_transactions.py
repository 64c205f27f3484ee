"""Transactions across two agent processes on one PostgreSQL and one moto S3 bucket: a
transaction over partitions led by both agents ends with a marker in every partition (the
coordinator writes its own and sends WriteTxnMarkers to the other agent); when the
coordinator's agent is SIGKILLed after a commit decision, the other agent takes the
coordinator slot once the lease expires and completes the commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka import TopicPartition as ConfluentPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamhouse.config import Settings
from streamhouse.engine.coordinators import slot_of
from streamhouse.testing.agent_process import AgentProcess
from streamhouse.testing.cluster import SharedStores, partition_leaders
from tests.e2e.conftest import start_agent, within

PARTITIONS = 4
RECORDS_PER_PARTITION = 5
REQUEST_TIMEOUT_S = 10
TTL_S = Settings().lease_ttl_ms / 1000
SETTLE_S = 30  # membership, balancing, lease expiry on a busy machine


def _agents(tmp_path: Path, stores: SharedStores, *extra: str) -> Iterator[AgentProcess]:
    for name in ("a", "b"):
        yield start_agent(tmp_path / name, *stores.agent_args(), *extra)


def _log_ends(agent: AgentProcess, topic: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": agent.bootstrap, "group.id": "ends"})
    try:
        return [
            consumer.get_watermark_offsets(
                ConfluentPartition(topic, p), REQUEST_TIMEOUT_S, cached=False
            )[1]
            for p in range(PARTITIONS)
        ]
    finally:
        consumer.close()


def _completed(agent: AgentProcess, topic: str, *, markers_max: int = 1) -> bool:
    """Every partition holds its records and one to `markers_max` markers (a marker whose
    write the killed coordinator cannot know of is written again by the next one, as in
    Kafka); False while leaders are moving."""
    try:
        ends = _log_ends(agent, topic)
    except KafkaException:  # a partition between two leaders: ask again
        return False
    return all(0 < end - RECORDS_PER_PARTITION <= markers_max for end in ends)


def _both_lead(agent: AgentProcess, topic: str) -> bool:
    return len(set(partition_leaders(agent.bootstrap, topic).values())) == 2


def _commit_everywhere(agent: AgentProcess, topic: str, transactional_id: str) -> None:
    producer = Producer(
        {"bootstrap.servers": agent.bootstrap, "transactional.id": transactional_id}
    )
    producer.init_transactions(REQUEST_TIMEOUT_S)
    producer.begin_transaction()
    for partition in range(PARTITIONS):
        for n in range(RECORDS_PER_PARTITION):
            producer.produce(topic, f"{partition}-{n}".encode(), partition=partition)
    assert producer.flush(REQUEST_TIMEOUT_S) == 0
    producer.commit_transaction(REQUEST_TIMEOUT_S)


def _cluster(
    stack: ExitStack, tmp_path: Path, stores: SharedStores, topic: str, *extra: str
) -> tuple[AgentProcess, AgentProcess]:
    a, b = (stack.enter_context(agent) for agent in _agents(tmp_path, stores, *extra))
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS)])[topic].result(REQUEST_TIMEOUT_S)
    within(SETTLE_S, lambda: _both_lead(a, topic), "both agents lead partitions")
    return a, b


def test_markers_reach_partitions_led_by_either_agent(
    tmp_path: Path, moto_s3_with_credentials: str, postgres_database_url: str
) -> None:
    stores = SharedStores.fresh_bucket(postgres_database_url, moto_s3_with_credentials, "txns")
    topic = "cluster-txns"
    with ExitStack() as stack:
        a, b = _cluster(stack, tmp_path, stores, topic)
        _commit_everywhere(a, topic, f"tx-{uuid.uuid4().hex[:8]}")
        within(REQUEST_TIMEOUT_S, lambda: _completed(a, topic), "a marker in every partition")
        b.stop_cleanly()
        a.stop_cleanly()


def test_a_decided_commit_completes_after_its_coordinator_is_killed(
    tmp_path: Path, moto_s3_with_credentials: str, postgres_database_url: str
) -> None:
    stores = SharedStores.fresh_bucket(postgres_database_url, moto_s3_with_credentials, "txns")
    topic = "failover-txns"
    transactional_id = f"tx-{uuid.uuid4().hex[:8]}"
    slot = slot_of(transactional_id)
    # markers wait this long to be durable: the coordinator dies before they are
    slow_flush = ("--flush-interval-ms", "3000")
    with ExitStack() as stack:
        a, b = _cluster(stack, tmp_path, stores, topic, *slow_flush)
        _commit_everywhere(a, topic, transactional_id)
        holder = partition_leaders(a.bootstrap, slot.topic)[slot.partition]
        ports = {a.port: a, b.port: b}
        brokers = AdminClient({"bootstrap.servers": a.bootstrap}).list_topics(timeout=10).brokers
        coordinator = ports[brokers[holder].port]
        survivor = b if coordinator is a else a
        coordinator.kill()
        within(
            TTL_S + SETTLE_S,
            lambda: _completed(survivor, topic, markers_max=2),
            "the survivor completed the commit in every partition",
        )
        survivor.stop_cleanly()
