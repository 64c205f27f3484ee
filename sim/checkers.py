"""Checkers: judge a client history against every promise of DESIGN §6 a client can observe.

Each `check_*(history)` is a pure function returning the violations it found
(empty when the promise held). They know nothing of the engine: they read
only what clients recorded (`sim.history`). Definitions, in the order of
`SAFETY_CHECKERS`:

history       The history itself is well formed: outcomes name known ops, one
              outcome per op, unique (key, value) per partition, time never
              goes backwards, requests precede their answers.
acked_durable A record acked with acks=all is never lost: no read at its offset
              shows other content, and no fetch *requested after the ack*
              reports a high watermark at or below its offset.
acked_leader  A record acked with acks=1 is lost only when allowed: evidence of
              the same kinds as above is excused only by a disk loss on the
              agent that acked it (after the attempt began) or a fenced lease of
              that agent (of an epoch not below the ack's), before the evidence;
              and the evidence must carry a higher leader epoch than the ack
              (the loss is detectable via leader epochs). Unknown agents or
              epochs are not held against the run.
one_value     No two different contents (key, value, or control kind) at one
              offset, across all readers, acks and time -- except across two
              known, different leader epochs after a disk loss or fenced lease
              (truncation of unreplicated data, seen via the epoch), or, with an
              epoch unknown, when such a fault fell between the two sightings.
reader_offsets Within one fetch, delivered offsets rise strictly from the fetch
              offset (never backwards, never repeated). Every offset skipped
              between the fetch offset and the position after the fetch is
              explained: below the log start, a compacted topic, a known control
              record, under read_committed a record of an aborted (or not known
              committed) transaction, or -- on a partition with transactional
              writes -- an offset nobody saw (a control record may sit there).
              A skipped offset known to hold a record the reader should get is a
              violation, and so is any unexplained skip on other partitions.
              What an offset holds is what was seen there in the latest epoch;
              if that may have been truncated before the fetch (a disk loss or
              fenced lease since), the offset counts as unseen.
watermarks    In each response log_start <= HW, LSO <= HW and records lie in
              [log_start, HW). Per reader and partition, over its fetches in
              history order that carry the same known current leader epoch,
              HW, LSO and log start never decrease. (A new leader may start
              lower: unreplicated tail data can be lost on failover.) Fetches
              without a known epoch count as one epoch while no fault at all
              is injected between them (the leader cannot have changed).
idempotence   An idempotent op (or a producer id/epoch/sequence) appears at one
              offset at most, not counting offsets whose content was replaced.
read_committed A read_committed fetch never delivers a data record of an aborted
              transaction, nor one whose transaction's end was requested after
              the fetch completed, nor any record at or above its LSO.
no_phantoms   Every data record read was attempted by some producer, and not
              by an attempt that failed definitely.
group_owners  In one generation of a group, each partition has one owner.
group_offsets A successful commit is never below a commit that completed before
              it was requested (since the last explicit reset), and OffsetFetch
              never answers below such commits nor with an offset nobody set.
final_reads   After the final scan of a partition, every acked record at or
              above the scan's start (log start) was read back at its offset
              (acks=1 losses excused as in acked_leader; compacted topics and
              transactions not known committed skipped under read_committed).

`check_liveness` is separate: after healing, within a bound, some produce is
acked and some fetch delivers records.
"""

from __future__ import annotations

import bisect
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sim.history import (
    ACKS_ALL,
    ACKS_LEADER,
    FAULT_DISK_LOSS,
    FAULT_LEASE_FENCED,
    PHASE_LIVENESS,
    CommittedOffsetRead,
    Event,
    FaultInjected,
    FetchObserved,
    GroupGeneration,
    History,
    ObservedRecord,
    OffsetCommitted,
    OffsetReset,
    PhaseStarted,
    ProduceAcked,
    ProduceAttempt,
    ProduceFailed,
    ScanCompleted,
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
class _Sighting:
    """One observation of what sits at an offset: from a fetch or from an ack."""

    content: Content
    leader_epoch: int | None
    at_us: int
    event: Event


class _Index:
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
        self.sightings: dict[TP, dict[int, list[_Sighting]]] = defaultdict(dict)
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
                self._sight(*where, _content(record), record.leader_epoch, event)
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
        sighting = _Sighting(content, epoch, event.at_us, event)
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
                and _fault_covers(fault, topic, partition)
            ):
                return fault
        return None

    def truncation_between(self, topic: str, partition: int, low_us: int, high_us: int) -> bool:
        """Whether a disk loss or fenced lease (covering the partition) fell in [low, high]."""
        first = bisect.bisect_left(self.truncation_times_us, low_us)
        last = bisect.bisect_right(self.truncation_times_us, high_us)
        return any(_fault_covers(fault, topic, partition) for fault in self.truncations[first:last])

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


