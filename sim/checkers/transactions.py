"""The `torn_transactions`, `lost_committed`, `last_stable_offset` and `exactly_once` checkers: a
transaction is all or nothing for read_committed readers, a commit the client was told of is
never lost, the last stable offset a leader answers never goes back, and a
consume-transform-produce client's committed transactions process each input record once.

Facts they rest on (Kafka's, and so ours):
- A read_committed reader's position passes an offset only below the last stable offset,
  and everything below the LSO is decided: a record there is either delivered (committed, or
  not transactional) or skipped (aborted). So a read_committed fetch whose answer covers the
  offset of a transactional record -- from its fetch offset (or log start) up to the position
  after it -- has decided that record's transaction for that reader.
- A transactional record is written with acks=all: once acked it stays at its offset. A
  fetch asked for after the ack that covers the offset and delivers nothing there has
  skipped it; one that delivers something else there is a different promise (`one_value`).
- Within one leader epoch the leader's LSO only grows: a transaction begins at the log end,
  which is at or above the high watermark, so a new one never lowers min(HW, first offset of
  the open transactions). A new leader may start lower (its high watermark may lag, and an
  unreplicated tail may be lost), so answers are compared only within one span of one agent
  (`HistoryIndex.answerer`: no fault on it, no lease of the partition moving, in between) and,
  where the reader fetched with a known current leader epoch, that epoch.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass

from sim.checkers.index import (
    Content,
    HistoryIndex,
    Violation,
    content_of,
    index_history,
    place_of,
    show,
)
from sim.history import (
    ACKS_ALL,
    FetchObserved,
    History,
    ProduceAcked,
    ProduceAttempt,
    ScanCompleted,
    TxnEnded,
    TxnProducerStarted,
    TxnRead,
)


@dataclass(frozen=True)
class _Decision:
    """What one read_committed fetch did with one transactional record it covered."""

    fetch: FetchObserved
    attempt: ProduceAttempt
    offset: int
    delivered: bool


def _covered(fetch: FetchObserved) -> tuple[int, int]:
    """The offsets [low, high) a fetch answer took its reader past."""
    low = fetch.fetch_offset
    if fetch.log_start_offset is not None:
        low = max(low, fetch.log_start_offset)
    if fetch.next_offset is not None:
        high = fetch.next_offset
    elif fetch.records:
        high = fetch.records[-1].offset + 1
    else:
        high = fetch.fetch_offset
    return low, high


def _decisions(index: HistoryIndex) -> dict[int, list[_Decision]]:
    """Per transaction, every read_committed fetch's decision on each of its acked records
    whose offset the fetch covered."""
    # (topic, partition) -> sorted [(offset, op)] of acked transactional records
    placed: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for op, ack in sorted(index.acks.items()):
        attempt = index.attempts.get(op)
        if attempt is not None and attempt.txn is not None and ack.offset >= 0:
            placed[(attempt.topic, attempt.partition)].append((ack.offset, op))
    for records in placed.values():
        records.sort()
    found: dict[int, list[_Decision]] = defaultdict(list)
    for fetch in index.fetches:
        here = placed.get((fetch.topic, fetch.partition))
        if not fetch.read_committed or not here:
            continue
        low, high = _covered(fetch)
        first = bisect.bisect_left(here, (low, -1))
        last = bisect.bisect_left(here, (high, -1))
        seen: dict[int, list[Content]] = defaultdict(list)
        for record in fetch.records:
            seen[record.offset].append(content_of(record))
        for offset, op in here[first:last]:
            attempt, ack = index.attempts[op], index.acks[op]
            mine: Content = (None, attempt.key, attempt.value)
            if mine in seen.get(offset, []):
                decision = _Decision(fetch, attempt, offset, True)
            elif offset in seen or attempt.acks != ACKS_ALL or fetch.requested_us < ack.at_us:
                continue  # another record there (one_value), or it may not have been there yet
            else:
                decision = _Decision(fetch, attempt, offset, False)
            assert attempt.txn is not None
            found[attempt.txn].append(decision)
    return found


def check_torn_transactions(history: History) -> list[Violation]:
    """No read_committed reader passes part of a committed transaction without its records,
    and no transaction of unknown outcome is visible to one read and skipped by another
    (across its partitions and readers, the final scan among them)."""
    index = index_history(history)
    found: list[Violation] = []
    for txn, decisions in sorted(_decisions(index).items()):
        end = index.txn_ends.get(txn)
        outcome = None if end is None else end.committed
        if outcome is False:
            continue  # delivering aborted data is the read_committed checker's
        skipped = [d for d in decisions if not d.delivered]
        delivered = [d for d in decisions if d.delivered]
        if not skipped or (outcome is None and not delivered):
            continue
        first = skipped[0]
        where = place_of(first.fetch.topic, first.fetch.partition, first.offset)
        what = "committed" if outcome else "of unknown outcome"
        client = first.attempt.client
        message = (
            f"transaction {txn} of {client} ({what}) is torn: {first.fetch.client} "
            f"(read_committed, fetch from {first.fetch.fetch_offset} to "
            f"{_covered(first.fetch)[1]}, t={first.fetch.at_us}us) passed its record op "
            f"{first.attempt.op} at {where} without delivering it"
        )
        if delivered:
            other = delivered[0]
            message += (
                f", while {other.fetch.client} got its record op {other.attempt.op} at "
                f"{place_of(other.fetch.topic, other.fetch.partition, other.offset)}"
            )
        events = (first.fetch, first.attempt, *(() if end is None else (end,)))
        found.append(Violation("torn_transactions", message, events))
    return found


def check_lost_committed(history: History) -> list[Violation]:
    """Every record of a transaction whose commit was acknowledged is in the final scan of its
    partition (unless below the log start the scan began at)."""
    index = index_history(history)
    scans = {(scan.topic, scan.partition): scan for scan in history.of_type(ScanCompleted)}
    contents = {tp: _scanned_contents(index, scan) for tp, scan in scans.items()}
    by_txn: dict[int, list[ProduceAttempt]] = defaultdict(list)
    for attempt in index.attempts.values():
        if attempt.txn is not None:
            by_txn[attempt.txn].append(attempt)
    found: list[Violation] = []
    for txn, attempts in sorted(by_txn.items()):
        end = index.txn_ends.get(txn)
        if end is None or end.committed is not True:
            continue
        for attempt in sorted(attempts, key=lambda a: a.op):
            problem = _missing(index, scans, contents, attempt, end)
            if problem is None:
                continue
            message = (
                f"record op {attempt.op} ({show((None, attempt.key, attempt.value))}) of "
                f"transaction {txn} of {attempt.client}, whose commit was acknowledged at "
                f"{end.at_us}us, is lost: {problem}"
            )
            found.append(Violation("lost_committed", message, (attempt, end)))
    return found


def _scanned_contents(index: HistoryIndex, scan: ScanCompleted) -> dict[Content, list[int]]:
    """What a final scan read, by content: the offsets it read each at."""
    read: dict[Content, list[int]] = defaultdict(list)
    for fetch in index.scan_fetches(scan):
        for record in fetch.records:
            read[content_of(record)].append(record.offset)
    return read


def _missing(
    index: HistoryIndex,
    scans: dict[tuple[str, int], ScanCompleted],
    contents: dict[tuple[str, int], dict[Content, list[int]]],
    attempt: ProduceAttempt,
    end: TxnEnded,
) -> str | None:
    """Why the final scan of the record's partition does not hold it, or None."""
    tp = (attempt.topic, attempt.partition)
    scan = scans.get(tp)
    if scan is None or scan.requested_us < end.at_us:
        return None  # no final read after the commit
    failure = index.failures.get(attempt.op)
    if failure is not None and failure.definite:
        return None
    ack = index.acks.get(attempt.op)
    if ack is not None and ack.offset < scan.start_offset:
        return None  # below the log start: deleted, not lost
    if (None, attempt.key, attempt.value) in contents[tp]:
        return None
    acked = "never acked" if ack is None else f"acked at offset {ack.offset}"
    if ack is not None and ack.offset >= scan.end_offset:
        return f"{acked}, but {scan.client} found {place_of(*tp)} ending at {scan.end_offset}"
    return f"{acked}, not in {scan.client}'s read of {place_of(*tp)} ({scan.start_offset}.." + (
        f"{scan.end_offset})"
    )


