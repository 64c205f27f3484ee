"""Kafka benchmarks: one confluent-kafka producer against a real agent process (acks=1 and
acks=all), a consumer reading it back, and the same producer against librdkafka's in-process
mock cluster (a C broker that stores nothing: the client's ceiling on this machine)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

AGENT_START_TIMEOUT_S = 30
RUN_TIMEOUT_S = 120
PARTITIONS = 8


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_agent(data_dir: str, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "streamhouse",
        "agent",
        "--data-dir",
        data_dir,
        "--kafka-port",
        str(port),
        "--http-port",
        "0",
        *extra,
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + AGENT_START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("agent did not start")


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

    def delivered(error: Any, _message: Any, sent_at: float) -> None:
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
                    on_delivery=lambda e, m, t=sent_at: delivered(e, m, t),
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


def consume(bootstrap: str, topic: str, records: int) -> dict[str, Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    seen = 0
    start = time.perf_counter()
    deadline = start + RUN_TIMEOUT_S
    while seen < records and time.perf_counter() < deadline:
        for message in consumer.consume(10_000, 1.0):
            if message.error() is None:
                seen += 1
    elapsed = time.perf_counter() - start
    consumer.close()
    return {"records": seen, "records_per_s": seen / elapsed}


def _agent_run(records: int, value_bytes: int, *extra: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="streamhouse-kbench-", dir=".") as scratch:
        process, bootstrap = _start_agent(os.path.join(scratch, "data"), *extra)
        try:
            admin = AdminClient({"bootstrap.servers": bootstrap})
            for topic in ("bench-acks1", "bench-acksall"):
                admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
            base = {"bootstrap.servers": bootstrap}
            return {
                "produce_acks_1": produce(
                    {**base, "acks": "1"}, "bench-acks1", records, value_bytes
                ),
                "produce_acks_all": produce(
                    {**base, "acks": "all"}, "bench-acksall", records, value_bytes
                ),
                "consume_from_tail": consume(bootstrap, "bench-acks1", records),
            }
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(RUN_TIMEOUT_S)


def run(records: int, value_bytes: int) -> dict[str, Any]:
    real = _agent_run(records, value_bytes)
    null = _agent_run(records, value_bytes, "--storage", "null")
    mock = produce({"test.mock.num.brokers": 1, "acks": "1"}, "bench-mock", records, value_bytes)
    rate = "records_per_s"
    return {
        "value_bytes": value_bytes,
        "partitions": PARTITIONS,
        "agent": real,
        "agent_storage_null": null,
        "mock_cluster_acks_1": mock,
        "acks_1_vs_null_ratio": real["produce_acks_1"][rate] / null["produce_acks_1"][rate],
        "acks_all_vs_null_ratio": real["produce_acks_all"][rate] / null["produce_acks_all"][rate],
        "acks_1_vs_mock_ratio": real["produce_acks_1"][rate] / mock[rate],
    }