_INDEXES: weakref.WeakKeyDictionary[History, tuple[int, _Index]] = weakref.WeakKeyDictionary()


def _index(history: History) -> _Index:
    """The index of `history` as it is now, shared by the checkers run over it."""
    cached = _INDEXES.get(history)
    if cached is None or cached[0] != len(history):
        cached = (len(history), _Index(history))
        _INDEXES[history] = cached
    return cached[1]


def _content(record: ObservedRecord) -> Content:
    if record.control is not None:
        return (record.control, None, None)
    return (None, record.key, record.value)


def _fault_covers(fault: FaultInjected, topic: str, partition: int) -> bool:
    return (fault.topic is None or fault.topic == topic) and (
        fault.partition is None or fault.partition == partition
    )


def _show(content: Content) -> str:
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


def _where(topic: str, partition: int, offset: int | None = None) -> str:
    return f"{topic}/{partition}" + ("" if offset is None else f"@{offset}")


# -- history -----------------------------------------------------------------


def check_history(history: History) -> list[Violation]:
    """The history is well formed (a broken one is a workload bug, reported as such)."""
    found: list[Violation] = []

    def flag(message: str, *events: Event) -> None:
        found.append(Violation("history", message, events))

    attempts: dict[int, ProduceAttempt] = {}
    contents: dict[tuple[str, int, bytes | None, bytes | None], ProduceAttempt] = {}
    outcomes: dict[int, Event] = {}
    last_us = 0
    for event in history:
        if event.at_us < last_us:
            flag(f"time went backwards: at_us {event.at_us} after {last_us}", event)
        last_us = max(last_us, event.at_us)
        requested_us = getattr(event, "requested_us", None)
        if isinstance(requested_us, int) and requested_us > event.at_us:
            flag(f"answered at {event.at_us} before requested at {requested_us}", event)
        if isinstance(event, ProduceAttempt):
            if event.op in attempts:
                flag(f"op {event.op} attempted twice", attempts[event.op], event)
            attempts.setdefault(event.op, event)
            key = (event.topic, event.partition, event.key, event.value)
            if key in contents:
                flag(
                    f"ops {contents[key].op} and {event.op} write the same record to "
                    f"{_where(event.topic, event.partition)}: reads cannot name their writer",
                    contents[key],
                    event,
                )
            contents.setdefault(key, event)
        elif isinstance(event, ProduceAcked | ProduceFailed):
            if event.op not in attempts:
                flag(f"outcome of op {event.op}, which was never attempted", event)
            if event.op in outcomes:
                flag(f"op {event.op} has two outcomes", outcomes[event.op], event)
            outcomes.setdefault(event.op, event)
            if isinstance(event, ProduceAcked) and event.offset < 0:
                flag(f"op {event.op} acked without an offset ({event.offset})", event)
    return found


# -- acknowledged writes -------------------------------------------------------


@dataclass(frozen=True)
class _Loss:
    """Evidence that an acked record is gone from its offset."""

    why: str
    event: Event
    at_us: int
    leader_epoch: int | None


