"""The benchmark's C load generator (bench/loadgen.c) compiles, and what it reports sent is what
arrived: against librdkafka's mock broker and against a real agent process, counted back by the
generator's consumer and by the agent's high watermarks."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from bench import loadgen
from bench.agents import create_topic
from tests.e2e.conftest import start_agent

pytestmark = pytest.mark.slow

TOPIC = "loadgen"
PARTITIONS = 2
RECORDS = 2_000
SECONDS_MAX = 60
MANY_CONNECTIONS = 5
MANY_RATE = 20  # requests a second per connection
MANY_SECONDS = 1
TIMEOUT_S = 20


def _produce(target: str | None, acks: str) -> dict[str, object]:
    return loadgen.run(
        "produce",
        target,
        TOPIC,
        records=RECORDS,
        seconds=SECONDS_MAX,
        drain_s=SECONDS_MAX,
        partitions=PARTITIONS,
        acks=acks,
        linger_ms=0,
        batch_bytes=16_384,
    )


def _high_watermarks(bootstrap: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "loadgen-test"})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=TIMEOUT_S)[1]
            for p in range(PARTITIONS)
        )
    finally:
        consumer.close()


def test_loadgen_against_the_mock_broker() -> None:
    produced = _produce(None, "1")
    assert produced["delivered"] == RECORDS and produced["complete"]
    consumed = loadgen.run("consume", None, TOPIC, records=RECORDS, partitions=PARTITIONS)
    assert consumed["records"] == RECORDS and consumed["errors"] == 0
    many = loadgen.run(
        "many",
        None,
        TOPIC,
        connections=MANY_CONNECTIONS,
        rate=MANY_RATE,
        seconds=MANY_SECONDS,
        warmup_s=0,
        partitions=PARTITIONS,
    )
    assert many["answered"] == many["sent"] > 0 and many["errors"] == 0


def test_loadgen_against_an_agent(tmp_path: Path) -> None:
    with start_agent(tmp_path / "data") as agent:
        create_topic(agent.bootstrap, TOPIC, PARTITIONS)
        for acks in ("1", "all"):
            produced = _produce(agent.bootstrap, acks)
            assert produced["delivered"] == RECORDS and produced["complete"]
        consumed = loadgen.run(
            "consume", agent.bootstrap, TOPIC, records=2 * RECORDS, seconds=SECONDS_MAX
        )
        assert consumed["records"] == 2 * RECORDS and consumed["errors"] == 0
        many = loadgen.run(
            "many",
            agent.bootstrap,
            TOPIC,
            acks="all",
            connections=MANY_CONNECTIONS,
            rate=MANY_RATE,
            seconds=MANY_SECONDS,
            warmup_s=0,
            partitions=PARTITIONS,
            drain_s=TIMEOUT_S,
        )
        assert many["answered"] == many["sent"] > 0 and many["errors"] == 0
        assert _high_watermarks(agent.bootstrap) == 2 * RECORDS + many["sent"]
        agent.stop_cleanly()
