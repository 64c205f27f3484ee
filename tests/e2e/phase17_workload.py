"""The clients of e2e phase 17, each on its own thread in the test process: a sequenced producer
(confluent-kafka, acks=all, idempotent), one consumer group with a confluent-kafka and an aiokafka
member (each committing after every batch), a sampler of the group's committed offsets (admin
ListConsumerGroupOffsets), and the final fresh scan. Each records what it was told, with
time.monotonic() times, for the verdict (phase17_verdict.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener  # type: ignore[import-untyped]
from aiokafka.coordinator.assignors.range import (  # type: ignore[import-untyped]
    RangePartitionAssignor,
)
from aiokafka.errors import (  # type: ignore[import-untyped]
    IllegalStateError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
)
from aiokafka.errors import KafkaError as AioKafkaError
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from kafka import KafkaAdminClient
from kafka.errors import KafkaError as KafkaPythonError

TOPIC = "phase17"
PARTITIONS = 12
GROUP = "phase17-group"
ROUND_INTERVAL_S = 0.05  # one record per partition per round: 240 records/s in all
RECORDS_MAX = 72_000  # the producer stops here whatever happens (5 minutes of rounds)
PRODUCER_REQUEST_TIMEOUT_MS = 5_000  # a paused agent's requests are retried after this
DELIVERY_TIMEOUT_MS = 180_000  # librdkafka's message.timeout.ms: failover fits well within
FLUSH_TIMEOUT_S = 60
SESSION_TIMEOUT_MS = 6_000  # the agent's group.min.session.timeout.ms
HEARTBEAT_INTERVAL_MS = 1_000
CLIENT_REQUEST_TIMEOUT_MS = 10_000  # consumers give up on a paused agent after this
METADATA_REFRESH_MS = 2_000
BATCH_RECORDS_MAX = 500
POLL_S = 0.2
SEEK_TIMEOUT_S = 10
SAMPLE_INTERVAL_S = 0.5
ADMIN_TIMEOUT_S = 5
ADMIN_TIMEOUT_MS = 5_000
FAILURES_BEFORE_REBUILD = 3
THREAD_JOIN_TIMEOUT_S = 90  # more than FLUSH_TIMEOUT_S: the producer flushes as it stops
SCAN_IDLE_S = 5  # the final scan gives up on a partition that sends nothing for this long
SCAN_TIMEOUT_S = 60


def value_of(partition: int, seq: int) -> bytes:
    return f"p{partition:02d}-{seq:07d}".encode()


def seq_of(value: bytes) -> int:
    return int(value.split(b"-")[1])


@dataclass(frozen=True)
class Ack:
    seq: int
    offset: int | None  # None: persisted, the client does not know where
    enqueued_at: float
    acked_at: float


@dataclass(frozen=True)
class Sighting:
    """A record a consumer read: what, in which leader epoch (None: the client does not say)."""

    value: bytes
    leader_epoch: int | None
    reader: str


@dataclass(frozen=True)
class Commit:
    """A member's commit after a batch: the next offsets of the partitions the batch read."""

    at: float
    reader: str
    offsets: dict[int, int]
    ok: bool


@dataclass(frozen=True)
class Cut:
    """A member fetched at `fetched` and was told the log ends before it (OFFSET_OUT_OF_RANGE),
    then found its end at `new_end`: what it had read in [new_end, fetched) was cut."""

    at: float
    reader: str
    partition: int
    new_end: int
    fetched: int


def next_offsets(read: list[tuple[int, int]]) -> dict[int, int]:
    """partition -> the offset after the last one read, from (partition, offset) pairs."""
    after: dict[int, int] = {}
    for partition, offset in read:
        after[partition] = max(after.get(partition, 0), offset + 1)
    return after