def _loss_evidence(index: _Index, attempt: ProduceAttempt, ack: ProduceAcked) -> _Loss | None:
    """The first observation proving the acked record is no longer at its offset."""
    tp = (attempt.topic, attempt.partition)
    mine: Content = (None, attempt.key, attempt.value)
    for sighting in index.sightings[tp].get(ack.offset, []):
        if sighting.content == mine:
            continue
        if sighting.leader_epoch is not None and ack.leader_epoch is not None:
            older = sighting.leader_epoch < ack.leader_epoch
        else:
            # Without epochs, a sighting is from an older log when a truncation lies between
            # it and the ack (the attempt may have been retried across that truncation).
            older = sighting.at_us < ack.at_us and index.truncation_between(
                *tp, sighting.at_us, ack.at_us
            )
        if not older:
            why = f"{_where(*tp, ack.offset)} holds {_show(sighting.content)}"
            return _Loss(why, sighting.event, sighting.at_us, sighting.leader_epoch)
    fetch = index.marks.first_at_or_below(tp, ack.offset, ack.at_us, ack.leader_epoch)
    if fetch is None:
        return None
    why = (
        f"{fetch.client} fetched at {fetch.requested_us}us (after the ack) and was told "
        f"high watermark {fetch.high_watermark} (truncated, or a deposed leader answered)"
    )
    return _Loss(why, fetch, fetch.at_us, fetch.leader_epoch)


def _leader_loss_excuse(
    index: _Index, attempt: ProduceAttempt, ack: ProduceAcked, loss: _Loss
) -> str | None:
    """None when an acks=1 loss is allowed by the model, else why it is not."""
    allowed = False
    for fault in index.faults:
        if fault.kind not in (FAULT_DISK_LOSS, FAULT_LEASE_FENCED) or fault.at_us > loss.at_us:
            continue
        if not _fault_covers(fault, attempt.topic, attempt.partition):
            continue
        if ack.agent is not None and fault.agent != ack.agent:
            continue
        if fault.kind == FAULT_DISK_LOSS and fault.at_us < attempt.at_us:
            continue
        if (
            fault.kind == FAULT_LEASE_FENCED
            and fault.epoch is not None
            and ack.leader_epoch is not None
            and ack.leader_epoch > fault.epoch
        ):
            continue
        allowed = True
        break
    agent = ack.agent or "its agent"
    if not allowed:
        return f"no disk loss or fenced lease on {agent} explains it"
    if (
        ack.leader_epoch is not None
        and loss.leader_epoch is not None
        and loss.leader_epoch <= ack.leader_epoch
    ):
        return (
            f"the loss shows no leader-epoch change (acked in epoch {ack.leader_epoch}, "
            f"seen in epoch {loss.leader_epoch}): clients cannot detect it"
        )
    return None


def _acked(index: _Index, acks: int) -> Iterable[tuple[ProduceAttempt, ProduceAcked]]:
    for op, ack in index.acks.items():
        attempt = index.attempts.get(op)
        if attempt is not None and attempt.acks == acks and ack.offset >= 0:
            yield attempt, ack


def _describe_ack(attempt: ProduceAttempt, ack: ProduceAcked) -> str:
    mode = "acks=all" if attempt.acks == ACKS_ALL else f"acks={attempt.acks}"
    epoch = "" if ack.leader_epoch is None else f" epoch {ack.leader_epoch}"
    agent = "" if ack.agent is None else f" by {ack.agent}"
    return (
        f"{mode} record op {attempt.op} ({_show((None, attempt.key, attempt.value))}) acked "
        f"at {_where(attempt.topic, attempt.partition, ack.offset)}{epoch}{agent} "
        f"(t={ack.at_us}us)"
    )


def check_acked_durable(history: History) -> list[Violation]:
    """acks=all records are never lost."""
    return _lost_acks(history, ACKS_ALL, "acked_durable")


def check_acked_leader(history: History) -> list[Violation]:
    """acks=1 records are lost only after a disk loss or fenced lease, visibly (epoch change)."""
    return _lost_acks(history, ACKS_LEADER, "acked_leader")


def _lost_acks(history: History, acks: int, checker: str) -> list[Violation]:
    index = _index(history)
    found: list[Violation] = []
    for attempt, ack in _acked(index, acks):
        loss = _loss_evidence(index, attempt, ack)
        why = None if loss is None else _unexcused(index, attempt, ack, loss)
        if loss is not None and why is not None:
            message = f"{_describe_ack(attempt, ack)} was lost: {why}"
            found.append(Violation(checker, message, (attempt, ack, loss.event)))
    return found


