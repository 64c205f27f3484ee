"""Checker self-tests for transactions: hand-written histories of transactional producers and
read_committed readers, each with one anomaly (aborted read, torn transaction, duplicate, lost
committed write, LSO going back) or none.
"""

from __future__ import annotations

from sim.checkers import check_all
from sim.history import (
    CONTROL_ABORT,
    CONTROL_COMMIT,
    FAULT_CRASH,
    FAULT_LEASE_FENCED,
    FaultInjected,
    ObservedRecord,
    ProduceAttempt,
    ScanCompleted,
    TxnEnded,
    TxnProducerStarted,
    TxnRead,
)
from tests.sim.scripted import Script

PID = 7


def flagged(script: Script) -> set[str]:
    return {violation.checker for violation in check_all(script.history)}


def messages(script: Script, checker: str) -> list[str]:
    return [v.message for v in check_all(script.history) if v.checker == checker]


def txn_record(
    script: Script, value: bytes, offset: int, txn: int, partition: int = 0
) -> ProduceAttempt:
    return script.produce(
        value, offset, txn=txn, client="txp", idempotent=True, partition=partition
    )


def end(script: Script, txn: int, committed: bool | None) -> TxnEnded:
    requested_us = script.tick()
    ended = TxnEnded(script.tick(), requested_us, "txp", txn, committed)
    script.history.append(ended)
    return ended


def data(offset: int, value: bytes, epoch: int = 1) -> ObservedRecord:
    return ObservedRecord(offset, None, value, epoch, None, PID, 0, offset)


def marker(offset: int, kind: str = CONTROL_COMMIT) -> ObservedRecord:
    return ObservedRecord(offset, None, None, 1, kind, PID, 0)


def rc_scan(script: Script, partition: int, records: list[ObservedRecord], end_offset: int) -> None:
    """A read_committed final read of one partition, in one fetch."""
    script.scan(records, end_offset=end_offset, partition=partition, read_committed=True)


def two_partition_txns(script: Script) -> None:
    """Transaction 1 commits t0 (p0@0), t1 (p1@0); transaction 2 aborts a0 (p0@2), a1 (p1@2)."""
    txn_record(script, b"t0", 0, 1)
    txn_record(script, b"t1", 0, 1, partition=1)
    end(script, 1, True)
    txn_record(script, b"a0", 2, 2)
    txn_record(script, b"a1", 2, 2, partition=1)
    end(script, 2, False)


def test_a_clean_transactional_history_passes() -> None:
    script = Script()
    two_partition_txns(script)
    for partition in (0, 1):
        value = b"t%d" % partition
        records = [data(0, value), marker(1), marker(3, CONTROL_ABORT)]
        script.fetch(
            0,
            records,
            client="rc",
            partition=partition,
            read_committed=True,
            next_offset=4,
            high_watermark=4,
            last_stable_offset=4,
            agent="a1",
        )
        rc_scan(script, partition, [data(0, value)], 4)
    assert check_all(script.history) == []


def test_an_aborted_read_is_flagged() -> None:
    script = Script()
    two_partition_txns(script)
    rc_scan(script, 0, [data(0, b"t0"), data(2, b"a0")], 4)
    rc_scan(script, 1, [data(0, b"t1")], 4)
    assert flagged(script) == {"read_committed"}


def test_a_committed_record_passed_over_is_a_torn_transaction() -> None:
    script = Script()
    two_partition_txns(script)
    # the reader got p1's half of transaction 1 but passed p0's without it
    script.fetch(0, [marker(1)], client="rc", read_committed=True, next_offset=2)
    script.fetch(0, [data(0, b"t1")], client="rc", partition=1, read_committed=True)
    assert flagged(script) >= {"torn_transactions"}
    assert flagged(script) <= {"torn_transactions", "reader_offsets"}
    (message,) = messages(script, "torn_transactions")
    assert "transaction 1 of txp (committed) is torn" in message
    assert "t/0@0" in message


def test_a_transaction_of_unknown_outcome_may_be_all_or_nothing() -> None:
    for visible in (True, False):
        script = Script()
        txn_record(script, b"u0", 0, 1)
        txn_record(script, b"u1", 0, 1, partition=1)
        end(script, 1, None)
        for partition in (0, 1):
            records = [data(0, b"u%d" % partition)] if visible else []
            rc_scan(script, partition, records, 2)
        assert check_all(script.history) == [], visible


