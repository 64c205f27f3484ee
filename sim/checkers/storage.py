"""Checkers of what the storage holds at the end, and of what a metadata wipe may undo.

pointers      Every segment row of the final metadata store (read without faults) names an
              object the bucket holds, whose footer decodes and lists a block of that
              partition at exactly that byte position and length, holding exactly that
              row's offsets in that row's leader epoch; and the rows of one partition never
              overlap.
deleted_reads No fetch is answered CORRUPT_MESSAGE (what a read of an object that is missing or
              corrupt gets) unless the simulator damaged, before the answer, an object whose
              rows named the fetch offset: no read ever hits an object deleted under it (a
              merged or compacted row's old object lives on for the reconciler's grace).
deletes       No object under orgs/ is deleted while a segment row of the store names it
              (checked at each delete, against the store read without faults), nor within
              the grace after it was written (by the bucket's clock), nor within the grace
              after it was released (its last segment row taken by a rewrite or retention,
              by the store's clock): a reader that listed its rows just before still finds
              it, whether or not any read comes.
orphans       After the reconciler ran at the end, every object under orgs/ older than the
              grace (it and its object row, and its release: the last segment row taken
              from it by a rewrite or retention) is named by a segment row: orphans are
              eventually deleted.
damage_reported Every object the simulator damaged that rows still name is reported by
              the verifying reconcile run at the end.
durable_log_start No final scan starts above an acks=all record acked before it: the
              workloads delete no records, so a log start moved past one lost it.
wipe_offsets  A metadata wipe sets a group's committed offset back only to one somebody asked
              to commit before the wipe (what the newest snapshot held), or to none: the
              simulator records each as an `OffsetReset` by WIPE_CLIENT, and `group_offsets`
              then judges every commit and read after it against it.

The pointers checker is fed the final state (`sim.disaster.final_storage`), not the history:
the rows are the store's own, the bytes the bucket's.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from sim.checkers.acks import describe_ack
from sim.checkers.index import WIPE_CLIENT, Violation, index_history, place_of
from sim.history import (
    ACKS_ALL,
    FetchFailed,
    History,
    ObjectDamaged,
    OffsetCommitAsked,
    OffsetCommitted,
    OffsetReset,
)
from streamhouse.errors import CorruptObject, ErrorCode
from streamhouse.log.object_format import BlockIndexEntry, footer_from_tail
from streamhouse.ports.leases import SegmentRecord

OBJECTS_PREFIX = "orgs/"  # objects written by flushes; snapshots live elsewhere
StoredObjects = Mapping[str, bytes | None]  # object key -> its bytes, None: not in the bucket


def check_pointers(
    rows: list[SegmentRecord], stored: StoredObjects, damaged: frozenset[str] = frozenset()
) -> list[Violation]:
    """Every segment row resolves to a block of its object holding exactly its offsets (but
    the objects the simulator `damaged` on purpose: `damage_reported` judges those)."""
    found: list[Violation] = []
    blocks: dict[str, tuple[BlockIndexEntry, ...] | str] = {}
    by_partition: dict[tuple[str, int], list[SegmentRecord]] = defaultdict(list)
    for row in rows:
        by_partition[(row.topic, row.partition)].append(row)
        key = row.object_key
        if key in damaged:
            continue
        if key not in blocks:
            blocks[key] = _footer_blocks(stored.get(key))
        listed = blocks[key]
        where = (
            f"the segment row of {place_of(row.topic, row.partition)} offsets "
            f"{row.base_offset}..{row.last_offset} (epoch {row.leader_epoch}) names {key} "
            f"bytes {row.position}+{row.length}"
        )
        if isinstance(listed, str):
            found.append(Violation("pointers", f"{where}, which {listed}"))
            continue
        if not any(_matches(row, entry) for entry in listed):
            found.append(Violation("pointers", f"{where}; its footer lists {_show(listed)}"))
    for (topic, partition), held in sorted(by_partition.items()):
        held.sort(key=lambda row: row.base_offset)
        for before, after in itertools.pairwise(held):
            if after.base_offset <= before.last_offset:
                message = (
                    f"segment rows of {place_of(topic, partition)} overlap: "
                    f"{before.base_offset}..{before.last_offset} in {before.object_key} and "
                    f"{after.base_offset}..{after.last_offset} in {after.object_key}"
                )
                found.append(Violation("pointers", message))
    return found


def _footer_blocks(data: bytes | None) -> tuple[BlockIndexEntry, ...] | str:
    """The blocks the object's footer lists, or what is wrong with the object."""
    if data is None:
        return "is not in the bucket"
    try:
        footer = footer_from_tail(data, len(data))
    except CorruptObject as damage:
        return f"cannot be read: {damage}"
    if isinstance(footer, int):
        return "cannot be read: its footer does not fit"
    return footer.blocks