def _unexcused(
    index: _Index, attempt: ProduceAttempt, ack: ProduceAcked, loss: _Loss
) -> str | None:
    """Why losing this acked record breaks a promise, or None if its ack mode allows it."""
    if attempt.acks != ACKS_LEADER:
        return loss.why
    refusal = _leader_loss_excuse(index, attempt, ack, loss)
    return None if refusal is None else f"{loss.why}; {refusal}"


# -- one value per offset --------------------------------------------------------


def check_one_value(history: History) -> list[Violation]:
    """No two different contents at one offset, unless truncated across leader epochs."""
    index = _index(history)
    found: list[Violation] = []
    for (topic, partition), offsets in sorted(index.sightings.items()):
        for offset, sightings in sorted(offsets.items()):
            clash = _first_clash(index, topic, partition, sightings)
            if clash is not None:
                first, second = clash
                message = (
                    f"two values at {_where(topic, partition, offset)}: "
                    f"{_show(first.content)} (epoch {first.leader_epoch}, t={first.at_us}us) and "
                    f"{_show(second.content)} (epoch {second.leader_epoch}, t={second.at_us}us)"
                )
                found.append(Violation("one_value", message, (first.event, second.event)))
    return found


def _first_clash(
    index: _Index, topic: str, partition: int, sightings: list[_Sighting]
) -> tuple[_Sighting, _Sighting] | None:
    by_content: dict[Content, _Sighting] = {}
    for sighting in sightings:
        by_content.setdefault(sighting.content, sighting)
    if len(by_content) < 2:
        return None
    for sighting in sightings:
        for other in sightings:
            if other.content == sighting.content or other.at_us < sighting.at_us:
                continue
            if sighting.leader_epoch is not None and other.leader_epoch is not None:
                truncated = (
                    sighting.leader_epoch != other.leader_epoch
                    and index.truncation_fault(topic, partition, other.at_us) is not None
                )
            else:
                truncated = index.truncation_between(topic, partition, sighting.at_us, other.at_us)
            if not truncated:
                return sighting, other
    return None


# -- what one reader saw ---------------------------------------------------------


def check_reader_offsets(history: History) -> list[Violation]:
    """Offsets rise within a fetch; every skipped offset is explained."""
    index = _index(history)
    found: list[Violation] = []
    for fetch in index.fetches:
        found += _fetch_order(fetch)
        found += _fetch_gaps(index, fetch)
    return found


def _fetch_order(fetch: FetchObserved) -> list[Violation]:
    where = _where(fetch.topic, fetch.partition)
    previous = fetch.fetch_offset - 1
    for record in fetch.records:
        if record.offset <= previous:
            message = (
                f"{fetch.client} fetched {where} from {fetch.fetch_offset} and got offset "
                f"{record.offset} after {previous}: offsets went backwards or repeated"
            )
            return [Violation("reader_offsets", message, (fetch,))]
        previous = record.offset
    if fetch.next_offset is not None and fetch.next_offset <= previous:
        message = (
            f"{fetch.client} fetched {where}: position {fetch.next_offset} after reading "
            f"offset {previous}"
        )
        return [Violation("reader_offsets", message, (fetch,))]
    return []


def _fetch_gaps(index: _Index, fetch: FetchObserved) -> list[Violation]:
    if fetch.topic in index.compacted:
        return []
    tp = (fetch.topic, fetch.partition)
    read = [record.offset for record in fetch.records]
    end = read[-1] + 1 if read else fetch.fetch_offset
    if fetch.next_offset is not None:
        end = fetch.next_offset
    floor = fetch.fetch_offset
    if fetch.log_start_offset is not None:
        floor = max(floor, fetch.log_start_offset)
    gaps: list[tuple[int, int]] = []
    start = floor
    for offset in [*read, end]:
        if offset > start:
            gaps.append((start, offset))
        start = max(start, offset + 1)
    found: list[Violation] = []
    for low, high in gaps:
        problem = _unexplained(index, tp, fetch, low, high)
        if problem is not None:
            message = (
                f"{fetch.client} skipped {_where(*tp)} offsets {low}..{high - 1} "
                f"(fetch from {fetch.fetch_offset}, read_committed={fetch.read_committed}): "
                f"{problem}"
            )
            found.append(Violation("reader_offsets", message, (fetch,)))
    return found


