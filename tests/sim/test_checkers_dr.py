"""Checker self-tests for disaster recovery (F9): a metadata wipe, and the pointers of the final
store into the bucket. Each anomaly is flagged by the checker that owns it; what a wipe
allows passes."""

from __future__ import annotations

from dataclasses import replace

from sim.checkers import check_all, check_deletes, check_orphans, check_pointers
from sim.checkers.index import WIPE_CLIENT
from sim.checkers.storage import ObjectDeleted, check_damage_reported, check_durable_log_start
from sim.history import (
    ACKS_ALL,
    ACKS_LEADER,
    FAULT_METADATA_WIPE,
    CommittedOffsetRead,
    FaultInjected,
    FetchFailed,
    ObjectDamaged,
    ObservedRecord,
    OffsetCommitAsked,
    OffsetCommitted,
    OffsetReset,
    OffsetSpan,
    ScanCompleted,
)
from streamhouse.errors import ErrorCode
from streamhouse.log.object_format import TRAILER_BYTES, BlockSpec, encode_object
from streamhouse.ports.leases import SegmentRecord
from tests.sim.scripted import Script
from tests.sim.test_checkers import commit, flagged, read_committed_offset

WIPE_EPOCH = 1001  # the rebuild leaps epochs past the unknown


def wipe(script: Script) -> None:
    script.history.append(FaultInjected(script.tick(), FAULT_METADATA_WIPE, "*"))


# -- acks across a wipe -------------------------------------------------------------


def test_an_acks1_record_lost_to_a_wipe_in_a_later_epoch_passes() -> None:
    script = Script()
    script.produce(b"v0", 0)
    script.produce(b"lost", 1, acks=ACKS_LEADER, epoch=1, agent="a1")
    wipe(script)
    script.produce(b"new", 1, epoch=WIPE_EPOCH, agent="a2")
    records = [ObservedRecord(0, None, b"v0", 1), ObservedRecord(1, None, b"new", WIPE_EPOCH)]
    script.scan(records, end_offset=2, epoch=WIPE_EPOCH)
    assert check_all(script.history) == []


def test_an_acks1_record_lost_to_a_wipe_in_no_later_epoch_is_flagged() -> None:
    """A partition the rebuild did not leap (say, created again at epoch 0): clients cannot
    tell the loss."""
    script = Script()
    script.produce(b"lost", 0, acks=ACKS_LEADER, epoch=3, agent="a1")
    wipe(script)
    script.produce(b"new", 0, epoch=0, agent="a1")
    script.scan([ObservedRecord(0, None, b"new", 0)], end_offset=1, epoch=0)
    # (acked_leader takes a read in an older epoch than the ack's for a stale view)
    assert flagged(script) == {"final_reads"}


def test_an_acks1_record_acked_after_the_wipe_is_not_excused_by_it() -> None:
    script = Script()
    wipe(script)
    script.produce(b"lost", 0, acks=ACKS_LEADER, epoch=WIPE_EPOCH, agent="a1")
    script.scan([], end_offset=0, epoch=WIPE_EPOCH + 1)
    assert flagged(script) == {"acked_leader", "final_reads"}


def test_an_acks_all_record_lost_to_a_wipe_is_flagged() -> None:
    script = Script()
    script.produce(b"durable", 0, acks=ACKS_ALL, epoch=1, agent="a1")
    wipe(script)
    script.produce(b"new", 0, epoch=WIPE_EPOCH, agent="a1")
    script.scan([ObservedRecord(0, None, b"new", WIPE_EPOCH)], end_offset=1, epoch=WIPE_EPOCH)
    assert flagged(script) == {"acked_durable", "final_reads"}


# -- committed offsets across a wipe ------------------------------------------------


def wipe_offsets(script: Script, offset: int) -> None:
    """A wipe that set group g's t/0 back to `offset` (the newest snapshot's, or -1)."""
    wipe(script)
    script.history.append(OffsetReset(script.tick(), WIPE_CLIENT, "g", "t", 0, offset))


