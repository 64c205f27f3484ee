"""The load's Kafka clients: producers that record send -> ack latency per ack mode, and
consumers (assigned partitions, no group) that record send-intended -> receipt latency and check
each partition's records arrive exactly once, in order. Records carry their own sequence number
and intended send time, so nothing but the payload is needed to check them."""

from __future__ import annotations

import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from hdrh.histogram import HdrHistogram

HEADER = struct.Struct(">qqq")  # sequence in its partition, intended send ns, produce() call ns
RECORD_BYTES_MIN = HEADER.size
LATENCY_LOWEST_US = 1
LATENCY_HIGHEST_US = 60_000_000  # 60 s; slower is recorded as 60 s
LATENCY_DIGITS = 3
NS_PER_US = 1_000
NS_PER_S = 1_000_000_000
US_PER_S = 1_000_000
POLL_TIMEOUT_S = 0.1
CONSUME_BATCH = 500
LINGER_MS = 5
FETCH_WAIT_MAX_MS = (
    500  # the longest a fetch waits for FETCH_MIN_BYTES: bounds e2e latency when idle
)
FETCH_MIN_BYTES = 1_048_576  # few large fetches: each names every assigned partition
LIBRDKAFKA_LOG_LEVEL = 4  # warnings and worse
ACK_MODES = ("1", "all")
WARMUP_SEQUENCE = -1  # the one record per partition written before the load: not measured


class Latency:
    """One HDR histogram (1 us .. 60 s, 3 significant digits), recorded into by many threads."""

    def __init__(self) -> None:
        self.histogram = HdrHistogram(LATENCY_LOWEST_US, LATENCY_HIGHEST_US, LATENCY_DIGITS)
        self._lock = threading.Lock()  # record_value is a read-modify-write in Python

    def record_us(self, values_us: list[int]) -> None:
        clamped = [min(max(v, LATENCY_LOWEST_US), LATENCY_HIGHEST_US) for v in values_us]
        with self._lock:
            for value in clamped:
                self.histogram.record_value(value)


def encode(sequence: int, intended_ns: int, record_bytes: int) -> bytes:
    header = HEADER.pack(sequence, intended_ns, time.monotonic_ns())
    return header + b"x" * (record_bytes - RECORD_BYTES_MIN)


@dataclass
class Tally:
    """Counts shared by the clients; each partition is written by one producer thread and one
    consumer thread only, so per-partition lists need no lock."""

    partitions: int
    sent: list[int] = field(init=False)
    acked: list[int] = field(init=False)
    consumed: list[int] = field(init=False)
    next_expected: list[int] = field(init=False)
    anomalies: Counter[str] = field(default_factory=Counter)  # gaps, duplicates, reordering
    errors: Counter[str] = field(default_factory=Counter)
    warmup_consumed: list[bool] = field(init=False)
    slowest_us_by_second: dict[int, int] = field(default_factory=dict)  # of intended send time
    measured_from_ns: int = 0  # records due earlier are checked, not put in the histograms
    _errors_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.sent = [0] * self.partitions
        self.acked = [0] * self.partitions
        self.consumed = [0] * self.partitions
        self.next_expected = [0] * self.partitions
        self.warmup_consumed = [False] * self.partitions

    def note_produce(self, intended_ns: int, latency_us: int) -> None:
        """Keep the slowest produce latency of each second (a stall shows when it happened)."""
        second = intended_ns // NS_PER_S
        with self._errors_lock:
            if latency_us > self.slowest_us_by_second.get(second, 0):
                self.slowest_us_by_second[second] = latency_us

    def error(self, what: str) -> None:
        with self._errors_lock:
            self.errors[what] += 1

    def anomaly(self, what: str) -> None:
        with self._errors_lock:
            self.anomalies[what] += 1

    def check_arrival(self, partition: int, sequence: int) -> None:
        if sequence == WARMUP_SEQUENCE:
            self.warmup_consumed[partition] = True
            return
        expected = self.next_expected[partition]
        if sequence == expected:
            self.next_expected[partition] = expected + 1
            self.consumed[partition] += 1
        elif sequence > expected:
            self.anomaly("gap")  # records skipped: a later arrival of them counts as reordered
            self.next_expected[partition] = sequence + 1
            self.consumed[partition] += 1
        else:
            self.anomaly("duplicate_or_reordered")

    def missing(self) -> int:
        """Acked records no consumer received (after the drain)."""
        return sum(max(0, a - c) for a, c in zip(self.acked, self.consumed, strict=True))