def _unexplained(index: _Index, tp: TP, fetch: FetchObserved, low: int, high: int) -> str | None:
    known = index.known_offsets.get(tp, [])
    inside = known[bisect.bisect_left(known, low) : bisect.bisect_left(known, high)]
    unknown = high - low
    for offset in inside:
        contents = _current_contents(index, tp, fetch, index.sightings[tp][offset])
        if not contents:
            continue
        unknown -= 1
        if not any(_skippable(index, tp, fetch, content) for content in contents):
            return f"offset {offset} holds {_show(contents[0])}"
    if unknown and tp not in index.transactional:
        return "no control record, compaction or log-start move explains it"
    return None


def _current_contents(
    index: _Index, tp: TP, fetch: FetchObserved, sightings: list[_Sighting]
) -> list[Content]:
    """What may sit at an offset as `fetch` saw the log: the contents of its highest known
    leader epoch, or none if they may have been truncated by a disk loss or fenced lease
    before the fetch (all seen in older epochs than the fetch's or, with epochs unknown,
    all seen before that fault)."""
    epochs = [s.leader_epoch for s in sightings]
    if fetch.leader_epoch is not None and None not in epochs:
        # a fetch in epoch E cannot see what later epochs wrote
        sightings = [s for s in sightings if (s.leader_epoch or 0) <= fetch.leader_epoch]
        if not sightings:
            return []
        latest = max(s.leader_epoch or 0 for s in sightings)
        truncated = (
            latest < fetch.leader_epoch and index.truncation_fault(*tp, fetch.at_us) is not None
        )
        current = [s.content for s in sightings if s.leader_epoch == latest]
    else:
        seen_us = max(s.at_us for s in sightings)
        truncated = index.truncation_between(*tp, seen_us + 1, fetch.at_us)
        current = [s.content for s in sightings]
    return [] if truncated else current


def _skippable(index: _Index, tp: TP, fetch: FetchObserved, content: Content) -> bool:
    """A reader may skip a control record, and under read_committed uncommitted data."""
    control, key, value = content
    if control is not None:
        return True
    attempt = index.by_content.get((*tp, key, value))
    return fetch.read_committed and attempt is not None and index.txn_visible(attempt) is not True


def check_watermarks(history: History) -> list[Violation]:
    """Per response: log_start, LSO <= HW, records inside; per reader and epoch: no regress."""
    index = _index(history)
    found: list[Violation] = []
    highest: dict[tuple[str, str, int, str], dict[str, int]] = defaultdict(dict)
    for fetch in index.fetches:
        found += _response_bounds(fetch)
        if fetch.leader_epoch is not None:
            span = f"within leader epoch {fetch.leader_epoch}"
        else:
            faults = bisect.bisect_right(index.fault_times_us, fetch.requested_us)
            span = f"with no fault injected in between (leader epoch unknown; {faults} before)"
        seen = highest[(fetch.client, fetch.topic, fetch.partition, span)]
        marks = {
            "high watermark": fetch.high_watermark,
            "last stable offset": fetch.last_stable_offset,
            "log start offset": fetch.log_start_offset,
        }
        for name, value in marks.items():
            if value is None:
                continue
            if value < seen.get(name, value):
                message = (
                    f"{fetch.client} saw the {name} of {_where(fetch.topic, fetch.partition)} "
                    f"go back from {seen[name]} to {value} {span} (t={fetch.at_us}us)"
                )
                found.append(Violation("watermarks", message, (fetch,)))
            seen[name] = max(value, seen.get(name, value))
    return found


def _response_bounds(fetch: FetchObserved) -> list[Violation]:
    where = _where(fetch.topic, fetch.partition)
    problems: list[str] = []
    high, stable, start = fetch.high_watermark, fetch.last_stable_offset, fetch.log_start_offset
    if high is not None and stable is not None and stable > high:
        problems.append(f"LSO {stable} above high watermark {high}")
    if high is not None and start is not None and start > high:
        problems.append(f"log start {start} above high watermark {high}")
    for record in fetch.records:
        if high is not None and record.offset >= high:
            problems.append(f"offset {record.offset} at or above high watermark {high}")
            break
        if start is not None and record.offset < start:
            problems.append(f"offset {record.offset} below log start {start}")
            break
    return [
        Violation("watermarks", f"{fetch.client} fetched {where}: {problem}", (fetch,))
        for problem in problems
    ]