class Stoppable(threading.Thread):
    """A daemon thread running `step` until stopped; an exception ends it and is kept."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.stopping = threading.Event()
        self.failure: BaseException | None = None

    def stop(self) -> None:
        self.stopping.set()
        self.join(THREAD_JOIN_TIMEOUT_S)
        if self.is_alive():
            raise AssertionError(f"{self.name} did not stop within {THREAD_JOIN_TIMEOUT_S} s")
        if self.failure is not None:
            raise AssertionError(f"{self.name} failed: {self.failure!r}") from self.failure

    def run(self) -> None:
        try:
            self.body()
        except BaseException as error:
            self.failure = error

    def body(self) -> None:
        raise NotImplementedError


class SequencedProducer(Stoppable):
    """Writes value_of(p, seq) to every partition in turn, seq counting per partition, and
    keeps every acknowledgement (offset, when the record was handed to the client, when
    acked) and every delivery failure."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__("phase17-producer")
        self.bootstrap = bootstrap
        self.lock = threading.Lock()
        self.acks: dict[int, list[Ack]] = defaultdict(list)
        self.failures: list[tuple[int, int, str]] = []
        self.sent = 0
        self.unflushed = 0

    def body(self) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "request.timeout.ms": PRODUCER_REQUEST_TIMEOUT_MS,
                "message.timeout.ms": DELIVERY_TIMEOUT_MS,
                "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS,
            }
        )
        seq = 0
        next_round = time.monotonic()
        while not self.stopping.is_set() and self.sent < RECORDS_MAX:
            for partition in range(PARTITIONS):
                self._send(producer, partition, seq)
            seq += 1
            next_round += ROUND_INTERVAL_S
            while (left_s := next_round - time.monotonic()) > 0:  # serves acks meanwhile
                producer.poll(left_s)
        self.unflushed = producer.flush(FLUSH_TIMEOUT_S)

    def _send(self, producer: Producer, partition: int, seq: int) -> None:
        enqueued_at = time.monotonic()

        def delivered(error: Any, message: Any) -> None:
            self._delivered(partition, seq, enqueued_at, error, message)

        while True:
            try:
                producer.produce(TOPIC, value_of(partition, seq), None, partition, delivered)
                break
            except BufferError:
                producer.poll(POLL_S)
        self.sent += 1

    def _delivered(
        self, partition: int, seq: int, enqueued_at: float, error: Any, message: Any
    ) -> None:
        with self.lock:
            if error is not None:
                self.failures.append((partition, seq, str(error)))
            else:
                ack = Ack(seq, message.offset(), enqueued_at, time.monotonic())
                self.acks[partition].append(ack)

    def acked_counts(self) -> dict[int, int]:
        with self.lock:
            return {p: len(self.acks[p]) for p in range(PARTITIONS)}

    def first_ack_after(self, partitions: set[int], since: float) -> float | None:
        """When the first record handed over after `since` was acked on one of `partitions`."""
        with self.lock:
            times = [
                ack.acked_at
                for p in partitions
                for ack in reversed(self.acks[p])
                if ack.enqueued_at > since
            ]
        return min(times, default=None)


class GroupReads:
    """Everything the group's members read and how their commits went, shared by them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sightings: dict[tuple[int, int], set[Sighting]] = defaultdict(set)
        self.commits: list[Commit] = []
        self.assignments: list[tuple[float, str, tuple[int, ...]]] = []
        self.cuts: list[Cut] = []

    def saw(
        self, reader: str, partition: int, offset: int, value: bytes, epoch: int | None
    ) -> None:
        with self.lock:
            self.sightings[(partition, offset)].add(Sighting(value, epoch, reader))

    def assigned(self, reader: str, partitions: list[int]) -> None:
        with self.lock:
            self.assignments.append((time.monotonic(), reader, tuple(sorted(partitions))))

    def cut(self, reader: str, partition: int, new_end: int, fetched: int) -> None:
        with self.lock:
            self.cuts.append(Cut(time.monotonic(), reader, partition, new_end, fetched))

    def committed(self, reader: str, offsets: dict[int, int], ok: bool) -> None:
        with self.lock:
            self.commits.append(Commit(time.monotonic(), reader, offsets, ok))


class ConfluentMember(Stoppable):
    """A confluent-kafka member of GROUP: reads, notes each record's leader epoch, commits."""

    def __init__(self, bootstrap: str, reads: GroupReads) -> None:
        super().__init__("phase17-confluent-member")
        self.bootstrap = bootstrap
        self.reads = reads

    def body(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": GROUP,
                "client.id": self.name,
                "partition.assignment.strategy": "range",
                "enable.auto.commit": False,
                "auto.offset.reset": "latest",
                "session.timeout.ms": SESSION_TIMEOUT_MS,
                "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
                "socket.timeout.ms": CLIENT_REQUEST_TIMEOUT_MS,
                "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS,
            }
        )
        consumer.subscribe([TOPIC], on_assign=self._on_assign)
        try:
            while not self.stopping.is_set():
                self._read_and_commit(consumer)
        finally:
            consumer.close()

    def _on_assign(self, _consumer: Consumer, assigned: list[TopicPartition]) -> None:
        self.reads.assigned(self.name, [tp.partition for tp in assigned])

    def _read_and_commit(self, consumer: Consumer) -> None:
        messages = [m for m in consumer.consume(BATCH_RECORDS_MAX, POLL_S) if m.error() is None]
        for m in messages:
            self.reads.saw(self.name, m.partition(), m.offset(), m.value(), m.leader_epoch())
        if not messages:
            return
        offsets = next_offsets([(m.partition(), m.offset()) for m in messages])
        try:
            consumer.commit(asynchronous=False)
            self.reads.committed(self.name, offsets, ok=True)
        except KafkaException:
            self.reads.committed(self.name, offsets, ok=False)