def test_a_wipe_sets_offsets_back_to_the_snapshots_and_no_further() -> None:
    script = Script()
    commit(script, 5)
    commit(script, 10)
    wipe_offsets(script, 5)
    read_committed_offset(script, 5)
    commit(script, 7, generation=1_000_001)
    assert check_all(script.history) == []
    read_committed_offset(script, 6)  # below a commit after the wipe
    assert flagged(script) == {"group_offsets"}


def test_a_read_after_a_wipe_below_the_snapshots_offset_is_flagged() -> None:
    script = Script()
    commit(script, 5)
    commit(script, 10)
    wipe_offsets(script, 5)
    read_committed_offset(script, -1)  # the rebuild lost the snapshot's offsets
    assert flagged(script) == {"group_offsets"}


def test_a_wipe_to_an_offset_nobody_committed_is_flagged() -> None:
    script = Script()
    commit(script, 5)
    wipe_offsets(script, 7)
    assert flagged(script) == {"wipe_offsets"}
    script = Script()
    commit(script, 5)
    wipe_offsets(script, -1)  # no snapshot: nothing held
    assert check_all(script.history) == []
    script = Script()
    commit(script, 5)
    # asked, and its answer lost (the agent crashed with the store): the snapshot may hold it
    script.history.append(OffsetCommitAsked(script.tick(), "c1", "g", "t", 0, 8))
    wipe_offsets(script, 8)
    assert check_all(script.history) == []


def test_a_read_in_flight_across_a_wipe_is_judged_by_what_the_wipe_left() -> None:
    script = Script()
    commit(script, 4)
    commit(script, 10)
    asked_us = script.tick()
    wipe_offsets(script, 4)
    late = CommittedOffsetRead(script.tick(), asked_us, "c3", "g", "t", 0, 4)
    script.history.append(late)
    assert check_all(script.history) == []
    lower = CommittedOffsetRead(script.tick(), asked_us, "c3", "g", "t", 0, 3)
    script.history.append(lower)
    assert flagged(script) == {"group_offsets"}


def test_an_ordinary_commit_in_flight_is_still_judged_from_its_request() -> None:
    script = Script()
    commit(script, 10)
    asked_us = script.tick()
    commit(script, 12, client="c2")
    low = OffsetCommitted(script.tick(), asked_us, "c1", "g", 1, "c1", "t", 0, 9)
    script.history.append(low)
    assert flagged(script) == {"group_offsets"}


# -- pointers -----------------------------------------------------------------------


def stored_object() -> tuple[bytes, list[SegmentRecord]]:
    """An object with two blocks (t/0 offsets 0..4 in epoch 2, t/1 offsets 7..7 in epoch 3)
    and the segment rows a flush commit writes for it."""
    blocks = [
        BlockSpec("t", 0, 2, 0, 4, 100, b"batches-of-t0" * 5),
        BlockSpec("t", 1, 3, 7, 7, 101, b"batch-of-t1"),
    ]
    data, footer = encode_object(blocks, "org", "a1", 1_000)
    rows = [
        SegmentRecord(
            e.topic,
            e.partition,
            e.first_offset,
            e.last_offset,
            e.leader_epoch,
            e.max_timestamp_ms,
            "k1",
            e.position,
            e.length,
        )
        for e in footer.blocks
    ]
    return data, rows


def test_rows_naming_blocks_of_their_objects_pass() -> None:
    data, rows = stored_object()
    assert check_pointers(rows, {"k1": data}) == []


def test_a_row_naming_a_missing_object_is_flagged() -> None:
    _, rows = stored_object()
    [found, _] = check_pointers(rows, {"k1": None})
    assert found.checker == "pointers" and "not in the bucket" in found.message


