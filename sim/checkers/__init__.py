"""Checkers: judge a client history against every promise of DESIGN §6 a client can observe.

Each `check_*(history)` is a pure function returning the violations it found
(empty when the promise held). They know nothing of the engine: they read
only what clients recorded (`sim.history`). Definitions, in the order of
`SAFETY_CHECKERS`:

history       The history itself is well formed: outcomes name known ops, one
              outcome per op, unique (key, value) per partition, time never
              goes backwards, requests precede their answers.
acked_durable A record acked with acks=all is never lost: no read at its offset
              shows other content, no fetch *requested after the ack* reports a
              high watermark at or below its offset, no final scan ends there.
acked_leader  A record acked with acks=1 is lost only when allowed: a disk loss
              on the agent that acked it or a metadata wipe (after the attempt
              began) or a fenced lease of that agent (of an epoch not below the ack's) came before
              the first evidence of the kinds above, and the first evidence
              placed in a leader epoch is in a later epoch than the ack's (the
              loss is detectable via leader epochs). The epoch of an ack is its
              batch's, as read back at its offset; if nobody read it back
              before it was lost, it is at least the epoch its agent was seen
              holding when it acked (earlier acks, answers), and the evidence
              must be above that; only with nothing known does the cause alone
              excuse it. Evidence is placed by the epoch of the record seen, or
              for a high watermark by the epoch its agent was serving then
              (`HistoryIndex.answer_epoch`); evidence placed nowhere does not
              excuse.
one_value     No two different contents (key, value, or control kind) read at
              one offset, across all readers and time -- except across two
              known, different leader epochs after a disk loss or fenced lease
              (truncation of unreplicated data, seen via the epoch), or, with an
              epoch unknown, when such a fault fell between the two sightings.
              (An ack that a read contradicts is a lost record, judged by
              acked_durable and acked_leader with the ack's epoch.)
reader_offsets Within one fetch, delivered offsets rise strictly from the fetch
              offset (never backwards, never repeated). Every offset skipped
              between the fetch offset and the position after the fetch is
              explained: below the log start, in a compacted topic a record a
              later one of its key superseded (or an offset nobody saw), a known control
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
              Across clients, within one known leader epoch (fetches made in
              it, acks in their batch's epoch, final scans), nobody is told a
              log start below one another client was told before it asked.
idempotence   An idempotent op (or a producer id/epoch/sequence) appears at one
              offset at most, not counting offsets whose content was replaced,
              nor a copy above where a later leader epoch's log ended (a tail
              lost with its leader's lease).
read_committed A read_committed fetch never delivers a data record of an aborted
              transaction, nor one whose transaction's end was requested after
              the fetch completed, nor any record at or above its LSO.
torn_transactions A transaction is all or nothing for read_committed readers: a
              read_committed fetch that took its reader past the offset of an
              acked (acks=all) record of a committed transaction, asked for after
              that ack, delivered it there; and a transaction of unknown outcome
              is not delivered by one read_committed read and passed over by
              another (across its partitions and readers, the final scan among
              them).
lost_committed Every record of a transaction whose commit was acknowledged is in
              the final scan of its partition (unless below the scan's log start).
last_stable_offset Within one span of one agent answering for a partition (no fault
              on it, no lease of the partition moving; and one leader epoch where
              the reader fetched with one), nobody is told a last stable offset
              below one that agent told anybody before it asked. (A new leader may
              start lower. LSO <= HW in each answer is the watermarks checker's.)
exactly_once  A consume-transform-produce client's committed transactions (those of
              unknown outcome resolved by what read_committed readers saw) read
              each input record once: their reads of a partition for a group never
              overlap, and no acked acks=all record visible to read_committed lies
              between two of them unread.
fenced_zombies A transactional producer instance fenced by a newer one of its
              transactional id (whose InitProducerId was asked for after the older
              one's was answered, and was answered) commits nothing it asks to
              commit after that (told committed, or seen by a read_committed reader).
no_phantoms   Every data record read was attempted by some producer, and not
              by an attempt that failed definitely.
group_owners  In one generation of a group, each partition has one owner.
group_offsets A successful commit is never below a commit that completed before
              it was requested (since the last explicit reset), and OffsetFetch
              never answers below such commits nor with an offset nobody set --
              unless the committing member saw, after that commit and before
              asking, the log below it rewritten in a later leader epoch than
              the record just below it was read in (a record there in a later
              epoch, or a high watermark below it answered in a later epoch):
              a truncation, after which Kafka consumers reset and commit lower;
              or unless the commit carried (on the wire) a generation no older
              than the higher commit's and a member that generation did not
              assign the partition to, which the classic protocol accepts (it
              checks generation and member, not ownership), or it was a standalone
              commit (generation -1, no member: an explicit set, taken only for a
              group without members). Such a commit then counts as a reset.
              A metadata wipe is a reset (to what the newest snapshot held): a
              commit or read in flight across it is judged against what it left.
wipe_offsets  A metadata wipe sets a committed offset back only to none or to one
              asked for before it (what the newest snapshot held); group_offsets
              judges what comes after against it (sim.checkers.storage).
deleted_reads No fetch is answered CORRUPT_MESSAGE (an object its rows named missing or
              corrupt) unless the simulator damaged an object whose rows named that offset
              before the answer: no read hits an object a rewrite released and the
              reconciler deleted (sim.checkers.storage).
final_reads   After the final scan of a partition, every acked record at or
              above the scan's start (log start) was read back at its offset
              (acks=1 losses excused as in acked_leader; in a compacted topic a
              record a later one of its key superseded, which compaction may have
              removed; transactions not known committed skipped under
              read_committed): the last record of every key of a compacted topic
              stays.

`check_durable_log_start` (sim.checkers.storage) runs on the histories of runs with a
metadata wipe (whose workloads delete no records): no final scan starts above an
acks=all record acked before it (final_reads alone would take it for deleted).
`check_pointers`, `check_deletes` and `check_orphans` (sim.checkers.storage) judge
the storage, not the history: every segment row names a block of an object in the
bucket holding exactly its offsets; no object is deleted while a row names it; past
the reconciler's grace, every object is named by a row.

`check_liveness` is separate: after healing, within a bound, some produce is
acked and some fetch delivers records.
"""

