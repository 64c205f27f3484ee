"""The `final_reads` checker and `check_liveness`: the final scan holds every acked record; the
healed cluster makes progress."""

from __future__ import annotations

from sim.checkers.acks import Loss, describe_ack, unexcused
from sim.checkers.index import (
    LIVENESS,
    Content,
    HistoryIndex,
    Violation,
    content_of,
    index_history,
    show,
)
from sim.history import (
    ACKS_ALL,
    ACKS_LEADER,
    FetchObserved,
    History,
    ProduceAcked,
    ProduceAttempt,
    ScanCompleted,
)


def check_final_reads(history: History) -> list[Violation]:
    """After the final scan of a partition, every acked record is read back at its offset."""
    index = index_history(history)
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
        if ack.at_us > scan.requested_us:
            continue
        if index.superseded(attempt.topic, attempt.partition, ack.offset, attempt.key):
            continue  # compaction may have removed it
        if scan.read_committed and index.txn_visible(attempt) is not True:
            continue
        loss = _missing_from_scan(scan, scanned[tp], attempt, ack)
        why = None if loss is None else unexcused(index, attempt, ack, [loss])
        if why is None:
            continue
        message = f"{describe_ack(index, attempt, ack)} is not in the final read: {why}"
        found.append(Violation("final_reads", message, (attempt, ack, scan)))
    return found


def _scanned(index: HistoryIndex, scan: ScanCompleted) -> dict[int, tuple[Content, int | None]]:
    """What the scan read, by offset (the latest reading of each offset)."""
    read: dict[int, tuple[Content, int | None]] = {}
    for fetch in index.scan_fetches(scan):
        read.update((r.offset, (content_of(r), r.leader_epoch)) for r in fetch.records)
    return read


def _missing_from_scan(
    scan: ScanCompleted,
    read: dict[int, tuple[Content, int | None]],
    attempt: ProduceAttempt,
    ack: ProduceAcked,
) -> Loss | None:
    if ack.offset < scan.start_offset:
        return None
    if ack.offset >= scan.end_offset:
        why = f"{scan.client} scanned up to high watermark {scan.end_offset}"
        return Loss(why, scan, scan.at_us, scan.leader_epoch)
    if ack.offset not in read:
        return Loss(f"{scan.client}'s scan did not return it", scan, scan.at_us, scan.leader_epoch)
    content, epoch = read[ack.offset]
    if content == (None, attempt.key, attempt.value):
        return None
    return Loss(f"the scan found {show(content)} there", scan, scan.at_us, epoch)


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