def test_a_transaction_of_unknown_outcome_half_visible_across_partitions_is_torn() -> None:
    script = Script()
    txn_record(script, b"u0", 0, 1)
    txn_record(script, b"u1", 0, 1, partition=1)
    end(script, 1, None)
    rc_scan(script, 0, [data(0, b"u0")], 2)
    rc_scan(script, 1, [], 2)
    assert flagged(script) == {"torn_transactions"}
    (message,) = messages(script, "torn_transactions")
    assert "of unknown outcome" in message and "while final got" in message


def test_a_skip_before_the_record_was_acked_is_no_decision() -> None:
    """The offset may have held a lost tail's record then (acks=all is only certain after)."""
    script = Script()
    attempt = script.attempt(b"t0", txn=1, client="txp", idempotent=True)
    script.fetch(0, [], client="rc", read_committed=True, next_offset=1)
    script.ack(attempt, 0)
    end(script, 1, True)
    rc_scan(script, 0, [data(0, b"t0")], 1)
    assert "torn_transactions" not in flagged(script)


def test_a_lost_committed_write_is_flagged() -> None:
    script = Script()
    two_partition_txns(script)
    rc_scan(script, 0, [data(0, b"t0")], 4)
    rc_scan(script, 1, [], 4)  # t1 is gone
    assert "lost_committed" in flagged(script)
    (message,) = messages(script, "lost_committed")
    assert "record op 2" in message and "transaction 1" in message


def test_a_committed_record_never_acked_must_be_in_the_scan_too() -> None:
    script = Script()
    script.attempt(b"t0", txn=1, client="txp", idempotent=True)
    end(script, 1, True)
    rc_scan(script, 0, [], 2)
    assert flagged(script) == {"lost_committed"}
    assert "never acked" in messages(script, "lost_committed")[0]


def test_a_committed_write_below_the_log_start_is_not_lost() -> None:
    script = Script()
    txn_record(script, b"t0", 0, 1)
    end(script, 1, True)
    requested_us = script.tick()
    script.fetch(2, [], client="final", read_committed=True, next_offset=2, log_start_offset=2)
    script.history.append(
        ScanCompleted(script.tick(), requested_us, "final", "t", 0, 2, 2, read_committed=True)
    )
    assert "lost_committed" not in flagged(script)


def test_a_transactional_record_written_twice_is_a_duplicate() -> None:
    script = Script()
    attempt = txn_record(script, b"t0", 0, 1)
    end(script, 1, True)
    script.fetch(0, [data(0, b"t0"), marker(1), data(2, b"t0")], client="raw", next_offset=3)
    assert attempt.idempotent
    assert "idempotence" in flagged(script)


def lso_fetch(script: Script, client: str, stable: int, agent: str = "a1") -> None:
    script.fetch(
        0,
        [],
        client=client,
        epoch=None,
        read_committed=True,
        next_offset=0,
        high_watermark=10,
        last_stable_offset=stable,
        agent=agent,
    )


def test_the_lso_going_back_at_one_agent_is_flagged_for_one_reader_and_across_readers() -> None:
    script = Script()
    lso_fetch(script, "rc", 6)
    script.history.append(FaultInjected(script.tick(), FAULT_CRASH, "a2"))  # another agent
    lso_fetch(script, "rc", 4)
    lso_fetch(script, "rc2", 3)
    assert flagged(script) == {"last_stable_offset"}
    found = messages(script, "last_stable_offset")
    assert len(found) == 2
    assert "rc was told last stable offset 4" in found[0] and "below 6" in found[0]
    assert "rc2 was told last stable offset 3" in found[1]


def test_the_lso_may_restart_lower_at_a_new_leader_or_after_a_fault() -> None:
    script = Script()
    lso_fetch(script, "rc", 6)
    lso_fetch(script, "rc", 4, agent="a2")  # another agent answered
    fence = FaultInjected(script.tick(), FAULT_LEASE_FENCED, "a1", "t", 0, epoch=1)
    script.history.append(fence)
    lso_fetch(script, "rc", 3)  # a1 again, after its lease moved (and came back)
    script.history.append(FaultInjected(script.tick(), FAULT_CRASH, "a1"))
    lso_fetch(script, "rc", 2)
    assert "last_stable_offset" not in flagged(script)


def test_an_answer_overlapping_another_may_tell_a_lower_lso() -> None:
    """Two fetches in flight at once: neither completed before the other was asked."""
    script = Script()
    first = script.fetch(0, [], client="rc", epoch=None, last_stable_offset=6, agent="a1")
    script.history.append(
        type(first)(
            first.at_us,
            first.requested_us - 1,
            "rc2",
            "t",
            0,
            0,
            (),
            last_stable_offset=5,
            agent="a1",
        )
    )
    assert "last_stable_offset" not in flagged(script)


