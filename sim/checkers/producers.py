"""The `idempotence`, `read_committed` and `no_phantoms` checkers: what producers wrote, once,
and only what they wrote."""

from __future__ import annotations

from collections import defaultdict

from sim.checkers.index import (
    Content,
    Sighting,
    Violation,
    content_of,
    index_history,
    place_of,
    show,
)
from sim.history import (
    History,
)


def check_idempotence(history: History) -> list[Violation]:
    """An idempotent record (or producer id/epoch/sequence) sits at one offset at most."""
    index = index_history(history)
    # (topic, partition, who wrote it) -> offset -> its first sighting there
    places: dict[tuple[str, int, str], dict[int, Sighting]] = defaultdict(dict)
    for op, ack in index.acks.items():
        attempt = index.attempts.get(op)
        if attempt is not None and attempt.idempotent and ack.offset >= 0:
            writer = (attempt.topic, attempt.partition, f"idempotent op {op} by {attempt.client}")
            content: Content = (None, attempt.key, attempt.value)
            sighting = Sighting(content, index.ack_epochs.get(op), ack.at_us, ack)
            places[writer].setdefault(ack.offset, sighting)
    for fetch in index.fetches:
        for record in fetch.records:
            if record.control is not None:
                continue
            sighting = Sighting(content_of(record), record.leader_epoch, fetch.at_us, fetch)
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
            message = f"{label} written twice: at {place_of(topic, partition)} offsets {offsets}"
            events = tuple(where[offset].event for offset in offsets)
            found.append(Violation("idempotence", message, events))
    return found


def _replaces(other: Sighting, mine: Sighting) -> bool:
    """Whether `other` shows a later record at the offset of `mine` (mine was truncated)."""
    if other.content == mine.content:
        return False
    if other.leader_epoch is not None and mine.leader_epoch is not None:
        return other.leader_epoch > mine.leader_epoch
    return other.at_us > mine.at_us


def check_read_committed(history: History) -> list[Violation]:
    """read_committed never delivers aborted or not-yet-committed data, nor records past LSO."""
    index = index_history(history)
    found: list[Violation] = []
    for fetch in index.fetches:
        if not fetch.read_committed:
            continue
        where = place_of(fetch.topic, fetch.partition)
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
                f"({show(content_of(record))}) but {problem}"
            )
            found.append(Violation("read_committed", message, (fetch, attempt, end)))
    return found


def check_no_phantoms(history: History) -> list[Violation]:
    """Every data record read was attempted, and not by an attempt that definitely failed."""
    index = index_history(history)
    found: list[Violation] = []
    for fetch in index.fetches:
        for record in fetch.records:
            if record.control is not None:
                continue
            where = place_of(fetch.topic, fetch.partition, record.offset)
            attempt = index.op_of(fetch.topic, fetch.partition, record)
            if attempt is None:
                message = (
                    f"{fetch.client} read {where} {show(content_of(record))}, which no producer "
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
