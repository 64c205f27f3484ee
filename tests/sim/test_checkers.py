"""Checker self-tests: hand-written client histories, each with one anomaly or none.

An anomaly must be flagged by the checker that owns the promise (and by no
unrelated one); clean histories, including the losses and gaps the model
allows, must pass every checker.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.checkers import (
    Violation,
    check_all,
    check_liveness,
)
from sim.history import (
    ACKS_LEADER,
    CONTROL_ABORT,
    CONTROL_COMMIT,
    FAULT_DISK_LOSS,
    FAULT_LEASE_FENCED,
    FAULT_RESTART,
    OFFSET_OUT_OF_RANGE,
    PHASE_LIVENESS,
    CommittedOffsetRead,
    Event,
    FaultInjected,
    FetchFailed,
    GenerationJoined,
    GroupGeneration,
    History,
    ObservedRecord,
    OffsetCommitted,
    OffsetReset,
    PhaseStarted,
    ProduceAcked,
    ProduceAttempt,
    ScanCompleted,
    TopicCreated,
    TopicPartition,
    TxnEnded,
)
from sim.verdict import (
    EXIT_CORRECTNESS,
    EXIT_CRASH,
    EXIT_LIVENESS,
    EXIT_OK,
    exit_code,
    report,
)
from sim.verdict import main as verdict_main
from tests.sim.scripted import Script


def flagged(script: Script) -> set[str]:
    return {violation.checker for violation in check_all(script.history)}


def three_acked(script: Script) -> None:
    for offset, value in enumerate([b"v0", b"v1", b"v2"]):
        script.produce(value, offset)


# -- clean histories -------------------------------------------------------------


def test_a_clean_produce_read_scan_passes() -> None:
    script = Script()
    three_acked(script)
    script.fetch(0, [(0, b"v0"), (1, b"v1")], high_watermark=3, log_start_offset=0)
    script.fetch(2, [(2, b"v2")], high_watermark=3, log_start_offset=0)
    script.scan([(0, b"v0"), (1, b"v1"), (2, b"v2")], end_offset=3)
    assert check_all(script.history) == []


def test_acks1_loss_after_disk_loss_with_an_epoch_bump_passes() -> None:
    script = Script()
    script.produce(b"v0", 0)
    lost = script.produce(b"lost", 1, acks=ACKS_LEADER, epoch=1, agent="a1")
    script.fetch(0, [(0, b"v0"), (1, b"lost")], high_watermark=2)
    script.history.append(FaultInjected(script.tick(), FAULT_DISK_LOSS, "a1"))
    script.produce(b"new", 1, epoch=2, agent="a2")
    records = [ObservedRecord(0, None, b"v0", 1), ObservedRecord(1, None, b"new", 2)]
    script.fetch(0, records, epoch=2, high_watermark=2)
    script.scan(records, end_offset=2, epoch=2)
    assert lost.acks == ACKS_LEADER
    assert check_all(script.history) == []


def test_acks1_loss_after_a_fenced_lease_passes() -> None:
    script = Script()
    script.produce(b"v0", 0, acks=ACKS_LEADER, epoch=3, agent="a1")
    fence = FaultInjected(script.tick(), FAULT_LEASE_FENCED, "a1", "t", 0, epoch=3)
    script.history.append(fence)
    script.scan([], end_offset=0, epoch=4)
    assert check_all(script.history) == []


def test_acks1_loss_without_epochs_is_flagged() -> None:
    script = Script()
    script.produce(b"lost", 0, acks=ACKS_LEADER, epoch=None, agent=None)
    script.fetch(0, [(0, b"lost")], epoch=None, high_watermark=1)
    script.history.append(FaultInjected(script.tick(), FAULT_DISK_LOSS, "a1"))
    script.fetch(0, [], epoch=None, high_watermark=0)
    script.produce(b"new", 0, epoch=None, agent=None)
    script.scan([(0, b"new")], end_offset=1, epoch=None)
    assert flagged(script) == {"acked_leader", "final_reads"}
    (violation,) = [v for v in check_all(script.history) if v.checker == "acked_leader"]
    assert "unknown" in violation.message


@pytest.mark.parametrize(
    ("read_back", "seen_before", "flags"),
    [(True, None, set()), (False, 2, {"acked_leader"}), (False, 1, set()), (False, None, set())],
    ids=["read-back", "agent-seen-in-2", "agent-seen-in-1", "nothing-known"],
)
def test_the_epoch_of_an_ack_is_that_of_the_acked_record_read_back(
    read_back: bool, seen_before: int | None, flags: set[str]
) -> None:
    """Read back, an ack's epoch is its batch's; otherwise it is at least the epoch its agent
    was seen in before it acked; with nothing known, the disk loss alone excuses it."""
    script = Script()
    if seen_before is not None:
        script.produce(b"before", 0, acks=ACKS_LEADER, epoch=seen_before, agent="a1")
    script.produce(b"lost", 1, acks=ACKS_LEADER, epoch=None, agent="a1")
    if read_back:
        records = [ObservedRecord(1, None, b"lost", 1)]
        script.fetch(1, records, client="producer", epoch=None, agent="a1")
    script.history.append(FaultInjected(script.tick(), FAULT_DISK_LOSS, "a1"))
    script.produce(b"new", 1, epoch=None, agent="a1")
    records = [ObservedRecord(1, None, b"new", 2)]
    script.fetch(1, records, client="member", epoch=None, agent="a1", high_watermark=2)
    assert flagged(script) == flags
    if flags:
        (violation,) = check_all(script.history)
        assert "acked in epoch 2 or later, seen in epoch 2" in violation.message


def test_a_deposed_leaders_acks1_write_read_back_in_its_old_epoch_may_be_lost() -> None:
    script = Script()
    fence = FaultInjected(script.tick(), FAULT_LEASE_FENCED, "a1", "t", 0, epoch=1)
    script.history.append(fence)
    script.produce(b"zombie", 0, acks=ACKS_LEADER, epoch=None, agent="a1")
    zombie = [ObservedRecord(0, None, b"zombie", 1)]
    script.fetch(0, zombie, client="producer", epoch=None, agent="a1")
    script.produce(b"new", 0, epoch=None, agent="a2")
    script.fetch(0, [ObservedRecord(0, None, b"new", 2)], epoch=None, agent="a2")
    assert check_all(script.history) == []


@pytest.mark.parametrize(
    ("between", "flags"),
    [(None, set()), ("a3", set()), ("a2", {"acked_leader"})],
    ids=["no-fault", "fault-elsewhere", "fault-on-a2"],
)
def test_a_high_watermark_below_an_ack_is_placed_in_the_epoch_its_agent_served(
    between: str | None, flags: set[str]
) -> None:
    script = Script()
    script.produce(b"first", 0, acks=ACKS_LEADER, epoch=1, agent="a1")
    script.produce(b"lost", 1, acks=ACKS_LEADER, epoch=1, agent="a1")
    script.history.append(FaultInjected(script.tick(), FAULT_DISK_LOSS, "a1"))
    script.produce(b"new", 0, acks=ACKS_LEADER, epoch=None, agent="a2")
    # a2 answers with the log ending at the lost ack: in which epoch?
    script.fetch(1, [], client="member", epoch=None, agent="a2", high_watermark=1)
    if between is not None:
        script.history.append(FaultInjected(script.tick(), FAULT_RESTART, between))
    # ... in the epoch of the batches a2 serves, while no fault may have changed it
    records = [ObservedRecord(0, None, b"new", 2)]
    script.fetch(0, records, client="other", epoch=None, agent="a2", high_watermark=2)
    assert flagged(script) == flags
    if flags:
        (violation,) = check_all(script.history)
        assert "unknown leader epoch" in violation.message


def test_without_epochs_a_fault_free_span_is_one_epoch() -> None:
    script = Script()
    script.fetch(0, [], epoch=None, high_watermark=5)
    script.fetch(0, [], epoch=None, high_watermark=4)
    assert flagged(script) == {"watermarks"}
    script = Script()
    script.attempt(b"x")
    script.attempt(b"y")
    script.fetch(0, [(0, b"x")], epoch=None)
    script.fetch(0, [(0, b"y")], epoch=None)
    assert flagged(script) == {"one_value"}


def test_without_epochs_skipping_a_truncated_offset_of_a_transactional_partition_passes() -> None:
    script = Script()
    script.attempt(b"first", acks=ACKS_LEADER)
    script.produce(b"lost", 1, acks=ACKS_LEADER, epoch=None, agent=None)
    script.history.append(FaultInjected(script.tick(), FAULT_DISK_LOSS, "a1"))
    script.produce(b"t0", 0, txn=1, client="txp", epoch=None, agent=None)
    script.history.append(TxnEnded(script.tick(), script.now_us - 5, "txp", 1, committed=False))
    # Offset 1 now holds the abort marker, which a consumer never sees.
    script.fetch(0, [(0, b"t0")], epoch=None, next_offset=2)
    assert check_all(script.history) == []


def test_a_deposed_leaders_reader_is_judged_by_its_own_epoch() -> None:
    script = Script()
    script.produce(b"t0", 0, txn=1, client="txp", epoch=1)
    script.history.append(TxnEnded(script.tick(), script.now_us - 5, "txp", 1, committed=True))
    marker = ObservedRecord(1, None, None, 1, control=CONTROL_COMMIT)
    script.fetch(0, [ObservedRecord(0, None, b"t0", 1), marker], client="raw")
    fence = FaultInjected(script.tick(), FAULT_LEASE_FENCED, "a1", "t", 0, epoch=1)
    script.history.append(fence)
    script.produce(b"new", 1, epoch=2, agent="a2")
    script.fetch(0, [ObservedRecord(0, None, b"t0", 1), ObservedRecord(1, None, b"new", 2)])
    # A reader still on a1 skips the marker at 1, which epoch 2 replaced by data.
    script.fetch(0, [(0, b"t0")], client="stale", epoch=1, next_offset=2)
    assert check_all(script.history) == []


def test_gaps_from_control_records_pass() -> None:
    script = Script()
    script.produce(b"t0", 0, txn=1, client="txp")
    script.produce(b"t1", 1, txn=1, client="txp")
    script.history.append(TxnEnded(script.tick(), script.now_us - 5, "txp", 1, committed=True))
    script.produce(b"plain", 3)
    marker = ObservedRecord(2, None, None, 1, control=CONTROL_COMMIT)
    # A consumer never sees markers: offset 2 is a gap, explained by the transaction.
    script.fetch(0, [(0, b"t0"), (1, b"t1"), (3, b"plain")], read_committed=True)
    # A raw reader sees the marker itself.
    raw = [ObservedRecord(o, None, v, 1) for o, v in ((0, b"t0"), (1, b"t1"))]
    script.fetch(0, [*raw, marker, ObservedRecord(3, None, b"plain", 1)], client="raw")
    # Aborted data is skipped under read_committed; its marker too.
    script.produce(b"gone", 4, txn=2, client="txp")
    script.history.append(TxnEnded(script.tick(), script.now_us - 5, "txp", 2, committed=False))
    script.produce(b"after", 6)
    script.fetch(4, [(6, b"after")], read_committed=True, high_watermark=7, last_stable_offset=7)
    assert check_all(script.history) == []


def test_gaps_from_delete_records_and_compaction_pass() -> None:
    script = Script()
    for offset in range(6):
        script.produce(b"v%d" % offset, offset)
    script.fetch(0, [(0, b"v0"), (1, b"v1")], high_watermark=6, log_start_offset=0)
    # DeleteRecords moved the log start to 4 under the reader's position 2.
    script.fetch(2, [(4, b"v4"), (5, b"v5")], high_watermark=6, log_start_offset=4)
    script.scan([(4, b"v4"), (5, b"v5")], start_offset=4, end_offset=6)
    script.history.append(TopicCreated(script.tick(), "admin", "c", 1, compacted=True))
    for offset in range(3):  # one key: compaction keeps the last record only
        script.produce(b"c%d" % offset, offset, topic="c", key=b"k")
    script.fetch(0, [ObservedRecord(2, b"k", b"c2", 1)], topic="c")
    assert check_all(script.history) == []


def test_compaction_never_removes_the_last_record_of_a_key() -> None:
    script = Script()
    script.history.append(TopicCreated(script.tick(), "admin", "c", 1, compacted=True))
    keys = (b"a", b"b", b"a")  # b's only record at offset 1 must stay
    for offset, key in enumerate(keys):
        script.produce(b"c%d" % offset, offset, topic="c", key=key)
    script.fetch(0, [ObservedRecord(2, b"a", b"c2", 1)], topic="c")
    flagged_by = {violation.checker for violation in check_all(script.history)}
    assert "reader_offsets" in flagged_by


def test_explicit_offset_reset_allows_a_lower_commit() -> None:
    script = Script()
    commit(script, 10)
    script.history.append(OffsetReset(script.tick(), "ops", "g", "t", 0, 3))
    commit(script, 4)
    read_committed_offset(script, 4)
    assert check_all(script.history) == []


def test_histories_round_trip_through_json_lines() -> None:
    script = Script()
    three_acked(script)
    script.fetch(0, [(0, b"v0"), (2, b"v2")])
    text = script.history.to_jsonl()
    again = History.from_jsonl(text)
    assert again.events == script.history.events
    assert again.to_jsonl() == text
    assert check_all(again) == check_all(script.history) != []
    assert again.new_op() == 4


REGRESSIONS = Path(__file__).resolve().parent / "regressions"


@pytest.mark.parametrize("path", sorted(REGRESSIONS.glob("*.json")), ids=lambda path: path.stem)
def test_histories_of_older_reproduction_files_still_load(path: Path) -> None:
    """Fields added since (e.g. an ack's log start) take their defaults; nothing is lost."""
    lines = json.loads(path.read_text())["history"]
    history = History.from_jsonl("\n".join(lines))
    assert len(history) == len(lines) > 0
    again = History.from_jsonl(history.to_jsonl())
    assert again.events == history.events
    check_all(history)  # and can be judged


def test_histories_save_and_load(tmp_path: Path) -> None:
    script = Script()
    three_acked(script)
    path = tmp_path / "seed-7.history.jsonl"
    script.history.save(path)
    assert History.load(path).events == script.history.events


def test_unknown_transaction_outcomes_are_not_held_against_the_run() -> None:
    script = Script()
    script.produce(b"t0", 0, txn=1, client="txp")
    script.fetch(0, [(0, b"t0")], client="plain")
    script.history.append(TxnEnded(script.tick(), script.now_us - 5, "txp", 1, committed=None))
    script.fetch(0, [(0, b"t0")], read_committed=True)
    script.produce(b"t1", 1, txn=2, client="txp")
    script.fetch(1, [(1, b"t1")], read_committed=True, client="rc2")
    assert flagged(script) == set()


# -- anomalies -------------------------------------------------------------------


def test_lost_acked_durable_write_is_flagged() -> None:
    script = Script()
    three_acked(script)
    script.fetch(0, [(0, b"v0")], client="late", high_watermark=1)
    assert flagged(script) == {"acked_durable"}


def test_a_stale_leader_answer_is_not_a_loss() -> None:
    script = Script()
    script.produce(b"v0", 0, epoch=2, agent="a2")
    # A reader still on the old leader (epoch 1) is told the old high watermark.
    script.fetch(0, [], client="stale", epoch=1, high_watermark=0)
    script.fetch(0, [(0, b"v0")], client="fresh", epoch=2, high_watermark=1)
    assert flagged(script) == set()


def test_acked_durable_missing_from_the_final_read_is_flagged() -> None:
    script = Script()
    three_acked(script)
    script.scan([(0, b"v0"), (1, b"v1")], end_offset=2)
    assert flagged(script) == {"acked_durable", "final_reads"}


def test_acked_durable_overwritten_even_after_a_fault_is_flagged() -> None:
    script = Script()
    script.produce(b"v0", 0, epoch=1)
    script.history.append(FaultInjected(script.tick(), FAULT_DISK_LOSS, "a1"))
    script.attempt(b"other")
    script.fetch(0, [(0, b"other")], epoch=2)
    assert flagged(script) == {"acked_durable"}


def test_idempotent_duplicate_is_flagged() -> None:
    script = Script()
    script.produce(b"once", 0, idempotent=True)
    script.fetch(0, [(0, b"once"), (1, b"once")])
    assert flagged(script) == {"idempotence"}


def test_duplicate_producer_sequence_is_flagged() -> None:
    script = Script()
    script.attempt(b"a")  # the workload did not know; the batch header says who wrote it
    script.attempt(b"b")
    records = [ObservedRecord(0, None, b"a", 1, None, 7, 0, 5), ObservedRecord(1, None, b"b", 1)]
    records += [ObservedRecord(2, None, b"a", 1, None, 7, 0, 5)]
    script.fetch(0, records)
    (violation,) = check_all(script.history)
    assert violation.checker == "idempotence"
    assert "producer id 7 epoch 0 sequence 5 written twice" in violation.message


def test_an_older_epochs_record_does_not_hide_a_duplicate() -> None:
    script = Script()
    script.attempt(b"old")
    script.history.append(FaultInjected(script.tick(), FAULT_DISK_LOSS, "a1"))
    script.produce(b"once", 0, idempotent=True, epoch=2)
    records = [ObservedRecord(0, None, b"old", 1)]
    script.fetch(0, records, client="before", epoch=1)
    script.fetch(0, [ObservedRecord(0, None, b"once", 2), ObservedRecord(1, None, b"once", 2)])
    assert flagged(script) == {"idempotence"}


@pytest.mark.parametrize(("ended_in", "flags"), [(2, set()), (1, {"idempotence"})])
def test_a_copy_above_where_a_later_epoch_ended_was_lost_not_duplicated(
    ended_in: int, flags: set[str]
) -> None:
    """A reader saw the idempotent batch at offset 3 in epoch 1, from a tail its leader lost
    with its lease; its retry was acked at 1 in epoch 2, whose log ended at 2. The same end
    told in epoch 1 proves nothing."""
    script = Script()
    attempt = script.attempt(b"once", idempotent=True)
    script.fetch(3, [(3, b"once")], client="early", high_watermark=4)
    script.history.append(FaultInjected(script.tick(), FAULT_LEASE_FENCED, "a1", "t", 0))
    script.ack(attempt, 1, epoch=2)
    ended = [ObservedRecord(1, None, b"once", 2)]
    script.fetch(1, ended, client="late", epoch=ended_in, high_watermark=2)
    assert flagged(script) == flags


def test_non_idempotent_retry_duplicates_are_allowed() -> None:
    script = Script()
    script.produce(b"twice", 1)
    script.fetch(0, [(0, b"twice"), (1, b"twice")])
    assert flagged(script) == set()


def test_two_values_at_one_offset_are_flagged() -> None:
    script = Script()
    script.attempt(b"x")
    script.attempt(b"y")
    script.fetch(0, [(0, b"x")], client="one")
    script.fetch(0, [(0, b"y")], client="two")
    assert flagged(script) == {"one_value"}


def test_without_epochs_only_a_fault_between_two_values_excuses_them() -> None:
    script = Script()
    script.attempt(b"x")
    script.attempt(b"y")
    script.history.append(FaultInjected(script.tick(), FAULT_DISK_LOSS, "a1"))
    script.fetch(0, [(0, b"x")], epoch=None)
    script.fetch(0, [(0, b"y")], epoch=None)
    assert flagged(script) == {"one_value"}


def test_without_epochs_an_acked_record_overwritten_is_lost() -> None:
    # an ack that a read contradicts is a loss (acked_*), not two values read (one_value)
    script = Script()
    script.produce(b"v0", 0, epoch=None, agent=None)
    script.attempt(b"other")
    script.fetch(0, [(0, b"other")], epoch=None)
    assert flagged(script) == {"acked_durable"}


def test_a_fault_after_both_values_does_not_excuse_them() -> None:
    script = Script()
    script.attempt(b"x")
    script.attempt(b"y")
    script.fetch(0, [(0, b"x")], epoch=1)
    script.fetch(0, [(0, b"y")], epoch=2)
    script.history.append(FaultInjected(script.tick(), FAULT_DISK_LOSS, "a1"))
    assert flagged(script) == {"one_value"}


def test_two_values_across_epochs_without_a_fault_are_flagged() -> None:
    script = Script()
    script.attempt(b"x")
    script.attempt(b"y")
    script.fetch(0, [(0, b"x")], epoch=1)
    script.fetch(0, [(0, b"y")], epoch=2)
    assert flagged(script) == {"one_value"}


def test_offsets_going_backwards_are_flagged() -> None:
    script = Script()
    three_acked(script)
    script.fetch(0, [(0, b"v0"), (2, b"v2"), (1, b"v1")])
    assert flagged(script) == {"reader_offsets"}


def test_a_position_behind_what_was_read_is_flagged() -> None:
    script = Script()
    three_acked(script)
    script.fetch(0, [(0, b"v0"), (1, b"v1")], next_offset=1)
    assert flagged(script) == {"reader_offsets"}


def test_record_below_the_fetch_offset_is_flagged() -> None:
    script = Script()
    three_acked(script)
    script.fetch(2, [(1, b"v1"), (2, b"v2")])
    assert flagged(script) == {"reader_offsets"}


def test_unexplained_gap_is_flagged() -> None:
    script = Script()
    three_acked(script)
    script.fetch(0, [(0, b"v0"), (2, b"v2")])
    assert flagged(script) == {"reader_offsets"}
    script = Script()
    script.attempt(b"only")
    script.fetch(0, [(5, b"only")])
    assert flagged(script) == {"reader_offsets"}


def test_skipping_aborted_data_under_read_uncommitted_is_flagged() -> None:
    script = Script()
    script.produce(b"t0", 0, txn=1, client="txp")
    script.history.append(TxnEnded(script.tick(), script.now_us - 5, "txp", 1, committed=False))
    script.produce(b"plain", 2)
    script.fetch(0, [(2, b"plain")])
    assert flagged(script) == {"reader_offsets"}


def test_skipping_committed_data_under_read_committed_is_flagged() -> None:
    script = Script()
    script.produce(b"t0", 0, txn=1, client="txp")
    script.history.append(TxnEnded(script.tick(), script.now_us - 5, "txp", 1, committed=True))
    script.produce(b"plain", 2)
    script.fetch(0, [(2, b"plain")], read_committed=True)
    assert flagged(script) == {"reader_offsets", "torn_transactions"}  # a committed one, too


def test_high_watermark_regressing_within_an_epoch_is_flagged() -> None:
    script = Script()
    script.fetch(0, [], high_watermark=10, last_stable_offset=10, log_start_offset=2)
    script.fetch(0, [], high_watermark=8, last_stable_offset=8, log_start_offset=2)
    assert flagged(script) == {"watermarks"}
    (violation,) = [v for v in check_all(script.history) if "high watermark" in v.message]
    assert "10 to 8" in violation.message


def test_watermarks_may_restart_lower_in_a_new_epoch() -> None:
    script = Script()
    script.fetch(0, [], high_watermark=10, epoch=1)
    script.fetch(0, [], high_watermark=8, epoch=2)
    script.fetch(0, [], high_watermark=9, epoch=1, client="other")
    assert flagged(script) == set()


@pytest.mark.parametrize(
    ("marks", "reason"),
    [
        ({"high_watermark": 1, "last_stable_offset": 2}, "LSO 2 above high watermark 1"),
        ({"high_watermark": 1, "log_start_offset": 2}, "log start 2 above high watermark 1"),
        ({"high_watermark": 3, "log_start_offset": 1}, "offset 0 below log start 1"),
    ],
)
def test_inconsistent_marks_in_one_response_are_flagged(marks: dict[str, int], reason: str) -> None:
    script = Script()
    script.attempt(b"v0")
    script.fetch(0, [(0, b"v0")], **marks)
    assert flagged(script) == {"watermarks"}
    assert any(reason in v.message for v in check_all(script.history))


def test_log_start_regressing_and_records_past_the_high_watermark_are_flagged() -> None:
    script = Script()
    script.fetch(4, [], log_start_offset=4)
    script.fetch(4, [], log_start_offset=3)
    assert flagged(script) == {"watermarks"}
    script = Script()
    script.attempt(b"v0")
    script.fetch(0, [(0, b"v0")], high_watermark=0)
    assert flagged(script) == {"watermarks"}


def test_aborted_read_under_read_committed_is_flagged() -> None:
    script = Script()
    script.produce(b"t0", 0, txn=1, client="txp")
    script.history.append(TxnEnded(script.tick(), script.now_us - 5, "txp", 1, committed=False))
    abort = ObservedRecord(1, None, None, 1, control=CONTROL_ABORT)
    script.fetch(0, [(0, b"t0")], read_committed=True)
    script.fetch(0, [ObservedRecord(0, None, b"t0", 1), abort], client="raw")
    assert flagged(script) == {"read_committed"}


def test_read_before_commit_was_requested_is_flagged() -> None:
    script = Script()
    script.produce(b"t0", 0, txn=1, client="txp")
    script.fetch(0, [(0, b"t0")], read_committed=True)
    script.history.append(TxnEnded(script.tick(), script.now_us - 5, "txp", 1, committed=True))
    assert flagged(script) == {"read_committed"}


def test_record_at_the_last_stable_offset_under_read_committed_is_flagged() -> None:
    script = Script()
    script.produce(b"v0", 0)
    script.fetch(0, [(0, b"v0")], read_committed=True, high_watermark=1, last_stable_offset=0)
    assert flagged(script) == {"read_committed"}


def test_phantom_and_definitely_failed_reads_are_flagged() -> None:
    script = Script()
    script.fetch(0, [(0, b"never sent")])
    assert flagged(script) == {"no_phantoms"}
    script = Script()
    failed = script.attempt(b"refused")
    script.fail(failed, definite=True)
    script.fetch(0, [(0, b"refused")])
    assert flagged(script) == {"no_phantoms"}
    script = Script()
    unknown = script.attempt(b"timed out")
    script.fail(unknown, definite=False)
    script.fetch(0, [(0, b"timed out")])
    assert flagged(script) == set()


def test_two_owners_in_one_generation_are_flagged() -> None:
    script = Script()
    both = (TopicPartition("t", 0),)
    script.history.append(GroupGeneration(script.tick(), "c1", "g", 3, "m1", both))
    script.history.append(GroupGeneration(script.tick(), "c2", "g", 3, "m2", both))
    script.history.append(GroupGeneration(script.tick(), "c2", "g", 4, "m2", both))
    assert flagged(script) == {"group_owners"}


def commit(script: Script, offset: int, client: str = "c1", generation: int = 1) -> None:
    requested_us = script.tick()
    event = OffsetCommitted(
        script.tick(), requested_us, client, "g", generation, client, "t", 0, offset
    )
    script.history.append(event)


def read_committed_offset(script: Script, offset: int) -> None:
    requested_us = script.tick()
    event = CommittedOffsetRead(script.tick(), requested_us, "c3", "g", "t", 0, offset)
    script.history.append(event)


def test_committed_offset_regression_is_flagged() -> None:
    script = Script()
    commit(script, 10)
    commit(script, 5, client="c2", generation=2)
    assert flagged(script) == {"group_offsets"}


def test_committed_offset_read_back_lower_is_flagged() -> None:
    script = Script()
    commit(script, 10)
    read_committed_offset(script, 7)
    assert flagged(script) == {"group_offsets"}
    script = Script()
    commit(script, 10)
    read_committed_offset(script, -1)
    assert flagged(script) == {"group_offsets"}
    script = Script()
    commit(script, 10)
    read_committed_offset(script, 12)
    (violation,) = check_all(script.history)
    assert "nobody committed" in violation.message


def test_a_read_back_may_answer_a_commit_still_in_flight() -> None:
    """c2's read completes before c1's commit does, but after c1 asked for it."""
    script = Script()
    commit(script, 10)
    read_asked_us = script.tick()
    commit_asked_us = script.tick()
    read = CommittedOffsetRead(script.tick(), read_asked_us, "c2", "g", "t", 0, 12)
    script.history.append(read)
    landed = OffsetCommitted(script.tick(), commit_asked_us, "c1", "g", 1, "c1", "t", 0, 12)
    script.history.append(landed)
    assert flagged(script) == set()


def truncated_tail(script: Script, seen_by: str, epoch_after: int) -> None:
    """c1 reads t/0 up to 9 in epoch 1 and commits 10; the log is then cut back to 5 and
    rewritten from there in `epoch_after`, which `seen_by` reads."""
    for offset in range(10):
        script.produce(b"v%d" % offset, offset, acks=ACKS_LEADER, epoch=1)
    records = [ObservedRecord(o, None, b"v%d" % o, 1) for o in range(10)]
    script.fetch(0, records, client="c1", high_watermark=10)
    commit(script, 10)
    script.history.append(FaultInjected(script.tick(), FAULT_DISK_LOSS, "a1"))
    script.produce(b"w5", 5, acks=ACKS_LEADER, epoch=epoch_after)
    script.fetch(10, [], client=seen_by, epoch=None, agent="a1", high_watermark=6)
    rewritten = [ObservedRecord(5, None, b"w5", epoch_after)]
    script.fetch(5, rewritten, client=seen_by, epoch=None, agent="a1", high_watermark=6)


def test_a_lower_commit_after_the_member_saw_the_log_rewritten_passes() -> None:
    script = Script()
    truncated_tail(script, seen_by="c1", epoch_after=2)
    commit(script, 6)
    read_committed_offset(script, 6)
    commit(script, 8)
    assert check_all(script.history) == []


@pytest.mark.parametrize(
    ("seen_by", "epoch_after"), [("c2", 2), ("c1", 1)], ids=["another-reader", "same-epoch"]
)
def test_a_lower_commit_without_the_member_seeing_a_later_epoch_is_flagged(
    seen_by: str, epoch_after: int
) -> None:
    script = Script()
    truncated_tail(script, seen_by=seen_by, epoch_after=epoch_after)
    commit(script, 6)
    flags = flagged(script)
    assert "group_offsets" in flags
    assert flags <= {"group_offsets", "acked_leader", "one_value", "final_reads"}


@pytest.mark.parametrize(
    ("taker_named", "flags"),
    [(True, set()), (False, {"group_offsets", "acked_leader"})],  # a loss in no known epoch
)
def test_a_lower_commit_after_the_new_leader_answered_a_shorter_log_passes(
    taker_named: bool, flags: set[str]
) -> None:
    """c1 read to 9 in epoch 1 from a1 and committed 10; a1's lease went to a2 in epoch 2 (the
    unflushed tail lost); a2 answered c1 with old-epoch records only and a high watermark of
    7, which is epoch 2's log only if the fence says a2 took the lease in epoch 2."""
    script = Script()
    for offset in range(10):
        script.produce(b"v%d" % offset, offset, acks=ACKS_LEADER, epoch=1)
    records = [ObservedRecord(o, None, b"v%d" % o, 1) for o in range(10)]
    script.fetch(0, records, client="c1", epoch=None, agent="a1", high_watermark=10)
    commit(script, 10)
    taker = {"next_agent": "a2", "next_epoch": 2} if taker_named else {}
    fence = FaultInjected(script.tick(), FAULT_LEASE_FENCED, "a1", "t", 0, 1, **taker)
    script.history.append(fence)
    old = [ObservedRecord(o, None, b"v%d" % o, 1) for o in range(7)]
    script.fetch(0, old, client="c1", epoch=None, agent="a2", high_watermark=7)
    commit(script, 7)
    assert flagged(script) == flags


@pytest.mark.parametrize(("placed", "flags"), [(True, set()), (False, {"group_offsets"})])
def test_a_lower_commit_after_offset_out_of_range_in_a_later_epoch_passes(
    placed: bool, flags: set[str]
) -> None:
    """c1's fetch at its committed offset is out of range; the agent that said so serves
    epoch 2 (another reader sees it, no fault between) -- or nothing tells its epoch."""
    script = Script()
    for offset in range(4):
        script.produce(b"v%d" % offset, offset, acks=ACKS_LEADER, epoch=1)
    script.fetch(0, [ObservedRecord(o, None, b"v%d" % o, 1) for o in range(4)], client="c1")
    commit(script, 4)
    script.history.append(FaultInjected(script.tick(), FAULT_DISK_LOSS, "a1"))
    requested_us = script.tick()
    failed = FetchFailed(script.tick(), requested_us, "c1", "t", 0, 4, OFFSET_OUT_OF_RANGE, "a1")
    script.history.append(failed)
    if placed:
        script.produce(b"w2", 2, acks=ACKS_LEADER, epoch=None, agent="a1")
        script.fetch(2, [ObservedRecord(2, None, b"w2", 2)], client="c2", epoch=None, agent="a1")
    commit(script, 2)
    assert flagged(script) == flags


def test_log_start_going_back_within_a_leader_epoch_across_clients_is_flagged() -> None:
    def history(second_epoch: int) -> History:
        script = Script()
        script.produce(b"v0", 3, acks=ACKS_LEADER, epoch=2, log_start_offset=3)
        script.fetch(3, [ObservedRecord(3, None, b"v0", 2)], client="reader", epoch=None)
        script.produce(b"v1", 4, acks=ACKS_LEADER, epoch=second_epoch, log_start_offset=1)
        script.fetch(4, [ObservedRecord(4, None, b"v1", second_epoch)], epoch=None)
        return script.history

    script = Script()
    script.history = history(second_epoch=3)
    assert flagged(script) == set()
    script.history = history(second_epoch=2)
    assert flagged(script) == {"watermarks"}
    (violation,) = check_all(script.history)
    assert "told log start 1" in violation.message and "below 3" in violation.message


def test_overlapping_commits_are_not_ordered() -> None:
    script = Script()
    early = script.tick()
    commit(script, 10)
    late = OffsetCommitted(script.tick(), early, "c2", "g", 1, "c2", "t", 0, 5)
    script.history.append(late)
    assert flagged(script) == set()


def lost_partition_commit(script: Script, carried: int, owned_by_c2: bool) -> None:
    """Generation 2 gives t/0 to c1 (and t/1, or t/0 too, to c2); c1 commits 10; c2's commit
    of 5, asked before c1's, lands after it carrying generation `carried`; c2 reads 5 back."""
    mine = (TopicPartition("t", 0),)
    theirs = mine if owned_by_c2 else (TopicPartition("t", 1),)
    script.history.append(GroupGeneration(script.tick(), "c1", "g", 2, "c1", mine))
    script.history.append(GroupGeneration(script.tick(), "c2", "g", 2, "c2", theirs))
    asked_us = script.tick()
    commit(script, 10, generation=2)
    landed = OffsetCommitted(script.tick(), asked_us, "c2", "g", carried, "c2", "t", 0, 5)
    script.history.append(landed)
    read_committed_offset(script, 5)


def test_a_commit_of_a_partition_lost_to_a_rebalance_may_land_below() -> None:
    """Classic OffsetCommit checks generation and member id, not ownership: aiokafka retries
    a commit made in generation 1 with generation 2, where its member lost the partition."""
    script = Script()
    lost_partition_commit(script, carried=2, owned_by_c2=False)
    assert flagged(script) == set()


@pytest.mark.parametrize(
    ("carried", "owned_by_c2", "flags"),
    [(1, False, {"group_offsets"}), (2, True, {"group_offsets", "group_owners"})],
    ids=["stale-generation-accepted", "an-owner-going-back"],
)
def test_a_lower_commit_is_flagged_unless_its_generation_gave_the_partition_away(
    carried: int, owned_by_c2: bool, flags: set[str]
) -> None:
    script = Script()
    lost_partition_commit(script, carried=carried, owned_by_c2=owned_by_c2)
    assert flagged(script) == flags


def test_a_standalone_commit_sets_the_offset_like_a_reset() -> None:
    """Generation -1 and no member id: the explicit set a coordinator takes for a group with
    no members (aiokafka retries a commit as one after its generation was reset)."""
    script = Script()
    commit(script, 10, generation=2)
    requested_us = script.tick()
    standalone = OffsetCommitted(script.tick(), requested_us, "c2", "g", -1, "", "t", 0, 5)
    script.history.append(standalone)
    read_committed_offset(script, 5)
    assert flagged(script) == set()
    script = Script()  # with a member id it is no standalone commit
    commit(script, 10, generation=2)
    requested_us = script.tick()
    member = OffsetCommitted(script.tick(), requested_us, "c2", "g", -1, "c2", "t", 0, 5)
    script.history.append(member)
    assert flagged(script) == {"group_offsets"}


def test_acks1_loss_without_a_fault_is_flagged() -> None:
    script = Script()
    script.produce(b"v0", 0, acks=ACKS_LEADER, epoch=1)
    script.scan([], end_offset=0, epoch=2)
    assert flagged(script) == {"acked_leader", "final_reads"}


@pytest.mark.parametrize(
    ("fault_agent", "seen_epoch", "flags", "reason"),
    [
        ("a2", 2, {"acked_leader"}, "no disk loss or fenced lease on a1"),
        ("a1", 1, {"acked_leader"}, "no leader-epoch change"),
    ],
)
def test_acks1_loss_needs_a_fault_on_its_agent_and_an_epoch_change(
    fault_agent: str, seen_epoch: int, flags: set[str], reason: str
) -> None:
    script = Script()
    script.produce(b"v0", 0, acks=ACKS_LEADER, epoch=1, agent="a1")
    script.history.append(FaultInjected(script.tick(), FAULT_DISK_LOSS, fault_agent))
    script.attempt(b"other")
    script.fetch(0, [(0, b"other")], epoch=seen_epoch)
    assert flagged(script) == flags
    (violation,) = [v for v in check_all(script.history) if v.checker == "acked_leader"]
    assert reason in violation.message


def test_a_fault_after_the_loss_was_seen_does_not_excuse_it() -> None:
    script = Script()
    script.produce(b"v0", 0, acks=ACKS_LEADER, epoch=1, agent="a1")
    script.attempt(b"other")
    script.fetch(0, [(0, b"other")], epoch=2)
    script.history.append(FaultInjected(script.tick(), FAULT_DISK_LOSS, "a1"))
    assert flagged(script) == {"acked_leader"}


def test_final_read_finding_another_value_is_flagged() -> None:
    script = Script()
    script.produce(b"v0", 0)
    script.attempt(b"other")
    script.scan([(0, b"other")], end_offset=1)
    assert flagged(script) == {"acked_durable", "final_reads"}
    (violation,) = [v for v in check_all(script.history) if v.checker == "final_reads"]
    assert "found key=null value=b'other'" in violation.message


def test_a_read_committed_final_read_need_not_hold_aborted_records() -> None:
    script = Script()
    script.produce(b"t0", 0, txn=1, client="txp")
    script.history.append(TxnEnded(script.tick(), script.now_us - 5, "txp", 1, committed=False))
    script.produce(b"v2", 2)
    requested_us = script.now_us + 1
    script.fetch(0, [(2, b"v2")], client="final", read_committed=True, next_offset=3)
    scan = ScanCompleted(script.tick(), requested_us, "final", "t", 0, 0, 3, read_committed=True)
    script.history.append(scan)
    assert check_all(script.history) == []


def test_disk_loss_before_the_write_does_not_excuse_it() -> None:
    script = Script()
    script.history.append(FaultInjected(script.tick(), FAULT_DISK_LOSS, "a1"))
    script.produce(b"v0", 0, acks=ACKS_LEADER, epoch=1, agent="a1")
    script.scan([], end_offset=0, epoch=2)
    assert flagged(script) == {"acked_leader", "final_reads"}


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        ([PhaseStarted(20, PHASE_LIVENESS), PhaseStarted(10, PHASE_LIVENESS)], "backwards"),
        ([CommittedOffsetRead(5, 9, "c", "g", "t", 0, -1)], "before requested"),
        ([ProduceAcked(5, "p", 42, 0)], "never attempted"),
        ([ProduceAttempt(1, "p", 1, "t", 0, None, b"x", 0), ProduceAcked(2, "p", 1, -1)], "offset"),
    ],
)
def test_each_kind_of_malformed_history_is_named(events: list[Event], reason: str) -> None:
    history = History()
    for event in events:
        history.append(event)
    (violation,) = check_all(history)
    assert violation.checker == "history"
    assert reason in violation.message