@dataclass(frozen=True)
class _Stable:
    """A last stable offset one answer told, and when it was asked and answered."""

    requested_us: int
    at_us: int
    offset: int
    fetch: FetchObserved


def check_last_stable_offset(history: History) -> list[Violation]:
    """Within one span of one agent answering for a partition (one leader epoch), nobody is
    told a last stable offset below one that agent told anybody before it asked: per reader
    the LSO never goes back, and no reader sees it lower than another already saw it."""
    index = index_history(history)
    answers: dict[tuple[object, ...], list[_Stable]] = defaultdict(list)
    for fetch in index.fetches:
        answerer = index.answerer(fetch)
        if answerer is None or fetch.last_stable_offset is None:
            continue
        stable = _Stable(fetch.requested_us, fetch.at_us, fetch.last_stable_offset, fetch)
        answers[(*answerer, fetch.leader_epoch)].append(stable)
    found: list[Violation] = []
    for key, told in sorted(answers.items(), key=lambda item: repr(item[0])):
        told.sort(key=lambda stable: stable.at_us)
        completed = [stable.at_us for stable in told]
        highest: list[_Stable] = []
        for stable in told:
            best = highest[-1] if highest else stable
            highest.append(stable if stable.offset > best.offset else best)
        for stable in told:
            before = bisect.bisect_left(completed, stable.requested_us)
            floor = highest[before - 1] if before else None
            if floor is None or stable.offset >= floor.offset:
                continue
            fetch, agent, epoch = stable.fetch, key[2], key[4]
            known = f" in leader epoch {epoch}" if epoch is not None else ""
            message = (
                f"{fetch.client} was told last stable offset {stable.offset} for "
                f"{place_of(fetch.topic, fetch.partition)} by {agent}{known} at {fetch.at_us}us, "
                f"below {floor.offset} that {floor.fetch.client} was told by it at "
                f"{floor.at_us}us, with no fault on it or lease move in between"
            )
            found.append(Violation("last_stable_offset", message, (floor.fetch, fetch)))
    return found


