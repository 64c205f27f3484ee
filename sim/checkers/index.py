"""What clients saw, indexed for the checkers: sightings per offset, acks, faults, watermarks."""

from __future__ import annotations

import bisect
import weakref
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from sim.history import (
    FAULT_DISK_LOSS,
    FAULT_LEASE_FENCED,
    FAULT_METADATA_WIPE,
    Event,
    FaultInjected,
    FetchFailed,
    FetchObserved,
    History,
    ObjectDamaged,
    ObservedRecord,
    ProduceAcked,
    ProduceAttempt,
    ProduceFailed,
    ScanCompleted,
    TopicCreated,
    TxnEnded,
)

LIVENESS = "liveness"
SHOW_BYTES_MAX = 24
# who resets committed offsets when the metadata store is wiped (sim.disaster)
WIPE_CLIENT = "metadata-wipe"
# faults after which an offset may hold other data than before (unreplicated data lost)
TRUNCATIONS = (FAULT_DISK_LOSS, FAULT_LEASE_FENCED, FAULT_METADATA_WIPE)

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
        self.answers_by_reader: dict[tuple[str, str, int], list[FetchObserved | FetchFailed]] = {}
        self.scans: list[ScanCompleted] = []
        self.damaged: list[ObjectDamaged] = []
        self.sightings: dict[TP, dict[int, list[Sighting]]] = defaultdict(dict)
        for event in history:
            self._add(event)
        self.ack_epochs = {op: e for op, e in self._derived_ack_epochs() if e is not None}
        for op, ack in self.acks.items():
            attempt = self.attempts.get(op)
            if attempt is not None and ack.offset >= 0:
                content: Content = (None, attempt.key, attempt.value)
                where = (attempt.topic, attempt.partition, ack.offset)
                self._sight(*where, content, self.ack_epochs.get(op), ack)
        for offsets in self.sightings.values():
            for sightings in offsets.values():
                sightings.sort(key=lambda sighting: sighting.at_us)
        self.known_offsets = {tp: sorted(found) for tp, found in self.sightings.items()}
        # per partition, the highest offset each key was seen at (compaction's witness)
        self.key_offsets_max: dict[TP, dict[bytes, int]] = defaultdict(dict)
        for tp, offsets in self.sightings.items():
            latest = self.key_offsets_max[tp]
            for offset, sightings in offsets.items():
                for sighting in sightings:
                    key = sighting.content[1]
                    if key is not None and offset > latest.get(key, -1):
                        latest[key] = offset
        self.fault_times_us = sorted(fault.at_us for fault in self.faults)
        self.truncations = sorted(
            (f for f in self.faults if f.kind in TRUNCATIONS),
            key=lambda fault: fault.at_us,
        )
        self.truncation_times_us = [fault.at_us for fault in self.truncations]
        self.marks = _HighWatermarks(self.fetches)
        self._fault_times_by_agent: dict[tuple[str, int, str], list[int]] = {}
        self._answer_epochs = self._epochs_by_answerer()

    def _add(self, event: Event) -> None:
        if isinstance(event, ProduceAttempt):
            self.attempts.setdefault(event.op, event)
            key = (event.topic, event.partition, event.key, event.value)
            self.by_content.setdefault(key, event)
            if event.txn is not None:
                self.transactional.add((event.topic, event.partition))
        elif isinstance(event, ProduceAcked):
            self.acks.setdefault(event.op, event)
        elif isinstance(event, ProduceFailed):
            self.failures.setdefault(event.op, event)
        elif isinstance(event, FetchObserved | FetchFailed):
            reader = (event.client, event.topic, event.partition)
            self.answers_by_reader.setdefault(reader, []).append(event)
        if isinstance(event, FetchObserved):
            self.fetches.append(event)
            for record in event.records:
                where = (event.topic, event.partition, record.offset)
                self._sight(*where, content_of(record), record.leader_epoch, event)
        elif isinstance(event, ScanCompleted):
            self.scans.append(event)
        elif isinstance(event, TxnEnded):
            self.txn_ends[event.txn] = event
        elif isinstance(event, TopicCreated) and event.compacted:
            self.compacted.add(event.topic)
        elif isinstance(event, FaultInjected):
            self.faults.append(event)
        elif isinstance(event, ObjectDamaged):
            self.damaged.append(event)

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

    def _derived_ack_epochs(self) -> Iterator[tuple[int, int | None]]:
        """The leader epoch of each ack: as the client was told, else the batch epoch of a
        read of the acked record itself at its offset (the leader stamps its epoch on the
        batch it appends; a record is unique, so that batch is the acked one; if a retry
        wrote it there again in a later epoch, the latest)."""
        for op, ack in self.acks.items():
            attempt = self.attempts.get(op)
            if ack.leader_epoch is not None or attempt is None:
                yield op, ack.leader_epoch
                continue
            mine: Content = (None, attempt.key, attempt.value)
            read = self.sightings[(attempt.topic, attempt.partition)].get(ack.offset, [])
            epochs = [s.leader_epoch for s in read if s.content == mine]
            yield op, max((epoch for epoch in epochs if epoch is not None), default=None)

    def answerer(self, fetch: FetchObserved | FetchFailed) -> tuple[str, int, str, int] | None:
        """Which agent answered `fetch`, and in which of its spans without a fault that may
        change its epoch for the partition (a fault on it, a lease of the partition moving,
        a fault on every agent), or None if unknown or such a fault fell while it was asked."""
        if fetch.agent is None:
            return None
        times = self._epoch_fault_times(fetch.topic, fetch.partition, fetch.agent)
        before = bisect.bisect_right(times, fetch.requested_us)
        if bisect.bisect_right(times, fetch.at_us) != before:
            return None
        return (fetch.topic, fetch.partition, fetch.agent, before)

    def _epoch_fault_times(self, topic: str, partition: int, agent: str) -> list[int]:
        key = (topic, partition, agent)
        if key not in self._fault_times_by_agent:
            self._fault_times_by_agent[key] = [
                fault.at_us
                for fault in self.faults
                if fault.agent in (agent, "*")
                or (fault.kind == FAULT_LEASE_FENCED and fault_covers(fault, topic, partition))
            ]
        return self._fault_times_by_agent[key]

    def _epochs_by_answerer(self) -> dict[tuple[str, int, str, int], int]:
        epochs: dict[tuple[str, int, str, int], int] = {}
        for fetch in self.fetches:
            answerer, epoch = self.answerer(fetch), response_epoch(fetch)
            if answerer is not None and epoch is not None:
                epochs[answerer] = max(epoch, epochs.get(answerer, epoch))
        for answerer, epoch in self._epochs_taken():
            epochs[answerer] = max(epoch, epochs.get(answerer, epoch))
        return epochs

    def _epochs_taken(self) -> Iterator[tuple[tuple[str, int, str, int], int]]:
        """The span of an agent that begins where it took a fenced lease, and the epoch it
        took it in: everything it answers for the partition in that span is in that epoch
        or a later one (its epochs only grow)."""
        for fault in self.faults:
            if fault.kind != FAULT_LEASE_FENCED or fault.next_epoch is None:
                continue
            if fault.topic is None or fault.partition is None or fault.next_agent is None:
                continue
            times = self._epoch_fault_times(fault.topic, fault.partition, fault.next_agent)
            span = bisect.bisect_right(times, fault.at_us)
            yield (fault.topic, fault.partition, fault.next_agent, span), fault.next_epoch

    def answer_epoch(self, fetch: FetchObserved | FetchFailed) -> int | None:
        """The leader epoch `fetch` was answered in, or a lower bound of it: its own
        (`response_epoch`), or the highest batch epoch the same agent served for the
        partition in the same span (`answerer`): an agent's epoch changes only at a
        fault the simulator records (its lease moving, its restart, its disk lost)."""
        answerer = self.answerer(fetch)
        epochs = [response_epoch(fetch) if isinstance(fetch, FetchObserved) else None]
        if answerer is not None:
            epochs.append(self._answer_epochs.get(answerer))
        return max((epoch for epoch in epochs if epoch is not None), default=None)

    def ack_epoch_floor(self, op: int) -> int | None:
        """When the epoch of an ack is not known, a lower bound of it: the highest epoch its
        agent was seen holding for the partition by the time it acked (the known epochs of
        its earlier acks, the epochs it answered fetches in); an agent's epochs only grow."""
        ack, attempt = self.acks[op], self.attempts[op]
        if ack.agent is None:
            return None
        epochs = [
            self.ack_epochs.get(other)
            for other, earlier in self.acks.items()
            if earlier.agent == ack.agent
            and earlier.at_us <= ack.at_us
            and self._same_partition(other, attempt)
        ]
        epochs += [
            self.answer_epoch(fetch)
            for fetch in self.fetches
            if fetch.agent == ack.agent
            and (fetch.topic, fetch.partition) == (attempt.topic, attempt.partition)
            and fetch.at_us <= ack.at_us
        ]
        return max((epoch for epoch in epochs if epoch is not None), default=None)

    def _same_partition(self, op: int, attempt: ProduceAttempt) -> bool:
        other = self.attempts.get(op)
        where = (attempt.topic, attempt.partition)
        return other is not None and (other.topic, other.partition) == where

    def op_of(self, topic: str, partition: int, record: ObservedRecord) -> ProduceAttempt | None:
        if record.control is not None:
            return None
        return self.by_content.get((topic, partition, record.key, record.value))

    def damage_at(
        self, topic: str, partition: int, offset: int, before_us: int
    ) -> ObjectDamaged | None:
        """The simulator's damage to an object holding `offset` of the partition, at or
        before a time: reads there may fail from then on."""
        for damage in self.damaged:
            if damage.at_us <= before_us and any(
                (span.topic, span.partition) == (topic, partition)
                and span.first_offset <= offset <= span.last_offset
                for span in damage.spans
            ):
                return damage
        return None

    def superseded(self, topic: str, partition: int, offset: int, key: bytes | None) -> bool:
        """Whether compaction may have removed the record of `key` at `offset` of a compacted
        topic: a later record of the same key was seen (read or acked) in the partition."""
        if topic not in self.compacted or key is None:
            return False
        return self.key_offsets_max[(topic, partition)].get(key, -1) > offset

    def truncation_fault(self, topic: str, partition: int, before_us: int) -> FaultInjected | None:
        """A disk loss, fenced lease (on this partition, if narrowed) or metadata wipe at or
        before a time."""
        for fault in self.faults:
            if (
                fault.kind in TRUNCATIONS
                and fault.at_us <= before_us
                and fault_covers(fault, topic, partition)
            ):
                return fault
        return None

    def truncation_between(self, topic: str, partition: int, low_us: int, high_us: int) -> bool:
        """Whether a disk loss, fenced lease (covering the partition) or metadata wipe fell in
        [low, high]."""
        first = bisect.bisect_left(self.truncation_times_us, low_us)
        last = bisect.bisect_right(self.truncation_times_us, high_us)
        return any(fault_covers(fault, topic, partition) for fault in self.truncations[first:last])

    def scan_fetches(self, scan: ScanCompleted) -> Iterator[FetchObserved]:
        """The fetches a final scan made: its client's, of its partition, within its time."""
        for fetch in self.fetches:
            if (
                fetch.client == scan.client
                and (fetch.topic, fetch.partition) == (scan.topic, scan.partition)
                and scan.requested_us <= fetch.requested_us
                and fetch.at_us <= scan.at_us
            ):
                yield fetch

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

    def at_or_below(
        self, tp: TP, offset: int, after_us: int, epoch: int | None
    ) -> Iterator[FetchObserved]:
        """The fetches requested after `after_us` that told a high watermark <= `offset`, in
        leader epoch `epoch` or later (an older epoch's answer is a stale view, not a loss),
        in request order."""
        if tp not in self._fetches:
            return
        start = bisect.bisect_right(self._requested[tp], after_us)
        if start == len(self._fetches[tp]) or self._lowest_after[tp][start] > offset:
            return
        for fetch in self._fetches[tp][start:]:
            assert fetch.high_watermark is not None
            stale = (
                epoch is not None and fetch.leader_epoch is not None and fetch.leader_epoch < epoch
            )
            if fetch.high_watermark <= offset and not stale:
                yield fetch


_INDEXES: weakref.WeakKeyDictionary[History, tuple[int, HistoryIndex]] = weakref.WeakKeyDictionary()


def index_history(history: History) -> HistoryIndex:
    """The index of `history` as it is now, shared by the checkers run over it."""
    cached = _INDEXES.get(history)
    if cached is None or cached[0] != len(history):
        cached = (len(history), HistoryIndex(history))
        _INDEXES[history] = cached
    return cached[1]


def response_epoch(fetch: FetchObserved) -> int | None:
    """The leader epoch a fetch was answered in, or a lower bound of it: the epoch the
    reader fetched with, else the latest batch epoch in the answer (a leader serves no
    batch of an epoch above its own), else None."""
    if fetch.leader_epoch is not None:
        return fetch.leader_epoch
    epochs = [record.leader_epoch for record in fetch.records if record.leader_epoch is not None]
    return max(epochs, default=None)


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