def test_malformed_histories_are_reported_as_such() -> None:
    script = Script()
    attempt = script.attempt(b"x")
    script.attempt(b"x")
    script.ack(attempt, 0)
    script.ack(attempt, 1)
    assert flagged(script) == {"history"}
    messages = " / ".join(v.message for v in check_all(script.history))
    assert "write the same record" in messages and "two outcomes" in messages


# -- liveness and verdicts -------------------------------------------------------


def test_liveness_needs_an_ack_and_a_read_after_healing() -> None:
    script = Script()
    script.produce(b"before", 0)
    heal_us = script.tick()
    script.history.append(PhaseStarted(heal_us, PHASE_LIVENESS))
    assert [v.checker for v in check_liveness(script.history, heal_us=heal_us, bound_ms=1)] == [
        "liveness"
    ]
    script.produce(b"after", 1)
    (violation,) = check_liveness(script.history, heal_us=heal_us, bound_ms=1)
    assert "no fetch served" in violation.message
    assert "no produce acked" not in violation.message
    script.fetch(1, [(1, b"after")])
    assert check_all(script.history, liveness_bound_ms=1) == []
    script.now_us += 5_000
    script.fetch(2, [])
    assert check_liveness(script.history, heal_us=heal_us, bound_ms=1) == []
    reads_only = Script()
    reads_only.attempt(b"unanswered")
    reads_only.history.append(PhaseStarted(reads_only.tick(), PHASE_LIVENESS))
    reads_only.fetch(0, [(0, b"unanswered")])
    (violation,) = check_all(reads_only.history, liveness_bound_ms=1)
    assert "no produce acked within 1 ms" in violation.message
    late = Script()
    late.history.append(PhaseStarted(late.tick(), PHASE_LIVENESS))
    late.now_us += 2_000
    late.produce(b"too late", 0)
    late.fetch(0, [(0, b"too late")])
    assert {v.checker for v in check_all(late.history, liveness_bound_ms=1)} == {"liveness"}