class AiokafkaMember(Stoppable):
    """An aiokafka member of GROUP on its own event loop: reads, commits after each batch.
    aiokafka does not say a record's leader epoch, so the member resets its own position
    (auto_offset_reset="none") to see, and note, when a fetch finds the log cut below it."""

    def __init__(self, bootstrap: str, reads: GroupReads) -> None:
        super().__init__("phase17-aiokafka-member")
        self.bootstrap = bootstrap
        self.reads = reads

    def body(self) -> None:
        asyncio.run(self._consume())

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=GROUP,
            client_id=self.name,
            partition_assignment_strategy=(RangePartitionAssignor,),
            enable_auto_commit=False,
            auto_offset_reset="none",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            request_timeout_ms=CLIENT_REQUEST_TIMEOUT_MS + SESSION_TIMEOUT_MS,
            metadata_max_age_ms=METADATA_REFRESH_MS,
        )
        await consumer.start()
        consumer.subscribe([TOPIC], listener=_Assignments(self.name, self.reads))
        try:
            while not self.stopping.is_set():
                await self._read_and_commit(consumer)
        finally:
            await consumer.stop()

    async def _read_and_commit(self, consumer: AIOKafkaConsumer) -> None:
        try:
            batches = await consumer.getmany(
                timeout_ms=int(POLL_S * 1000), max_records=BATCH_RECORDS_MAX
            )
        except OffsetOutOfRangeError as error:
            for tp, fetched in error.args[0].items():
                new_end = await _to_end(consumer, tp)
                if new_end is not None:
                    self.reads.cut(self.name, tp.partition, new_end, fetched)
            return
        except NoOffsetForPartitionError as error:  # nothing committed yet: from the end
            await _to_end(consumer, error.args[0])
            return
        for tp, records in batches.items():
            for record in records:
                self.reads.saw(self.name, tp.partition, record.offset, record.value, None)
        if not batches:
            return
        read = [(tp.partition, r.offset) for tp, records in batches.items() for r in records]
        try:
            await consumer.commit()
            self.reads.committed(self.name, next_offsets(read), ok=True)
        except AioKafkaError:
            self.reads.committed(self.name, next_offsets(read), ok=False)


async def _to_end(consumer: AIOKafkaConsumer, tp: Any) -> int | None:
    """Move to the partition's end (what auto_offset_reset="latest" does); its offset, or None
    if the partition was revoked meanwhile or the end could not be read in time."""
    try:
        await asyncio.wait_for(consumer.seek_to_end(tp), SEEK_TIMEOUT_S)
        position: int = await asyncio.wait_for(consumer.position(tp), SEEK_TIMEOUT_S)
    except (IllegalStateError, TimeoutError):
        return None
    return position