def _matches(row: SegmentRecord, entry: BlockIndexEntry) -> bool:
    return (
        (entry.topic, entry.partition) == (row.topic, row.partition)
        and (entry.position, entry.length) == (row.position, row.length)
        and (entry.first_offset, entry.last_offset) == (row.base_offset, row.last_offset)
        and entry.leader_epoch == row.leader_epoch
    )


def _show(entries: tuple[BlockIndexEntry, ...]) -> str:
    shown = [
        f"{place_of(e.topic, e.partition)} {e.first_offset}..{e.last_offset} "
        f"(epoch {e.leader_epoch}) at {e.position}+{e.length}"
        for e in entries
    ]
    return "; ".join(shown) or "no blocks"


def check_deleted_reads(history: History) -> list[Violation]:
    """No fetch fails on a missing or corrupt object but where the simulator damaged one."""
    damaged = list(history.of_type(ObjectDamaged))
    found: list[Violation] = []
    for failed in history.of_type(FetchFailed):
        if failed.error_code != ErrorCode.CORRUPT_MESSAGE:
            continue
        where = (failed.topic, failed.partition)
        if any(
            damage.at_us <= failed.at_us
            and any(
                (span.topic, span.partition) == where
                and span.first_offset <= failed.fetch_offset <= span.last_offset
                for span in damage.spans
            )
            for damage in damaged
        ):
            continue
        message = (
            f"{failed.client}'s fetch of {place_of(failed.topic, failed.partition)} from "
            f"offset {failed.fetch_offset} was answered CORRUPT_MESSAGE by {failed.agent} at "
            f"{failed.at_us}us: an object its rows named was missing or corrupt, and the "
            "simulator damaged none there"
        )
        found.append(Violation("deleted_reads", message, (failed,)))
    return found


def check_wipe_offsets(history: History) -> list[Violation]:
    """A wipe sets a committed offset back only to none or to one asked for before it."""
    asked: dict[tuple[str, str, int], list[tuple[int, int]]] = defaultdict(list)
    found: list[Violation] = []
    for event in history:
        if isinstance(event, OffsetCommitted):
            key = (event.group, event.topic, event.partition)
            asked[key].append((event.requested_us, event.offset))
        elif isinstance(event, OffsetCommitAsked):  # its answer may have been lost
            key = (event.group, event.topic, event.partition)
            asked[key].append((event.at_us, event.offset))
        elif isinstance(event, OffsetReset) and event.client == WIPE_CLIENT:
            key = (event.group, event.topic, event.partition)
            if event.offset < 0 or any(
                offset == event.offset and at_us <= event.at_us for at_us, offset in asked[key]
            ):
                continue
            message = (
                f"the metadata wipe at {event.at_us}us set group {event.group} "
                f"{place_of(event.topic, event.partition)} back to offset {event.offset}, "
                f"which nobody asked to commit before it"
            )
            found.append(Violation("wipe_offsets", message, (event,)))
    return found


@dataclass(frozen=True)
class ObjectDeleted:
    """An object under orgs/ left the bucket at `at_us`, `age_ms` after it was last written
    (both by the bucket's clock); `named_by`: the segment rows of the metadata store that
    named it at that moment (read without faults); `released_age_ms`: how long before, by
    the store's clock, its object row was released (None: never, or no row)."""

    at_us: int
    key: str
    age_ms: int
    named_by: tuple[str, ...]
    released_age_ms: int | None = None