# -- producers -------------------------------------------------------------------


def check_idempotence(history: History) -> list[Violation]:
    """An idempotent record (or producer id/epoch/sequence) sits at one offset at most."""
    index = _index(history)
    # (topic, partition, who wrote it) -> offset -> its first sighting there
    places: dict[tuple[str, int, str], dict[int, _Sighting]] = defaultdict(dict)
    for op, ack in index.acks.items():
        attempt = index.attempts.get(op)
        if attempt is not None and attempt.idempotent and ack.offset >= 0:
            writer = (attempt.topic, attempt.partition, f"idempotent op {op} by {attempt.client}")
            content: Content = (None, attempt.key, attempt.value)
            sighting = _Sighting(content, ack.leader_epoch, ack.at_us, ack)
            places[writer].setdefault(ack.offset, sighting)
    for fetch in index.fetches:
        for record in fetch.records:
            if record.control is not None:
                continue
            sighting = _Sighting(_content(record), record.leader_epoch, fetch.at_us, fetch)
            attempt = index.op_of(fetch.topic, fetch.partition, record)
            if attempt is not None and attempt.idempotent:
                label = f"idempotent op {attempt.op} by {attempt.client}"
                places[(fetch.topic, fetch.partition, label)].setdefault(record.offset, sighting)
            if record.producer_id >= 0 and record.sequence >= 0:
                label = (
                    f"producer id {record.producer_id} epoch {record.producer_epoch} "
                    f"sequence {record.sequence}"
                )
                places[(fetch.topic, fetch.partition, label)].setdefault(record.offset, sighting)
    found: list[Violation] = []
    for (topic, partition, label), where in sorted(places.items()):
        if len(where) < 2:
            continue
        sightings = index.sightings[(topic, partition)]
        offsets = [
            offset
            for offset, mine in sorted(where.items())
            if not any(_replaces(other, mine) for other in sightings.get(offset, []))
        ]
        if len(offsets) > 1:
            message = f"{label} written twice: at {_where(topic, partition)} offsets {offsets}"
            events = tuple(where[offset].event for offset in offsets)
            found.append(Violation("idempotence", message, events))
    return found


def _replaces(other: _Sighting, mine: _Sighting) -> bool:
    """Whether `other` shows a later record at the offset of `mine` (mine was truncated)."""
    if other.content == mine.content:
        return False
    if other.leader_epoch is not None and mine.leader_epoch is not None:
        return other.leader_epoch > mine.leader_epoch
    return other.at_us > mine.at_us


def check_read_committed(history: History) -> list[Violation]:
    """read_committed never delivers aborted or not-yet-committed data, nor records past LSO."""
    index = _index(history)
    found: list[Violation] = []
    for fetch in index.fetches:
        if not fetch.read_committed:
            continue
        where = _where(fetch.topic, fetch.partition)
        for record in fetch.records:
            stable = fetch.last_stable_offset
            if stable is not None and record.offset >= stable:
                message = (
                    f"{fetch.client} (read_committed) got {where}@{record.offset} at or above "
                    f"the last stable offset {stable}"
                )
                found.append(Violation("read_committed", message, (fetch,)))
            attempt = index.op_of(fetch.topic, fetch.partition, record)
            if attempt is None or attempt.txn is None:
                continue
            end = index.txn_ends.get(attempt.txn)
            if end is None:
                continue
            if end.committed is False:
                problem = f"transaction {attempt.txn} of {attempt.client} was aborted"
            elif fetch.at_us < end.requested_us:
                problem = (
                    f"transaction {attempt.txn} of {attempt.client} was only asked to end at "
                    f"{end.requested_us}us, after this read at {fetch.at_us}us"
                )
            else:
                continue
            message = (
                f"{fetch.client} (read_committed) read {where}@{record.offset} "
                f"({_show(_content(record))}) but {problem}"
            )
            found.append(Violation("read_committed", message, (fetch, attempt, end)))
    return found