class _Assignments(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, reader: str, reads: GroupReads) -> None:
        self.reader = reader
        self.reads = reads

    def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.reads.assigned(self.reader, [tp.partition for tp in assigned])


class OffsetSampler(Stoppable):
    """Reads GROUP's committed offsets every SAMPLE_INTERVAL_S through the admin API; keeps
    each answer (failed ones are counted: the coordinator moves during the run). kafka-python's
    admin client, rebuilt on the agents live then (`bootstrap()`) after FAILURES_BEFORE_REBUILD
    failures in a row, since it keeps asking an agent that left; librdkafka 2.16's admin client
    aborts the process (an enq_once refcount assertion) when its OffsetFetch times out waiting
    for a killed coordinator."""

    def __init__(self, bootstrap: Callable[[], str]) -> None:
        super().__init__("phase17-offset-sampler")
        self.bootstrap = bootstrap
        self.samples: list[tuple[float, dict[int, int]]] = []
        self.failed = 0
        self.last_error = ""

    def body(self) -> None:
        admin: KafkaAdminClient | None = None
        failures_in_a_row = 0
        while not self.stopping.wait(SAMPLE_INTERVAL_S):
            if admin is None or failures_in_a_row >= FAILURES_BEFORE_REBUILD:
                _close(admin)
                admin, failures_in_a_row = None, 0
            try:
                admin = admin or self._admin()
                self._sample(admin)
                failures_in_a_row = 0
            except KafkaPythonError as error:
                self.failed += 1
                self.last_error = repr(error)
                failures_in_a_row += 1
        _close(admin)

    def _admin(self) -> KafkaAdminClient:
        servers = self.bootstrap().split(",")
        return KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=ADMIN_TIMEOUT_MS)

    def _sample(self, admin: KafkaAdminClient) -> None:
        answer = admin.list_group_offsets(GROUP)[GROUP]
        offsets = {tp.partition: meta.offset for tp, meta in answer.items() if meta.offset >= 0}
        self.samples.append((time.monotonic(), offsets))

    def latest(self) -> dict[int, int]:
        return self.samples[-1][1] if self.samples else {}


def _close(admin: KafkaAdminClient | None) -> None:
    if admin is not None:
        admin.close()


@dataclass
class Scanned:
    """One partition read from the beginning by a fresh consumer: (offset, value, epoch) in the
    order delivered. An offset delivered again with the same value (the client fetching a range
    again) is kept once and counted; one delivered again with another value is kept, for the
    verdict to see."""

    records: list[tuple[int, bytes, int | None]] = field(default_factory=list)
    redelivered: int = 0
    _values: dict[int, bytes] = field(default_factory=dict)

    def add(self, offset: int, value: bytes, epoch: int | None) -> None:
        if self._values.get(offset) == value:
            self.redelivered += 1
            return
        self._values.setdefault(offset, value)
        self.records.append((offset, value, epoch))

    def next_offset(self) -> int:
        return max(self._values, default=-1) + 1


def final_scan(bootstrap: str, end_offsets: dict[int, int]) -> dict[int, Scanned]:
    """Every partition from its first offset up to `end_offsets` (exclusive), by a consumer
    in no group. Stops early once nothing came for SCAN_IDLE_S (the verdict then finds what
    is missing)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "phase17-scan", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    scanned = {p: Scanned() for p in range(PARTITIONS)}
    deadline = time.monotonic() + SCAN_TIMEOUT_S
    last_read = time.monotonic()
    try:
        while time.monotonic() < min(deadline, last_read + SCAN_IDLE_S):
            if all(scanned[p].next_offset() >= end for p, end in end_offsets.items()):
                break
            for m in consumer.consume(BATCH_RECORDS_MAX, POLL_S):
                if m.error() is None:
                    scanned[m.partition()].add(m.offset(), m.value(), m.leader_epoch())
                    last_read = time.monotonic()
    finally:
        consumer.close()
    return scanned


def high_watermarks(bootstrap: str) -> dict[int, int]:
    """partition -> high watermark, as the partition leaders answer."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "phase17-watermarks"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(TOPIC, p), ADMIN_TIMEOUT_S)[1]
            for p in range(PARTITIONS)
        }
    finally:
        consumer.close()