def test_a_row_naming_a_damaged_object_is_flagged() -> None:
    data, rows = stored_object()
    at = len(data) - TRAILER_BYTES - 1  # the footer's last byte: its checksum fails
    damaged = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
    assert {v.checker for v in check_pointers(rows, {"k1": damaged})} == {"pointers"}


def test_a_row_not_matching_its_block_is_flagged() -> None:
    data, rows = stored_object()
    row = rows[0]
    wrong = [
        replace(row, last_offset=5),  # more offsets than the block holds
        replace(row, position=row.position + 1),
        replace(row, partition=1),
        replace(row, leader_epoch=9),
    ]
    for bad in wrong:
        [found] = check_pointers([bad], {"k1": data})
        assert "its footer lists" in found.message


def test_overlapping_rows_of_a_partition_are_flagged() -> None:
    data, rows = stored_object()
    again = replace(rows[0], object_key="k2")
    found = check_pointers([rows[0], again], {"k1": data, "k2": data})
    assert [v.checker for v in found] == ["pointers"] and "overlap" in found[0].message


# -- deletes and orphans ------------------------------------------------------------


def test_deleting_an_object_a_row_names_or_within_the_grace_is_flagged() -> None:
    old_orphan = ObjectDeleted(10, "orgs/o/objects/x.obj", 5_000, ())
    named = ObjectDeleted(20, "orgs/o/objects/y.obj", 5_000, ("t/0 0..4",))
    young = ObjectDeleted(30, "orgs/o/objects/z.obj", 999, ())
    assert check_deletes([old_orphan], grace_ms=1_000) == []
    found = check_deletes([old_orphan, named, young], grace_ms=1_000)
    assert [v.checker for v in found] == ["deletes", "deletes"]
    assert "y.obj" in found[0].message and "t/0 0..4" in found[0].message
    assert "z.obj" in found[1].message and "within the grace" in found[1].message
    released_late = ObjectDeleted(40, "orgs/o/objects/r.obj", 5_000, (), released_age_ms=1_500)
    released_early = ObjectDeleted(50, "orgs/o/objects/w.obj", 5_000, (), released_age_ms=999)
    assert check_deletes([released_late], grace_ms=1_000) == []
    [early] = check_deletes([released_late, released_early], grace_ms=1_000)
    assert "w.obj" in early.message and "after its last segment row went" in early.message


def test_an_old_object_no_row_names_left_after_a_reconcile_is_flagged() -> None:
    listed = {"metadata/snapshots/0000000000000001.snap": 0, "orgs/o/objects/a.obj": 0}
    referenced = {"orgs/o/objects/a.obj"}
    assert check_orphans(listed, {}, referenced, now_ms=10_000, grace_ms=1_000) == []
    junk = {**listed, "orgs/o/objects/junk.obj": 0}
    [found] = check_orphans(junk, {}, referenced, now_ms=10_000, grace_ms=1_000)
    assert found.checker == "orphans" and "junk.obj" in found.message
    young = {**listed, "orgs/o/objects/young.obj": 9_500}
    assert check_orphans(young, {}, referenced, now_ms=10_000, grace_ms=1_000) == []
    # an old upload whose row is young (committed late, then its segment rows dropped)
    rowed = {"orgs/o/objects/late.obj": 0}
    late = {"orgs/o/objects/late.obj": 9_500}
    assert check_orphans(rowed, late, set(), now_ms=10_000, grace_ms=1_000) == []


def test_a_durable_record_below_a_later_log_start_is_flagged() -> None:
    script = Script()
    script.produce(b"v0", 0)
    script.produce(b"v1", 1)
    wipe(script)
    # the rebuild found the partition's first object gone: the log starts at 1
    script.scan([ObservedRecord(1, None, b"v1", 1)], start_offset=1, end_offset=2)
    assert check_all(script.history) == []  # final_reads takes it for deleted records
    [found] = check_durable_log_start(script.history)
    assert found.checker == "durable_log_start" and "t/0@0" in found.message
    script = Script()
    script.produce(b"v0", 0)
    script.scan([ObservedRecord(0, None, b"v0", 1)], end_offset=1)
    assert check_durable_log_start(script.history) == []