def test_the_lso_above_the_high_watermark_is_flagged() -> None:
    script = Script()
    script.fetch(0, [], high_watermark=3, last_stable_offset=4, agent="a1")
    assert flagged(script) == {"watermarks"}


def ctp_step(
    script: Script, txn: int, first: int, next_offset: int, out: int, outcome: bool | None
) -> None:
    """A consume-transform-produce transaction: read input t/0 [first, next), wrote one
    output record to topic out at offset `out`, ended with `outcome`."""
    script.history.append(TxnRead(script.tick(), "ctp", txn, "g", "t", 0, first, next_offset))
    script.produce(b"out%d" % txn, out, topic="out", txn=txn, client="ctp", idempotent=True)
    script.history.append(TxnEnded(script.tick(), script.now_us - 5, "ctp", txn, outcome))


def inputs(script: Script, count: int) -> None:
    for offset in range(count):
        script.produce(b"in%d" % offset, offset)


def test_committed_transformations_that_read_each_input_once_pass() -> None:
    script = Script()
    inputs(script, 4)
    ctp_step(script, 1, 0, 2, 0, True)
    ctp_step(script, 2, 2, 4, 2, False)  # aborted: read again
    ctp_step(script, 3, 2, 4, 4, True)
    assert flagged(script) == set()


def test_an_input_processed_by_two_committed_transactions_is_flagged() -> None:
    script = Script()
    inputs(script, 4)
    ctp_step(script, 1, 0, 3, 0, True)
    ctp_step(script, 2, 2, 4, 2, None)
    # a read_committed reader got transaction 2's output: it committed
    script.fetch(2, [(2, b"out2")], topic="out", client="rc", read_committed=True)
    assert flagged(script) == {"exactly_once"}
    (message,) = messages(script, "exactly_once")
    assert "offsets 2..2 were processed by two committed transactions" in message


def test_an_input_skipped_between_committed_transformations_is_flagged() -> None:
    script = Script()
    inputs(script, 4)
    ctp_step(script, 1, 0, 2, 0, True)
    ctp_step(script, 2, 3, 4, 2, True)
    assert flagged(script) == {"exactly_once"}
    assert "t/0@2 holds a committed record" in messages(script, "exactly_once")[0]
    # a transaction of unknown outcome that read it excuses the gap
    ctp_step(script, 3, 2, 3, 4, None)
    assert flagged(script) == set()


def started(script: Script, client: str) -> None:
    requested_us = script.tick()
    script.history.append(TxnProducerStarted(script.tick(), requested_us, client, "tid"))


def zombie_end(script: Script, committed: bool | None) -> None:
    requested_us = script.tick()
    script.history.append(TxnEnded(script.tick(), requested_us, "zombie", 1, committed))


def test_a_fenced_zombie_that_commits_is_flagged() -> None:
    script = Script()
    started(script, "zombie")
    script.produce(b"z0", 0, txn=1, client="zombie", idempotent=True)
    started(script, "successor")  # fences the zombie
    zombie_end(script, True)
    assert flagged(script) == {"fenced_zombies"}
    (message,) = messages(script, "fenced_zombies")
    assert "its client was told so" in message and "successor took over" in message


def test_a_fenced_zombie_whose_records_are_read_committed_is_flagged() -> None:
    script = Script()
    started(script, "zombie")
    script.produce(b"z0", 0, txn=1, client="zombie", idempotent=True)
    started(script, "successor")
    zombie_end(script, None)
    script.fetch(0, [(0, b"z0")], client="rc", read_committed=True)
    assert flagged(script) == {"fenced_zombies"}
    assert "a read_committed reader got it" in messages(script, "fenced_zombies")[0]


def test_a_commit_asked_for_before_the_takeover_or_by_the_same_client_may_commit() -> None:
    script = Script()
    started(script, "zombie")
    script.produce(b"z0", 0, txn=1, client="zombie", idempotent=True)
    zombie_end(script, True)  # asked for before the successor started
    started(script, "successor")
    started(script, "zombie")  # the same client again: it replaced its own instance
    script.produce(b"z1", 2, txn=2, client="zombie", idempotent=True)
    script.history.append(TxnEnded(script.tick(), script.now_us - 5, "zombie", 2, True))
    assert flagged(script) == set()