def check_no_phantoms(history: History) -> list[Violation]:
    """Every data record read was attempted, and not by an attempt that definitely failed."""
    index = _index(history)
    found: list[Violation] = []
    for fetch in index.fetches:
        for record in fetch.records:
            if record.control is not None:
                continue
            where = _where(fetch.topic, fetch.partition, record.offset)
            attempt = index.op_of(fetch.topic, fetch.partition, record)
            if attempt is None:
                message = (
                    f"{fetch.client} read {where} {_show(_content(record))}, which no producer "
                    f"ever sent to that partition"
                )
                found.append(Violation("no_phantoms", message, (fetch,)))
                continue
            failure = index.failures.get(attempt.op)
            if failure is not None and failure.definite:
                message = (
                    f"{fetch.client} read {where} written by op {attempt.op}, which failed "
                    f"definitely with error {failure.error_code}"
                )
                found.append(Violation("no_phantoms", message, (fetch, attempt, failure)))
    return found


# -- consumer groups -------------------------------------------------------------


def check_group_owners(history: History) -> list[Violation]:
    """In one generation of a group, each partition is assigned to one member."""
    owners: dict[tuple[str, int, str, int], dict[str, GroupGeneration]] = defaultdict(dict)
    for event in history.of_type(GroupGeneration):
        for tp in event.partitions:
            owners[(event.group, event.generation, tp.topic, tp.partition)].setdefault(
                event.member, event
            )
    found: list[Violation] = []
    for (group, generation, topic, partition), members in sorted(owners.items()):
        if len(members) > 1:
            message = (
                f"group {group} generation {generation} assigned {_where(topic, partition)} "
                f"to {len(members)} members: {sorted(members)}"
            )
            found.append(Violation("group_owners", message, tuple(members.values())))
    return found


def check_group_offsets(history: History) -> list[Violation]:
    """Committed offsets never regress (outside explicit resets), as committed and as read."""
    timelines: dict[tuple[str, str, int], _CommitTimeline] = defaultdict(_CommitTimeline)
    found: list[Violation] = []
    for event in history:
        if isinstance(event, OffsetCommitted | OffsetReset | CommittedOffsetRead):
            timeline = timelines[(event.group, event.topic, event.partition)]
        if isinstance(event, OffsetCommitted | CommittedOffsetRead):
            found += timeline.judge(event)
        if isinstance(event, OffsetCommitted | OffsetReset):
            timeline.add(event)
    return found


class _CommitTimeline:
    """Commits and resets of one group partition in completion order, with running floors."""

    def __init__(self) -> None:
        self.completed_us: list[int] = []
        self.floors: list[OffsetCommitted | OffsetReset] = []
        self.offsets: set[int] = set()

    def add(self, event: OffsetCommitted | OffsetReset) -> None:
        floor = event
        if isinstance(event, OffsetCommitted) and self.floors:
            floor = max(self.floors[-1], event, key=lambda known: known.offset)
        self.completed_us.append(event.at_us)
        self.floors.append(floor)
        self.offsets.add(event.offset)

    def judge(self, event: OffsetCommitted | CommittedOffsetRead) -> list[Violation]:
        """Compare with every commit completed before `event` was requested (since a reset)."""
        before = bisect.bisect_left(self.completed_us, event.requested_us)
        floor = self.floors[before - 1] if before else None
        where = f"group {event.group} {_where(event.topic, event.partition)}"
        if floor is not None and event.offset < floor.offset:
            verb = "committed" if isinstance(event, OffsetCommitted) else "read back committed"
            message = (
                f"{event.client} {verb} offset {event.offset} for {where} at {event.at_us}us, "
                f"below {floor.offset} set by {floor.client} at {floor.at_us}us"
            )
            return [Violation("group_offsets", message, (floor, event))]
        phantom = isinstance(event, CommittedOffsetRead) and event.offset not in self.offsets
        if phantom and event.offset >= 0:
            message = (
                f"{event.client} read back committed offset {event.offset} for {where}, "
                f"which nobody committed"
            )
            return [Violation("group_offsets", message, (event,))]
        return []


# -- the end state ---------------------------------------------------------------