def check_deletes(deletes: list[ObjectDeleted], grace_ms: int) -> list[Violation]:
    """No object is deleted while a segment row names it, nor younger than the grace (its
    upload's commit may still be coming), nor within the grace after its release (a reader
    may have listed its rows just before)."""
    found: list[Violation] = []
    for deleted in deletes:
        if deleted.named_by:
            message = (
                f"{deleted.key} was deleted at {deleted.at_us}us while segment rows named it: "
                + ", ".join(deleted.named_by)
            )
            found.append(Violation("deletes", message))
        elif deleted.age_ms < grace_ms:
            message = (
                f"{deleted.key} was deleted at {deleted.at_us}us, {deleted.age_ms} ms after it "
                f"was written: within the grace of {grace_ms} ms"
            )
            found.append(Violation("deletes", message))
        elif deleted.released_age_ms is not None and deleted.released_age_ms < grace_ms:
            message = (
                f"{deleted.key} was deleted at {deleted.at_us}us, {deleted.released_age_ms} ms "
                f"after its last segment row went: within the grace of {grace_ms} ms"
            )
            found.append(Violation("deletes", message))
    return found


def check_orphans(
    listed: Mapping[str, int],
    created: Mapping[str, int],
    referenced: set[str],
    now_ms: int,
    grace_ms: int,
    released_age_ms: Mapping[str, int] | None = None,
) -> list[Violation]:
    """After a reconcile run at `now_ms`, every object under orgs/ (`listed`: key -> when
    it was last written) is named by a segment row, unless it or its object row (`created`:
    key -> when the row was made) is younger than the grace, or its last segment row went
    less than the grace ago (`released_age_ms`: key -> how long ago by the store's clock, for
    objects a rewrite or retention took rows from): orphans are eventually deleted."""
    released = released_age_ms or {}
    found: list[Violation] = []
    for key, modified_ms in sorted(listed.items()):
        if not key.startswith(OBJECTS_PREFIX) or key in referenced:
            continue
        if key in released and released[key] <= grace_ms:
            continue
        youngest_ms = max(modified_ms, created.get(key, modified_ms))
        if now_ms - youngest_ms > grace_ms:
            message = (
                f"{key} is in the bucket, named by no segment row, {now_ms - youngest_ms} ms "
                f"old after a reconcile run (grace {grace_ms} ms)"
            )
            found.append(Violation("orphans", message))
    return found


def check_durable_log_start(history: History) -> list[Violation]:
    """Nothing the workloads do deletes records (no DeleteRecords, no retention; compaction
    never moves a log start), so no final scan starts above an acks=all record acked before
    it: a log start moved there (say, by a rebuild that found a partition's first objects
    gone) loses durable records, which `final_reads` would take for deleted ones."""
    index = index_history(history)
    found: list[Violation] = []
    for op, ack in sorted(index.acks.items()):
        attempt = index.attempts.get(op)
        if attempt is None or attempt.acks != ACKS_ALL or ack.offset < 0:
            continue
        for scan in index.scans:
            where = (scan.topic, scan.partition) == (attempt.topic, attempt.partition)
            if where and scan.requested_us > ack.at_us and scan.start_offset > ack.offset:
                message = (
                    f"{describe_ack(index, attempt, ack)} lies below the log start "
                    f"{scan.start_offset} {scan.client} was given, and nothing deleted records"
                )
                found.append(Violation("durable_log_start", message, (attempt, ack, scan)))
                break
    return found


def check_damage_reported(damaged: list[str], reported: list[str]) -> list[Violation]:
    """Every object the simulator deleted or corrupted that segment rows still name is in the
    report of a (verifying) reconcile run after it."""
    return [
        Violation("damage_reported", f"{key} was damaged, rows name it, no reconcile reported it")
        for key in damaged
        if key not in reported
    ]
