"""One consumer-group member for e2e phase 6, run as its own process; it logs JSON lines.

    python tests/e2e/group_member.py CLIENT BOOTSTRAP TOPIC GROUP NAME OUT_FILE

CLIENT is confluent, aiokafka or kafka-python. The member subscribes with the
range assignor (common to all three), commits synchronously after every batch,
and writes one JSON object per line to OUT_FILE, flushed at once so a SIGKILL
loses nothing already written:

    {"e": "assigned", "gen": 4, "parts": [0, 1], "t": ...}   after each rebalance
    {"e": "revoked", "gen": 4, "parts": [0, 1], "t": ...}
    {"e": "consumed", "gen": 4, "p": 0, "o": [10, 11, 12], "t": ...}
    {"e": "commit", "gen": 4, "offsets": {"0": 13}, "t": ...}   about to commit
    {"e": "committed", "gen": 4, "offsets": {"0": 13}, "ok": true, "t": ...}
    {"e": "stopping", "t": ...}   no more reads; the consumer closes (leaves the group)
    {"e": "stopped", "t": ...}

`t` is time.monotonic(), one clock for every process on the machine. SIGTERM
stops the member cleanly: it closes its consumer, which leaves the group.
The member exits by itself after RUN_S_MAX seconds in any case.
"""

from __future__ import annotations

import asyncio
import json
import signal
import struct
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

SESSION_TIMEOUT_MS = 6_000
HEARTBEAT_INTERVAL_MS = 1_000
REBALANCE_TIMEOUT_MS = 20_000
BATCH_RECORDS_MAX = 200
POLL_S = 0.2
RUN_S_MAX = 120.0


