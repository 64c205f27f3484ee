"""What clients saw, indexed for the checkers: sightings per offset, acks, faults, watermarks."""

from __future__ import annotations

import bisect
import weakref
from collections import defaultdict
from dataclasses import dataclass

from sim.history import (
    FAULT_DISK_LOSS,
    FAULT_LEASE_FENCED,
    Event,
    FaultInjected,
    FetchObserved,
    History,
    ObservedRecord,
    ProduceAcked,
    ProduceAttempt,
    ProduceFailed,
    TopicCreated,
    TxnEnded,
)

LIVENESS = "liveness"
SHOW_BYTES_MAX = 24

TP = tuple[str, int]
# What sits at an offset: (control kind or None, key, value).
Content = tuple[str | None, bytes | None, bytes | None]


@dataclass(frozen=True)
class Violation:
    """A broken promise: which checker, what a human should look at, the events involved."""

    checker: str
    message: str
    events: tuple[Event, ...] = ()


@dataclass(frozen=True)
class Sighting:
    """One observation of what sits at an offset: from a fetch or from an ack."""

    content: Content
    leader_epoch: int | None
    at_us: int
    event: Event


class HistoryIndex:
    """Lookups over one history that several checkers share."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.attempts: dict[int, ProduceAttempt] = {}
        self.acks: dict[int, ProduceAcked] = {}
        self.failures: dict[int, ProduceFailed] = {}
        self.by_content: dict[tuple[str, int, bytes | None, bytes | None], ProduceAttempt] = {}
        self.txn_ends: dict[int, TxnEnded] = {}
        self.compacted: set[str] = set()
        self.transactional: set[TP] = set()
        self.faults: list[FaultInjected] = []
        self.fetches: list[FetchObserved] = []
        self.sightings: dict[TP, dict[int, list[Sighting]]] = defaultdict(dict)
        for event in history:
            self._add(event)
        self.known_offsets = {tp: sorted(found) for tp, found in self.sightings.items()}
        self.fault_times_us = sorted(fault.at_us for fault in self.faults)
        self.truncations = sorted(
            (f for f in self.faults if f.kind in (FAULT_DISK_LOSS, FAULT_LEASE_FENCED)),
            key=lambda fault: fault.at_us,
        )
        self.truncation_times_us = [fault.at_us for fault in self.truncations]
        self.marks = _HighWatermarks(self.fetches)

    def _add(self, event: Event) -> None:
        if isinstance(event, ProduceAttempt):
            self.attempts.setdefault(event.op, event)
            key = (event.topic, event.partition, event.key, event.value)
            self.by_content.setdefault(key, event)
            if event.txn is not None:
                self.transactional.add((event.topic, event.partition))
        elif isinstance(event, ProduceAcked):
            self.acks.setdefault(event.op, event)
            attempt = self.attempts.get(event.op)
            if attempt is not None and event.offset >= 0:
                content: Content = (None, attempt.key, attempt.value)
                where = (attempt.topic, attempt.partition, event.offset)
                self._sight(*where, content, event.leader_epoch, event)
        elif isinstance(event, ProduceFailed):
            self.failures.setdefault(event.op, event)
        elif isinstance(event, FetchObserved):
            self.fetches.append(event)
            for record in event.records:
                where = (event.topic, event.partition, record.offset)
                self._sight(*where, content_of(record), record.leader_epoch, event)
        elif isinstance(event, TxnEnded):
            self.txn_ends[event.txn] = event
        elif isinstance(event, TopicCreated) and event.compacted:
            self.compacted.add(event.topic)
        elif isinstance(event, FaultInjected):
            self.faults.append(event)

    def _sight(
        self,
        topic: str,
        partition: int,
        offset: int,
        content: Content,
        epoch: int | None,
        event: ProduceAcked | FetchObserved,
    ) -> None:
        sighting = Sighting(content, epoch, event.at_us, event)
        self.sightings[(topic, partition)].setdefault(offset, []).append(sighting)

    def op_of(self, topic: str, partition: int, record: ObservedRecord) -> ProduceAttempt | None:
        if record.control is not None:
            return None
        return self.by_content.get((topic, partition, record.key, record.value))

    def truncation_fault(self, topic: str, partition: int, before_us: int) -> FaultInjected | None:
        """A disk loss or fenced lease (on this partition, if narrowed) at or before a time."""
        for fault in self.faults:
            if (
                fault.kind in (FAULT_DISK_LOSS, FAULT_LEASE_FENCED)
                and fault.at_us <= before_us
                and fault_covers(fault, topic, partition)
            ):
                return fault
        return None

    def truncation_between(self, topic: str, partition: int, low_us: int, high_us: int) -> bool:
        """Whether a disk loss or fenced lease (covering the partition) fell in [low, high]."""
        first = bisect.bisect_left(self.truncation_times_us, low_us)
        last = bisect.bisect_right(self.truncation_times_us, high_us)
        return any(fault_covers(fault, topic, partition) for fault in self.truncations[first:last])

    def txn_visible(self, attempt: ProduceAttempt) -> bool | None:
        """Whether a transactional record is committed: True, False (aborted), None (unknown)."""
        if attempt.txn is None:
            return True
        end = self.txn_ends.get(attempt.txn)
        return None if end is None else end.committed


class _HighWatermarks:
    """Per partition, fetches that reported a high watermark, by request time."""

    def __init__(self, fetches: list[FetchObserved]) -> None:
        per_tp: dict[TP, list[FetchObserved]] = defaultdict(list)
        for fetch in fetches:
            if fetch.high_watermark is not None:
                per_tp[(fetch.topic, fetch.partition)].append(fetch)
        self._fetches: dict[TP, list[FetchObserved]] = {}
        self._requested: dict[TP, list[int]] = {}
        self._lowest_after: dict[TP, list[int]] = {}
        for tp, found in per_tp.items():
            found.sort(key=lambda fetch: fetch.requested_us)
            lowest: list[int] = []
            for fetch in reversed(found):
                mark = fetch.high_watermark
                assert mark is not None
                lowest.append(min(mark, lowest[-1]) if lowest else mark)
            self._fetches[tp] = found
            self._requested[tp] = [fetch.requested_us for fetch in found]
            self._lowest_after[tp] = lowest[::-1]

    def first_at_or_below(
        self, tp: TP, offset: int, after_us: int, epoch: int | None
    ) -> FetchObserved | None:
        """The earliest fetch requested after `after_us` that told a high watermark <= `offset`,
        in leader epoch `epoch` or later (an older epoch's answer is a stale view, not a loss)."""
        if tp not in self._fetches:
            return None
        start = bisect.bisect_right(self._requested[tp], after_us)
        if start == len(self._fetches[tp]) or self._lowest_after[tp][start] > offset:
            return None
        for fetch in self._fetches[tp][start:]:
            assert fetch.high_watermark is not None
            stale = (
                epoch is not None and fetch.leader_epoch is not None and fetch.leader_epoch < epoch
            )
            if fetch.high_watermark <= offset and not stale:
                return fetch
        return None


_INDEXES: weakref.WeakKeyDictionary[History, tuple[int, HistoryIndex]] = weakref.WeakKeyDictionary()


def index_history(history: History) -> HistoryIndex:
    """The index of `history` as it is now, shared by the checkers run over it."""
    cached = _INDEXES.get(history)
    if cached is None or cached[0] != len(history):
        cached = (len(history), HistoryIndex(history))
        _INDEXES[history] = cached
    return cached[1]


def content_of(record: ObservedRecord) -> Content:
    if record.control is not None:
        return (record.control, None, None)
    return (None, record.key, record.value)


def fault_covers(fault: FaultInjected, topic: str, partition: int) -> bool:
    return (fault.topic is None or fault.topic == topic) and (
        fault.partition is None or fault.partition == partition
    )


def show(content: Content) -> str:
    control, key, value = content
    if control is not None:
        return f"<{control} marker>"
    return f"key={_bytes(key)} value={_bytes(value)}"


def _bytes(data: bytes | None) -> str:
    if data is None:
        return "null"
    if len(data) <= SHOW_BYTES_MAX:
        return repr(data)
    return f"{data[:SHOW_BYTES_MAX]!r}...({len(data)} bytes)"


def place_of(topic: str, partition: int, offset: int | None = None) -> str:
    return f"{topic}/{partition}" + ("" if offset is None else f"@{offset}")


# -- history -----------------------------------------------------------------