# -- damaged objects ----------------------------------------------------------------


def damage(script: Script, first: int, last: int) -> None:
    span = OffsetSpan("t", 0, first, last)
    script.history.append(ObjectDamaged(script.tick(), "orgs/o/objects/d.obj", "deleted", (span,)))


def skipping_scan(script: Script) -> None:
    """A final scan of t/0 to 4 that read 0, then (past two offsets it could not read) 3."""
    requested_us = script.now_us + 1
    marks = {"client": "final", "high_watermark": 4, "log_start_offset": 0}
    script.fetch(0, [(0, b"v0")], **marks)  # type: ignore[arg-type]
    script.fetch(3, [(3, b"v3")], **marks)  # type: ignore[arg-type]
    scan = ScanCompleted(script.tick(), requested_us, "final", "t", 0, 0, 4, leader_epoch=1)
    script.history.append(scan)


def test_records_of_a_damaged_object_may_go_unread_and_only_they() -> None:
    script = Script()
    for offset in range(4):
        script.produce(b"v%d" % offset, offset)
    damage(script, 1, 2)
    skipping_scan(script)  # answered CORRUPT_MESSAGE at 1 and 2: skipped
    assert check_all(script.history) == []
    script = Script()
    for offset in range(4):
        script.produce(b"v%d" % offset, offset)
    damage(script, 1, 1)  # offset 2 was not in it: its loss is a loss
    skipping_scan(script)
    assert flagged(script) == {"final_reads"}


def test_a_loss_seen_before_the_damage_is_not_excused_by_it() -> None:
    script = Script()
    script.produce(b"v0", 0)
    script.scan([], end_offset=1)
    damage(script, 0, 0)
    assert flagged(script) == {"final_reads"}


def test_a_damaged_object_the_reconciler_did_not_report_is_flagged() -> None:
    assert check_damage_reported(["a.obj"], ["a.obj", "b.obj"]) == []
    [found] = check_damage_reported(["a.obj", "c.obj"], ["a.obj"])
    assert found.checker == "damage_reported" and "c.obj" in found.message


# -- reads of objects gone from under their rows ----------------------------------------


def _corrupt_answer(script: Script, offset: int) -> None:
    script.history.append(
        FetchFailed(script.tick(), script.tick(), "c1", "t", 0, offset, ErrorCode.CORRUPT_MESSAGE)
    )


def test_a_read_of_an_object_gone_from_under_its_rows_is_flagged() -> None:
    script = Script()
    script.produce(b"v0", 0)
    _corrupt_answer(script, 0)
    assert "deleted_reads" in flagged(script)


def test_a_read_of_an_object_the_simulator_damaged_there_passes() -> None:
    script = Script()
    script.produce(b"v0", 0)
    span = OffsetSpan("t", 0, 0, 4)
    script.history.append(ObjectDamaged(script.tick(), "orgs/x.obj", "deleted", (span,)))
    _corrupt_answer(script, 3)
    assert "deleted_reads" not in flagged(script)
    _corrupt_answer(script, 5)  # beyond what the damaged object held
    assert "deleted_reads" in flagged(script)


def test_an_object_released_within_the_grace_is_no_orphan_yet() -> None:
    listed = {"orgs/o/objects/merged-away.obj": 0}
    released = {"orgs/o/objects/merged-away.obj": 900}  # its rows were swapped 900 ms ago
    assert check_orphans(listed, {}, set(), 10_000, 1_000, released) == []
    long_ago = {"orgs/o/objects/merged-away.obj": 1_001}
    [found] = check_orphans(listed, {}, set(), 10_000, 1_000, long_ago)
    assert found.checker == "orphans"
