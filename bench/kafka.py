"""Kafka benchmarks: one confluent-kafka producer against a real agent process (acks=1 and
acks=all), a consumer reading it back, and the same producer against librdkafka's in-process
mock cluster (a C broker that stores nothing: the client's ceiling on this machine)."""

from __future__ import annotations

import functools
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streamhouse.testing.agent_process import AgentProcess, start_agent_process

RUN_TIMEOUT_S = 120
PARTITIONS = 8
E2E_RECORDS = 2_000
CONSUME_IDLE_S = 3
E2E_INTERVAL_MS = 2
E2E_WARMUP = b"warm-up"


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


def produce(config: dict[str, Any], topic: str, records: int, value_bytes: int) -> dict[str, Any]:
    """Produce `records` values as fast as the client goes; latency from send to delivery."""
    producer = Producer({"linger.ms": 5, "batch.size": 1_000_000, **config})
    value = os.urandom(value_bytes // 2).hex().encode()[:value_bytes]
    latencies_ms: list[float] = []
    failures = [0]

    def delivered(sent_at: float, error: Any, _message: Any) -> None:
        if error is not None:
            failures[0] += 1
        latencies_ms.append((time.perf_counter() - sent_at) * 1000)

    start = time.perf_counter()
    for index in range(records):
        sent_at = time.perf_counter()
        while True:
            try:
                producer.produce(
                    topic,
                    value=value,
                    on_delivery=functools.partial(delivered, sent_at),
                )
                break
            except BufferError:
                producer.poll(0.01)
        if index % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(RUN_TIMEOUT_S)
    elapsed = time.perf_counter() - start
    latencies_ms.sort()
    return {
        "records": records,
        "records_per_s": records / elapsed,
        "mb_per_s": records * value_bytes / 1e6 / elapsed,
        "p50_ms": _percentile(latencies_ms, 0.50),
        "p99_ms": _percentile(latencies_ms, 0.99),
        "p999_ms": _percentile(latencies_ms, 0.999),
        "undelivered": remaining + failures[0],
    }


def _partition_count(bootstrap: str, topic: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return len(admin.list_topics(topic, timeout=30).topics[topic].partitions)


def consume(bootstrap: str, topic: str, records: int) -> dict[str, Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
        }
    )
    partitions = range(_partition_count(bootstrap, topic))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    seen = 0
    start = last_message = time.perf_counter()
    deadline = start + RUN_TIMEOUT_S
    # Stop at `records`, or once nothing came for CONSUME_IDLE_S (librdkafka's mock broker
    # keeps only so many records per partition); the rate counts up to the last record.
    while seen < records and time.perf_counter() < min(deadline, last_message + CONSUME_IDLE_S):
        batch = [m for m in consumer.consume(10_000, 0.2) if m.error() is None]
        if batch:
            seen += len(batch)
            last_message = time.perf_counter()
    consumer.close()
    return {"records": seen, "records_per_s": seen / max(last_message - start, 1e-9)}


def end_to_end_latency(bootstrap: str, topic: str, records: int) -> dict[str, Any]:
    """Produce one record every `E2E_INTERVAL_MS` (acks=1, no linger) and time each until a
    consumer already fetching the partition receives it (after one warm-up record)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-e2e", "fetch.wait.max.ms": 100}
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    latencies_ms: list[float] = []
    warm = threading.Event()

    def receive() -> None:
        deadline = time.perf_counter() + RUN_TIMEOUT_S
        while len(latencies_ms) < records and time.perf_counter() < deadline:
            message = consumer.poll(0.1)
            if message is None or message.error() is not None:
                continue
            if message.value() == E2E_WARMUP:
                warm.set()
            else:
                sent_at = float((message.value() or b"").decode())
                latencies_ms.append((time.perf_counter() - sent_at) * 1000)

    receiver = threading.Thread(target=receive, name="e2e-receiver")
    receiver.start()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 0})
    producer.produce(topic, value=E2E_WARMUP, partition=0)
    producer.flush(RUN_TIMEOUT_S)
    warm.wait(RUN_TIMEOUT_S)
    for _ in range(records):
        producer.produce(topic, value=repr(time.perf_counter()).encode(), partition=0)
        producer.poll(E2E_INTERVAL_MS / 1000)
    producer.flush(RUN_TIMEOUT_S)
    receiver.join(RUN_TIMEOUT_S)
    consumer.close()
    latencies_ms.sort()
    return {
        "records": len(latencies_ms),
        "p50_ms": _percentile(latencies_ms, 0.50),
        "p99_ms": _percentile(latencies_ms, 0.99),
        "p999_ms": _percentile(latencies_ms, 0.999),
    }


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _create_topics(bootstrap: str, *topics: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for topic in topics:
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)


def _start_agent(data_dir: Path, *extra: str) -> AgentProcess:
    """An agent whose log outlives the scratch directory (named in any failure)."""
    log = Path(tempfile.gettempdir()) / f"streamhouse-bench-agent-{os.getpid()}.log"
    return start_agent_process(data_dir, *extra, log_path=log)


def _agent_run(records: int, value_bytes: int, *extra: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="streamhouse-kbench-", dir=".") as scratch:
        data_dir = Path(scratch) / "data"
        agent = _start_agent(data_dir, *extra)
        bootstrap = agent.bootstrap
        try:
            _create_topics(bootstrap, "bench-acks1", "bench-acksall", "bench-e2e")
            base = {"bootstrap.servers": bootstrap}
            report = {
                "produce_acks_1": produce(
                    {**base, "acks": "1"}, "bench-acks1", records, value_bytes
                ),
                "produce_acks_all": produce(
                    {**base, "acks": "all"}, "bench-acksall", records, value_bytes
                ),
                "consume_from_tail": consume(bootstrap, "bench-acks1", records),
                "end_to_end_latency": end_to_end_latency(bootstrap, "bench-e2e", E2E_RECORDS),
                "peak_rss_mb": _peak_rss_mb(agent.pid),
            }
            agent.check_alive()  # a figure from a dead agent is no figure
        finally:
            agent.stop_cleanly(RUN_TIMEOUT_S)
        if "null" in extra:
            return report  # nothing was stored: there is nothing cold to read
        started = time.perf_counter()
        agent = _start_agent(data_dir, *extra)
        report["restart_s"] = time.perf_counter() - started
        try:  # a fresh process has an empty tail and block cache: every read goes to objects
            report["consume_from_objects"] = consume(agent.bootstrap, "bench-acks1", records)
            agent.check_alive()
        finally:
            agent.stop_cleanly(RUN_TIMEOUT_S)
        return report


def _mock_cluster_run(records: int, value_bytes: int) -> dict[str, Any]:
    """The client's ceiling: the same producer and consumer against librdkafka's mock broker
    (which auto-creates the topic with its own partition count; reported)."""
    owner = Producer({"test.mock.num.brokers": 1})
    broker = next(iter(owner.list_topics(timeout=30).brokers.values()))
    bootstrap = f"{broker.host}:{broker.port}"
    report = {
        "produce_acks_1": produce(
            {"bootstrap.servers": bootstrap, "acks": "1"}, "bench-mock", records, value_bytes
        ),
        "consume": consume(bootstrap, "bench-mock", records),
        "partitions": _partition_count(bootstrap, "bench-mock"),
    }
    owner.flush(RUN_TIMEOUT_S)
    return report


def run(records: int, value_bytes: int) -> dict[str, Any]:
    real = _agent_run(records, value_bytes)
    null = _agent_run(records, value_bytes, "--storage", "null")
    mock = _mock_cluster_run(records, value_bytes)
    rate = "records_per_s"
    return {
        "value_bytes": value_bytes,
        "partitions": PARTITIONS,
        "agent": real,
        "agent_storage_null": null,
        "mock_cluster": mock,
        "acks_1_vs_null_ratio": real["produce_acks_1"][rate] / null["produce_acks_1"][rate],
        "acks_all_vs_null_ratio": real["produce_acks_all"][rate] / null["produce_acks_all"][rate],
        "acks_1_vs_mock_ratio": real["produce_acks_1"][rate] / mock["produce_acks_1"][rate],
        "consume_tail_vs_mock_ratio": real["consume_from_tail"][rate] / mock["consume"][rate],
    }