def test_a_liveness_bound_without_a_healing_phase_is_a_history_error() -> None:
    script = Script()
    three_acked(script)
    assert [v.checker for v in check_all(script.history, liveness_bound_ms=10)] == ["history"]


def test_exit_codes_rank_crash_correctness_liveness() -> None:
    liveness = Violation("liveness", "stalled")
    lost = Violation("acked_durable", "lost")
    assert exit_code([]) == EXIT_OK == 0
    assert exit_code([liveness]) == EXIT_LIVENESS == 128
    assert exit_code([liveness, lost]) == EXIT_CORRECTNESS == 129
    assert exit_code([], crashed=True) == EXIT_CRASH == 127
    assert exit_code([lost, Violation("history", "op 3 has two outcomes")]) == EXIT_CRASH


def test_a_saved_history_is_judged_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = Script()
    three_acked(script)
    path = tmp_path / "clean.jsonl"
    script.history.save(path)
    assert verdict_main([str(path)]) == EXIT_OK
    assert capsys.readouterr().out == "all checkers passed\n"
    script.fetch(0, [(0, b"v0")], client="late", high_watermark=1)
    script.history.save(path)
    assert verdict_main([str(path)]) == EXIT_CORRECTNESS
    assert "[acked_durable]" in capsys.readouterr().out
    # A liveness bound for a run that never healed: the history cannot be judged.
    assert verdict_main([str(path), "--liveness-bound-ms", "5"]) == EXIT_CRASH
    assert "no liveness phase" in capsys.readouterr().out