class Log:
    """JSON lines to a file, flushed per line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.gen = -1

    def write(self, event: str, **fields: Any) -> None:
        record = {"e": event, "gen": self.gen, "t": time.monotonic(), **fields}
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()


class Stop:
    """Set by SIGTERM, or when the member has run too long."""

    def __init__(self) -> None:
        self.requested = False
        self.deadline = time.monotonic() + RUN_S_MAX
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, _signum: int, _frame: Any) -> None:
        self.requested = True

    def __bool__(self) -> bool:
        return self.requested or time.monotonic() > self.deadline


def by_partition(records: list[tuple[int, int]]) -> dict[int, list[int]]:
    grouped: dict[int, list[int]] = {}
    for partition, offset in records:
        grouped.setdefault(partition, []).append(offset)
    return grouped


def log_batch(log: Log, records: list[tuple[int, int]]) -> dict[int, int]:
    """Log the batch per partition; the offsets to commit (next to read)."""
    to_commit = {}
    for partition, offsets in sorted(by_partition(records).items()):
        log.write("consumed", p=partition, o=offsets)
        to_commit[partition] = offsets[-1] + 1
    return to_commit


def poll_and_commit(
    log: Log,
    poll: Callable[[], list[tuple[int, int]]],
    commit: Callable[[dict[int, int]], None],
    commit_errors: tuple[type[Exception], ...],
) -> None:
    """Until stopped: read a batch of (partition, offset), log it, commit it synchronously."""
    stop = Stop()
    while not stop:
        records = poll()
        if not records:
            continue
        to_commit = log_batch(log, records)
        log.write("commit", offsets=to_commit)
        try:
            commit(to_commit)
            log.write("committed", offsets=to_commit, ok=True)
        except commit_errors as exc:
            log.write("committed", offsets=to_commit, ok=False, err=repr(exc))


# ---------------------------------------------------------------- confluent-kafka


def run_confluent(bootstrap: str, topic: str, group: str, name: str, log: Log) -> None:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "partition.assignment.strategy": "range",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
            "max.poll.interval.ms": REBALANCE_TIMEOUT_MS,
            "log_level": 3,
        }
    )

    def generation() -> int:
        # librdkafka's serialised group metadata: b"CGMDv2:" then the int32 generation.
        blob = consumer.consumer_group_metadata()
        return int(struct.unpack("=i", blob[7:11])[0])

    def on_assign(_consumer: Any, tps: list[Any]) -> None:
        log.gen = generation()
        log.write("assigned", parts=sorted(tp.partition for tp in tps))

    def on_revoke(_consumer: Any, tps: list[Any]) -> None:
        log.write("revoked", parts=sorted(tp.partition for tp in tps))

    def poll() -> list[tuple[int, int]]:
        messages = consumer.consume(num_messages=BATCH_RECORDS_MAX, timeout=POLL_S)
        return [(m.partition(), m.offset()) for m in messages if m.error() is None]

    def commit(offsets: dict[int, int]) -> None:
        tps = [TopicPartition(topic, p, o) for p, o in offsets.items()]
        consumer.commit(offsets=tps, asynchronous=False)

    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    poll_and_commit(log, poll, commit, (KafkaException,))
    log.write("stopping")
    consumer.close()
    log.write("stopped")


# ---------------------------------------------------------------- kafka-python


def run_kafka_python(bootstrap: str, topic: str, group: str, name: str, log: Log) -> None:
    from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata
    from kafka import TopicPartition as KafkaTopicPartition
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.errors import KafkaError

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id=name,
        partition_assignment_strategy=[RangePartitionAssignor],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
        max_poll_interval_ms=REBALANCE_TIMEOUT_MS,
    )

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        def on_partitions_revoked(self, revoked: Any) -> None:
            log.write("revoked", parts=sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned: Any) -> None:
            log.gen = consumer._coordinator._generation.generation_id
            log.write("assigned", parts=sorted(tp.partition for tp in assigned))

    def poll() -> list[tuple[int, int]]:
        batches = consumer.poll(timeout_ms=int(POLL_S * 1000), max_records=BATCH_RECORDS_MAX)
        return [(m.partition, m.offset) for batch in batches.values() for m in batch]

    def commit(offsets: dict[int, int]) -> None:
        consumer.commit(
            {
                KafkaTopicPartition(topic, p): OffsetAndMetadata(o, "", -1)
                for p, o in offsets.items()
            }
        )

    consumer.subscribe([topic], listener=Listener())
    poll_and_commit(log, poll, commit, (KafkaError,))
    log.write("stopping")
    consumer.close(autocommit=False)
    log.write("stopped")


# ---------------------------------------------------------------- aiokafka


def run_aiokafka(bootstrap: str, topic: str, group: str, name: str, log: Log) -> None:
    asyncio.run(_aiokafka_member(bootstrap, topic, group, name, log))


async def _aiokafka_member(bootstrap: str, topic: str, group: str, name: str, log: Log) -> None:
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor
    from aiokafka.errors import KafkaError

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id=name,
        partition_assignment_strategy=(RangePartitionAssignor,),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
        max_poll_interval_ms=REBALANCE_TIMEOUT_MS,
        rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
    )

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            log.write("revoked", parts=sorted(tp.partition for tp in revoked))

        async def on_partitions_assigned(self, assigned: Any) -> None:
            log.gen = consumer._coordinator.generation
            log.write("assigned", parts=sorted(tp.partition for tp in assigned))

    stop = Stop()
    await consumer.start()
    consumer.subscribe([topic], listener=Listener())
    try:
        while not stop:
            batches = await consumer.getmany(
                timeout_ms=int(POLL_S * 1000), max_records=BATCH_RECORDS_MAX
            )
            records = [(m.partition, m.offset) for batch in batches.values() for m in batch]
            if not records:
                continue
            to_commit = log_batch(log, records)
            log.write("commit", offsets=to_commit)
            try:
                await consumer.commit({TopicPartition(topic, p): o for p, o in to_commit.items()})
                log.write("committed", offsets=to_commit, ok=True)
            except KafkaError as exc:
                log.write("committed", offsets=to_commit, ok=False, err=repr(exc))
    finally:
        log.write("stopping")
        await consumer.stop()
    log.write("stopped")


RUNNERS = {"confluent": run_confluent, "kafka-python": run_kafka_python, "aiokafka": run_aiokafka}


def main(argv: list[str]) -> None:
    client, bootstrap, topic, group, name, out_path = argv
    with open(out_path, "a") as out:
        log = Log(out)
        log.write("started", client=client, name=name)
        RUNNERS[client](bootstrap, topic, group, name, log)


if __name__ == "__main__":
    main(sys.argv[1:])