class LoadProducer:
    """One producer client with a thread serving its delivery reports."""

    def __init__(self, bootstrap: str, acks: str, latency: Latency, tally: Tally) -> None:
        self.acks = acks
        self._latency = latency
        self._tally = tally
        self.client = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": acks,
                "linger.ms": LINGER_MS,
                "on_delivery": self._delivered,
                "log_level": LIBRDKAFKA_LOG_LEVEL,
            }
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"producer-{acks}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self.client.poll(POLL_TIMEOUT_S)

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._tally.error(f"delivery acks={self.acks}: {error.name()}")
            return
        sequence, intended_ns, called_ns = HEADER.unpack_from(message.value() or b"")
        if sequence == WARMUP_SEQUENCE:
            return
        # late start (open-loop pacing: the wait before produce() counts) + librdkafka's own
        # produce() -> ack time, which does not include this thread's wait for the GIL
        late_us = (called_ns - intended_ns) // NS_PER_US
        latency_us = late_us + int((message.latency() or 0.0) * US_PER_S)
        if intended_ns >= self._tally.measured_from_ns:
            self._latency.record_us([latency_us])
        self._tally.note_produce(intended_ns, latency_us)
        self._tally.acked[message.partition() or 0] += 1

    def warm_up(self, topic: str, partitions: list[int], timeout_s: float) -> int:
        """Write one unmeasured record to each of `partitions` and wait for the acks; returns
        how many are unacknowledged after `timeout_s`. A partition's first write takes its lease
        (a new leader epoch, which would fence consumers' position lookups made before it), and
        a connection's first write to a partition is slow on the agent (see the report): both
        are paid here, before consumers start and latencies count."""
        for partition in partitions:
            self.client.produce(topic, HEADER.pack(WARMUP_SEQUENCE, 0, 0), partition=partition)
        return self.flush(timeout_s)

    def flush(self, timeout_s: float) -> int:
        """Wait for outstanding records; returns how many are still unacknowledged."""
        return int(self.client.flush(max(timeout_s, 0.0)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class LoadConsumer:
    """One consumer client reading its assigned partitions from the beginning, on a thread."""

    def __init__(
        self, bootstrap: str, topic: str, partitions: list[int], latency: Latency, tally: Tally
    ) -> None:
        self._latency = latency
        self._tally = tally
        self.client = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"load-{topic}",  # never joined: partitions are assigned
                "enable.auto.commit": False,
                "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
                "fetch.min.bytes": FETCH_MIN_BYTES,
                "log_level": LIBRDKAFKA_LOG_LEVEL,
            }
        )
        self.client.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="consumer", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            messages = self.client.consume(CONSUME_BATCH, POLL_TIMEOUT_S)
            received_ns = time.monotonic_ns()
            latencies = []
            for message in messages:
                error = message.error()
                if error is not None:
                    self._tally.error(f"consume: {error.name()}")
                    continue
                sequence, intended_ns, _ = HEADER.unpack_from(message.value() or b"")
                self._tally.check_arrival(message.partition() or 0, sequence)
                if sequence == WARMUP_SEQUENCE or intended_ns < self._tally.measured_from_ns:
                    continue
                latencies.append((received_ns - intended_ns) // NS_PER_US)
            if latencies:
                self._latency.record_us(latencies)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()