def test_report_names_checker_message_and_event_positions() -> None:
    script = Script()
    three_acked(script)
    script.fetch(0, [(0, b"v0")], client="late", high_watermark=1)
    text = report(check_all(script.history), script.history)
    assert "[acked_durable]" in text
    assert "t/0@1" in text
    assert '#3 {"agent": "a1"' in text
    assert report([], script.history) == "all checkers passed\n"


def stale_delivery(script: Script, *, fetched_again: bool) -> None:
    """c1 reads offset 5 in generation 1; c2 moves the group to 10 in generation 2; c1 rejoins
    in generation 3 with the partition back and commits 6 from the record it fetched back
    in generation 1 (or, with `fetched_again`, from a fetch made in generation 3)."""
    one = (TopicPartition("t", 0),)
    script.history.append(GroupGeneration(script.tick(), "c1", "g", 1, "c1", one))
    script.fetch(5, [(5, b"v5")], client="c1")
    script.history.append(GroupGeneration(script.tick(), "c2", "g", 2, "c2", one))
    commit(script, 10, client="c2", generation=2)
    script.history.append(GroupGeneration(script.tick(), "c1", "g", 3, "c1", one))
    if fetched_again:
        script.fetch(5, [(5, b"v5")], client="c1")
    commit(script, 6, client="c1", generation=3)