from __future__ import annotations

from collections.abc import Callable

from sim.checkers.acks import check_acked_durable, check_acked_leader
from sim.checkers.final import check_final_reads, check_liveness
from sim.checkers.groups import check_group_offsets, check_group_owners
from sim.checkers.index import LIVENESS, Violation
from sim.checkers.offsets import check_one_value, check_reader_offsets, check_watermarks
from sim.checkers.producers import check_idempotence, check_no_phantoms, check_read_committed
from sim.checkers.storage import (
    check_deleted_reads,
    check_deletes,
    check_durable_log_start,
    check_orphans,
    check_pointers,
    check_wipe_offsets,
)
from sim.checkers.transactions import (
    check_exactly_once,
    check_fenced_zombies,
    check_last_stable_offset,
    check_lost_committed,
    check_torn_transactions,
)
from sim.checkers.well_formed import check_history
from sim.history import PHASE_LIVENESS, History, PhaseStarted

SAFETY_CHECKERS: tuple[Callable[[History], list[Violation]], ...] = (
    check_history,
    check_acked_durable,
    check_acked_leader,
    check_one_value,
    check_reader_offsets,
    check_watermarks,
    check_idempotence,
    check_read_committed,
    check_torn_transactions,
    check_lost_committed,
    check_last_stable_offset,
    check_exactly_once,
    check_fenced_zombies,
    check_no_phantoms,
    check_group_owners,
    check_group_offsets,
    check_wipe_offsets,
    check_deleted_reads,
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


__all__ = [
    "LIVENESS",
    "SAFETY_CHECKERS",
    "Violation",
    "check_acked_durable",
    "check_acked_leader",
    "check_all",
    "check_deleted_reads",
    "check_deletes",
    "check_durable_log_start",
    "check_exactly_once",
    "check_fenced_zombies",
    "check_final_reads",
    "check_group_offsets",
    "check_group_owners",
    "check_history",
    "check_idempotence",
    "check_last_stable_offset",
    "check_liveness",
    "check_lost_committed",
    "check_no_phantoms",
    "check_one_value",
    "check_orphans",
    "check_pointers",
    "check_read_committed",
    "check_reader_offsets",
    "check_torn_transactions",
    "check_watermarks",
    "check_wipe_offsets",
]