def check_exactly_once(history: History) -> list[Violation]:
    """A consume-transform-produce client's committed transactions process each input
    record once: their reads (`TxnRead`) of one partition for one group never overlap, and
    no durable record a read_committed reader gets lies between two of them unread. A
    transaction of unknown outcome counts as committed when a read_committed reader got one
    of its records, as aborted when one passed one over, else it excuses what it read."""
    index = index_history(history)
    outcomes = _resolved_outcomes(index)
    reads: dict[tuple[str, str, int], list[TxnRead]] = defaultdict(list)
    for read in history.of_type(TxnRead):
        reads[(read.group, read.topic, read.partition)].append(read)
    found: list[Violation] = []
    for (group, topic, partition), steps in sorted(reads.items()):
        committed = sorted(
            (step for step in steps if outcomes.get(step.txn) is True),
            key=lambda step: (step.first_offset, step.txn),
        )
        unknown = [step for step in steps if outcomes.get(step.txn) is None]
        where = place_of(topic, partition)
        for position, after in enumerate(committed[1:]):
            # the committed read reaching furthest before this one
            before = max(committed[: position + 1], key=lambda step: step.next_offset)
            if after.first_offset < before.next_offset:
                message = (
                    f"{where} offsets {after.first_offset}..{before.next_offset - 1} were "
                    f"processed by two committed transactions of group {group}: "
                    f"{before.txn} of {before.client} and {after.txn} of {after.client}"
                )
                found.append(Violation("exactly_once", message, (before, after)))
                continue
            skipped = _unread_durable(index, topic, partition, before, after, unknown)
            if skipped is not None:
                message = (
                    f"{where}@{skipped} holds a committed record, yet group {group}'s "
                    f"committed transactions read {before.first_offset}..."
                    f"{before.next_offset - 1} (transaction {before.txn}) and then from "
                    f"{after.first_offset} (transaction {after.txn}): no committed "
                    f"transaction processed it"
                )
                found.append(Violation("exactly_once", message, (before, after)))
    return found


def _resolved_outcomes(index: HistoryIndex) -> dict[int, bool | None]:
    """Each transaction's outcome: as its client learned it, else as read_committed readers
    saw it (a record delivered: committed; one passed over: aborted), else None."""
    outcomes: dict[int, bool | None] = {txn: end.committed for txn, end in index.txn_ends.items()}
    for txn, decisions in _decisions(index).items():
        if outcomes.get(txn) is None and decisions:
            outcomes[txn] = any(decision.delivered for decision in decisions)
    return outcomes


def _unread_durable(
    index: HistoryIndex,
    topic: str,
    partition: int,
    before: TxnRead,
    after: TxnRead,
    unknown: list[TxnRead],
) -> int | None:
    """An offset between two committed reads that holds an acked acks=all record visible to
    read_committed readers, read by no transaction of unknown outcome either."""
    for offset in range(before.next_offset, after.first_offset):
        if any(step.first_offset <= offset < step.next_offset for step in unknown):
            continue
        for sighting in index.sightings[(topic, partition)].get(offset, []):
            if not isinstance(sighting.event, ProduceAcked):
                continue
            attempt = index.attempts.get(sighting.event.op)
            if (
                attempt is not None
                and attempt.acks == ACKS_ALL
                and index.txn_visible(attempt) is True
            ):
                return offset
    return None


def check_fenced_zombies(history: History) -> list[Violation]:
    """A transactional producer instance fenced by a newer one of its transactional id (one
    whose InitProducerId was asked for after the older instance's was answered, and was
    answered itself) commits nothing it asks to commit after that: neither is its client told
    the transaction committed nor does a read_committed reader get its records."""
    index = index_history(history)
    outcomes = _resolved_outcomes(index)
    starts = history.of_type(TxnProducerStarted)
    found: list[Violation] = []
    for txn, end in sorted(index.txn_ends.items()):
        if outcomes.get(txn) is not True:
            continue
        mine = [s for s in starts if s.client == end.client and s.at_us <= end.requested_us]
        if not mine:
            continue
        own = mine[-1]
        fencer = next(
            (
                other
                for other in starts
                if other.transactional_id == own.transactional_id
                and other.client != own.client
                and other.requested_us > own.at_us
                and other.at_us < end.requested_us
            ),
            None,
        )
        if fencer is None:
            continue
        how = "its client was told so" if end.committed else "a read_committed reader got it"
        message = (
            f"transaction {txn} of {end.client} committed ({how}), but its commit was asked "
            f"for at {end.requested_us}us, after {fencer.client} took over transactional id "
            f"{own.transactional_id!r} at {fencer.at_us}us: a fenced zombie committed"
        )
        found.append(Violation("fenced_zombies", message, (own, fencer, end)))
    return found