def test_a_commit_of_a_record_handed_over_from_an_older_generation_sets_the_offset() -> None:
    """aiokafka delivers what it fetched before it rejoined; the new generation's commit of it
    goes below the floor, and the coordinator rightly takes it from a current member."""
    script = Script()
    stale_delivery(script, fetched_again=False)
    assert "group_offsets" not in flagged(script)  # (the fetched record has no producer here)


def test_a_lower_commit_of_a_record_read_in_its_own_generation_is_flagged() -> None:
    script = Script()
    stale_delivery(script, fetched_again=True)
    assert "group_offsets" in flagged(script)


def test_a_member_going_below_its_own_commit_after_rejoining_is_flagged() -> None:
    """Its position only moves on: a stale delivery never takes a client below itself."""
    script = Script()
    one = (TopicPartition("t", 0),)
    script.history.append(GroupGeneration(script.tick(), "c1", "g", 1, "c1", one))
    script.fetch(5, [(5, b"v5")], client="c1")
    commit(script, 8, client="c1", generation=1)
    script.history.append(GroupGeneration(script.tick(), "c1", "g", 2, "c1", one))
    commit(script, 6, client="c1", generation=2)
    assert "group_offsets" in flagged(script)


def commit_in_flight_across_a_rebalance(script: Script, *, rejoined_after_the_floor: bool) -> None:
    """c1 reads offset 5 in generation 1 and asks to commit 6; before the answer, c2 commits 10
    in generation 2; c1's commit lands and is read back. With `rejoined_after_the_floor`,
    it carried generation 3, which c1 joined only after c2's commit (aiokafka retries with
    the generation it holds at the retry); otherwise it carried generation 1."""
    one = (TopicPartition("t", 0),)
    script.history.append(GroupGeneration(script.tick(), "c1", "g", 1, "c1", one))
    script.fetch(5, [(5, b"v5")], client="c1")
    asked_us = script.tick()
    script.history.append(GroupGeneration(script.tick(), "c2", "g", 2, "c2", one))
    commit(script, 10, client="c2", generation=2)
    generation = 3 if rejoined_after_the_floor else 1
    if rejoined_after_the_floor:
        script.history.append(GroupGeneration(script.tick(), "c1", "g", 3, "c1", one))
    late = OffsetCommitted(script.tick(), asked_us, "c1", "g", generation, "c1", "t", 0, 6)
    script.history.append(late)
    read_committed_offset(script, 6)


