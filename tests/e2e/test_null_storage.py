"""`--storage null` (the benchmark baseline) serves the same protocol while keeping nothing."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from tests.e2e.conftest import start_agent

TIMEOUT_S = 20


def test_null_storage_acks_and_serves_the_tail(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "data", "--storage", "null")
    failures: list[object] = []
    try:
        for acks in ("1", "all"):
            producer = Producer({"bootstrap.servers": agent.bootstrap, "acks": acks})
            for index in range(100):
                producer.produce(
                    "void",
                    value=b"n%d" % index,
                    partition=0,
                    on_delivery=lambda error, _: error and failures.append(error),
                )
            assert producer.flush(TIMEOUT_S) == 0 and failures == []
        consumer = Consumer(
            {"bootstrap.servers": agent.bootstrap, "group.id": "null", "enable.auto.commit": False}
        )
        consumer.assign([TopicPartition("void", 0, OFFSET_BEGINNING)])
        first = consumer.poll(TIMEOUT_S)
        consumer.close()
        assert first is not None and first.value() == b"n0"
    finally:
        assert agent.stop() == 0
    assert not (tmp_path / "data" / "metadata.db").exists()
    assert not (tmp_path / "data" / "objects").exists()
