"""`python -m bench --only transactions`: what a transaction costs, and phase 9's loop.

One agent (default settings: a 200 ms flush interval, which every commit waits for once: a
transactional producer sends with acks=all; EndTxn's markers, which must be durable before the
next transaction may add partitions, are flushed as soon as they are synced). A
confluent-kafka transactional producer commits transactions of 10, 100 and 1,000 records
(records/s, transactions/s, commit_transaction's latency), next to the baseline in the same
run: an idempotent producer sending as many records and flushing after each group of that
size (records/s, flush latency); then a consume-transform-produce
loop (send_offsets_to_transaction, PER_LOOP_TRANSACTION records per transaction) moves
LOOP_RECORDS records from one topic to another (records/s).
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as ConfluentPartition

from bench.agents import (
    LIBRDKAFKA_LOG_LEVEL,
    create_topic,
    figure,
    print_table,
    running_agent,
    scratch_dir,
)

SIZES = (10, 100, 1_000)  # records per transaction
# each commit waits about one flush interval (the records durable; the markers are flushed at
# once): a few dozen transactions tell the cost
TRANSACTIONS_PER_SIZE = 20
LOOP_RECORDS = 2_000
PER_LOOP_TRANSACTION = 100
VALUE = b"x" * 100
TIMEOUT_S = 60


def run() -> dict[str, Any]:
    with scratch_dir("bench-txn-") as scratch, running_agent(scratch / "data") as agent:
        for topic in ("txn-bench", "txn-loop-in", "txn-loop-out"):
            create_topic(agent.bootstrap, topic, 1)
        sizes = [_commits(agent.bootstrap, size) for size in SIZES]
        loop = _loop(agent.bootstrap)
    rows = [
        [
            str(s["records_per_transaction"]),
            figure(s["records_per_s"]),
            figure(s["transactions_per_s"]),
            figure(s["commit_p50_ms"]),
            figure(s["commit_p99_ms"]),
            figure(s["baseline_records_per_s"]),
            figure(s["baseline_flush_p50_ms"]),
        ]
        for s in sizes
    ]
    loop_row = [figure(loop["records_per_s"]), figure(loop["transactions_per_s"])]
    rows.append(["loop", *loop_row, "", "", "", ""])
    columns = [
        "records/txn",
        "records/s",
        "txns/s",
        "commit p50 ms",
        "commit p99 ms",
        "idempotent rec/s",
        "idempotent flush p50 ms",
    ]
    print_table("transactions (one agent, confluent-kafka)", columns, rows)
    return {"per_transaction_size": sizes, "consume_transform_produce": loop}


def _producer(bootstrap: str, transactional_id: str) -> Producer:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "linger.ms": 5,
            "log_level": LIBRDKAFKA_LOG_LEVEL,
        }
    )
    producer.init_transactions(TIMEOUT_S)
    return producer


def _commits(bootstrap: str, size: int) -> dict[str, Any]:
    """Transactions of `size` records each, committed one after another."""
    producer = _producer(bootstrap, f"bench-{size}")
    count = TRANSACTIONS_PER_SIZE
    commit_ms: list[float] = []
    start = time.perf_counter()
    for _ in range(count):
        producer.begin_transaction()
        for _ in range(size):
            producer.produce("txn-bench", VALUE, partition=0)
            producer.poll(0)
        committing = time.perf_counter()
        producer.commit_transaction(TIMEOUT_S)
        commit_ms.append((time.perf_counter() - committing) * 1000)
    elapsed = time.perf_counter() - start
    baseline_records_per_s, flush_ms = _baseline(bootstrap, size)
    return {
        "records_per_transaction": size,
        "transactions": count,
        "records_per_s": count * size / elapsed,
        "transactions_per_s": count / elapsed,
        "commit_p50_ms": _percentile(commit_ms, 0.5),
        "commit_p99_ms": _percentile(commit_ms, 0.99),
        "baseline_records_per_s": baseline_records_per_s,
        "baseline_flush_p50_ms": _percentile(flush_ms, 0.5),
    }


def _baseline(bootstrap: str, size: int) -> tuple[float, list[float]]:
    """The same records from an idempotent producer (acks=all), flushed after every `size`:
    records/s and each flush's milliseconds."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "log_level": LIBRDKAFKA_LOG_LEVEL,
        }
    )
    flush_ms: list[float] = []
    start = time.perf_counter()
    for _ in range(TRANSACTIONS_PER_SIZE):
        for _ in range(size):
            producer.produce("txn-bench", VALUE, partition=0)
            producer.poll(0)
        flushing = time.perf_counter()
        assert producer.flush(TIMEOUT_S) == 0
        flush_ms.append((time.perf_counter() - flushing) * 1000)
    return TRANSACTIONS_PER_SIZE * size / (time.perf_counter() - start), flush_ms


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def _loop(bootstrap: str) -> dict[str, Any]:
    """Phase 9's loop: read, transform, produce and commit the offsets in one transaction."""
    source = Producer({"bootstrap.servers": bootstrap, "log_level": LIBRDKAFKA_LOG_LEVEL})
    for _ in range(LOOP_RECORDS):
        source.produce("txn-loop-in", VALUE, partition=0)
        source.poll(0)
    source.flush(TIMEOUT_S)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-loop",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "log_level": LIBRDKAFKA_LOG_LEVEL,
        }
    )
    consumer.assign([ConfluentPartition("txn-loop-in", 0)])
    producer = _producer(bootstrap, "bench-loop")
    moved = transactions = 0
    start = time.perf_counter()
    deadline = start + TIMEOUT_S * 5
    while moved < LOOP_RECORDS and time.perf_counter() < deadline:
        messages = [m for m in consumer.consume(PER_LOOP_TRANSACTION, 1.0) if m.error() is None]
        if not messages:
            continue
        producer.begin_transaction()
        for message in messages:
            producer.produce("txn-loop-out", (message.value() or b"").upper(), partition=0)
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), TIMEOUT_S
        )
        producer.commit_transaction(TIMEOUT_S)
        moved += len(messages)
        transactions += 1
    elapsed = time.perf_counter() - start
    consumer.close()
    return {
        "records": moved,
        "records_per_transaction": PER_LOOP_TRANSACTION,
        "records_per_s": moved / elapsed,
        "transactions_per_s": transactions / elapsed,
    }