def test_a_commit_retried_into_a_generation_begun_after_a_higher_commit_sets_the_offset() -> None:
    script = Script()
    commit_in_flight_across_a_rebalance(script, rejoined_after_the_floor=True)
    assert "group_offsets" not in flagged(script)


def test_a_commit_in_flight_that_may_have_landed_first_does_not_lower_the_floor() -> None:
    """Asked before c2's commit and carrying an older generation, it may have landed first:
    a read of its lower offset after c2's commit completed is a regression."""
    script = Script()
    commit_in_flight_across_a_rebalance(script, rejoined_after_the_floor=False)
    assert "group_offsets" in flagged(script)


def commit_retried_by_a_member_that_only_joined(script: Script, *, generation: int) -> None:
    """As default seed 105: c1 reads offset 5 in generation 2 and asks to commit 6; c2
    commits 10 in generation 2; in that same instant (no network delay) c1's JoinGroup
    answer tells it `generation`, and its SyncGroup never completes (no assignment is
    recorded); c1's commit, retried with `generation`, lands and is read back."""
    one = (TopicPartition("t", 0),)
    script.history.append(GroupGeneration(script.tick(), "c1", "g", 2, "c1", one))
    script.fetch(5, [(5, b"v5")], client="c1")
    asked_us = script.tick()
    script.history.append(GroupGeneration(script.tick(), "c2", "g", 2, "c2", one))
    commit(script, 10, client="c2", generation=2)
    same_instant_us = script.now_us
    script.history.append(GenerationJoined(same_instant_us, "c1", "g", generation, "c1"))
    late = OffsetCommitted(script.tick(), asked_us, "c1", "g", generation, "c1", "t", 0, 6)
    script.history.append(late)
    read_committed_offset(script, 6)


def test_a_commit_retried_with_a_newer_generation_only_joined_sets_the_offset() -> None:
    """The generation it carried (3) is newer than the floor's (2): the coordinator took it
    after the floor, and c1 learned it (its JoinGroup answer) after its read of offset 5."""
    script = Script()
    commit_retried_by_a_member_that_only_joined(script, generation=3)
    assert "group_offsets" not in flagged(script)


def test_a_commit_retried_in_the_floors_generation_in_the_same_instant_is_flagged() -> None:
    """Carrying the floor's own generation, in the same instant, it may have landed first."""
    script = Script()
    commit_retried_by_a_member_that_only_joined(script, generation=2)
    assert "group_offsets" in flagged(script)