def check_final_reads(history: History) -> list[Violation]:
    """After the final scan of a partition, every acked record is read back at its offset."""
    index = _index(history)
    scans = {(scan.topic, scan.partition): scan for scan in history.of_type(ScanCompleted)}
    scanned = {tp: _scanned(index, scan) for tp, scan in scans.items()}
    found: list[Violation] = []
    for op, ack in sorted(index.acks.items()):
        attempt = index.attempts.get(op)
        if attempt is None or attempt.acks not in (ACKS_ALL, ACKS_LEADER) or ack.offset < 0:
            continue
        tp = (attempt.topic, attempt.partition)
        if tp not in scans:
            continue
        scan = scans[tp]
        if ack.at_us > scan.requested_us or attempt.topic in index.compacted:
            continue
        if scan.read_committed and index.txn_visible(attempt) is not True:
            continue
        loss = _missing_from_scan(scan, scanned[tp], attempt, ack)
        why = None if loss is None else _unexcused(index, attempt, ack, loss)
        if why is None:
            continue
        message = f"{_describe_ack(attempt, ack)} is not in the final read: {why}"
        found.append(Violation("final_reads", message, (attempt, ack, scan)))
    return found


def _scanned(index: _Index, scan: ScanCompleted) -> dict[int, tuple[Content, int | None]]:
    """What the scan read, by offset (the latest reading of each offset)."""
    read: dict[int, tuple[Content, int | None]] = {}
    for fetch in index.fetches:
        if (
            fetch.client == scan.client
            and (fetch.topic, fetch.partition) == (scan.topic, scan.partition)
            and scan.requested_us <= fetch.requested_us
            and fetch.at_us <= scan.at_us
        ):
            read.update((r.offset, (_content(r), r.leader_epoch)) for r in fetch.records)
    return read


def _missing_from_scan(
    scan: ScanCompleted,
    read: dict[int, tuple[Content, int | None]],
    attempt: ProduceAttempt,
    ack: ProduceAcked,
) -> _Loss | None:
    if ack.offset < scan.start_offset:
        return None
    if ack.offset >= scan.end_offset:
        why = f"{scan.client} scanned up to high watermark {scan.end_offset}"
        return _Loss(why, scan, scan.at_us, scan.leader_epoch)
    if ack.offset not in read:
        return _Loss(f"{scan.client}'s scan did not return it", scan, scan.at_us, scan.leader_epoch)
    content, epoch = read[ack.offset]
    if content == (None, attempt.key, attempt.value):
        return None
    return _Loss(f"the scan found {_show(content)} there", scan, scan.at_us, epoch)


# -- liveness and everything -------------------------------------------------------


def check_liveness(history: History, *, heal_us: int, bound_ms: int) -> list[Violation]:
    """Within `bound_ms` after healing, some produce is acked and some fetch returns records."""
    deadline_us = heal_us + bound_ms * 1000
    acked = any(heal_us <= e.at_us <= deadline_us for e in history.of_type(ProduceAcked))
    served = any(
        heal_us <= e.at_us <= deadline_us and e.records for e in history.of_type(FetchObserved)
    )
    missing = [
        what for what, ok in (("no produce acked", acked), ("no fetch served", served)) if not ok
    ]
    if not missing:
        return []
    message = (
        f"{' and '.join(missing)} within {bound_ms} ms of healing at {heal_us}us: "
        f"the cluster did not recover"
    )
    return [Violation(LIVENESS, message)]


SAFETY_CHECKERS: tuple[Callable[[History], list[Violation]], ...] = (
    check_history,
    check_acked_durable,
    check_acked_leader,
    check_one_value,
    check_reader_offsets,
    check_watermarks,
    check_idempotence,
    check_read_committed,
    check_no_phantoms,
    check_group_owners,
    check_group_offsets,
    check_final_reads,
)


def check_all(history: History, *, liveness_bound_ms: int | None = None) -> list[Violation]:
    """Every safety checker, then liveness from the PHASE_LIVENESS start if a bound is given."""
    found = [violation for checker in SAFETY_CHECKERS for violation in checker(history)]
    if liveness_bound_ms is not None:
        heals = [e for e in history.of_type(PhaseStarted) if e.phase == PHASE_LIVENESS]
        if not heals:
            found.append(Violation("history", "a liveness bound was given but no liveness phase"))
        else:
            found += check_liveness(history, heal_us=heals[0].at_us, bound_ms=liveness_bound_ms)
    return found
