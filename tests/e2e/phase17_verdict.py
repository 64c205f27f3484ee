"""The verdict of e2e phase 17 over what its clients recorded (phase17_workload.py).

- Final scan: every acknowledged record is read exactly once, at the offset its ack named, and
  each partition's values come in the order they were produced; no value is read twice. An
  idempotent producer may report a record persisted without its offset (librdkafka does, after
  a request whose outcome it could not know was retried and answered as a duplicate, or
  covered by a later ack): that record must be in the final scan, at whatever offset.
- One value per offset, across everything any consumer read: a value other than the final
  one is excused only as a cut tail (DESIGN §2 Visibility: the high watermark moves when the
  WAL is fsynced, so readers may see records that were never acknowledged and that a failover
  then cuts): the value was never acknowledged there, and where the client says the leader
  epoch, it was read in an earlier epoch than the final value. Two different values in one
  epoch are never excused. A final value read in an earlier epoch was cut and appended again
  (an idempotent producer's retry).
- Committed group offsets never go back, except after a cut the committing side saw (as the
  simulator's group_offsets checker, DESIGN §6): a regression from H to L is excused only if
  a record read in [L, H) was rewritten in a later epoch, or a member's fetch at or past H was
  told the log ends at or below L (phase17_workload.Cut).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import pairwise

from tests.e2e.phase17_workload import (
    PARTITIONS,
    Ack,
    Commit,
    GroupReads,
    Scanned,
    Sighting,
    seq_of,
)

PROBLEMS_SHOWN_MAX = 20


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    truncated: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    excused_regressions: int = 0

    def add(self, problem: str) -> None:
        self.problems.append(problem)

    def summary(self) -> str:
        shown = self.problems[:PROBLEMS_SHOWN_MAX]
        more = len(self.problems) - len(shown)
        return "\n".join(shown) + (f"\n... and {more} more" if more > 0 else "")


def judge_final_scan(
    verdict: Verdict, acks: dict[int, list[Ack]], scanned: dict[int, Scanned]
) -> None:
    for partition in range(PARTITIONS):
        _judge_partition(verdict, partition, acks[partition], scanned[partition])


def _judge_partition(verdict: Verdict, partition: int, acks: list[Ack], scanned: Scanned) -> None:
    at_offset: dict[int, bytes] = {}
    for offset, value, epoch in scanned.records:
        if at_offset.setdefault(offset, value) != value:
            verdict.add(
                f"p{partition}@{offset}: the final scan read {at_offset[offset]!r} and "
                f"{value!r} (epoch {epoch})"
            )
    for value, times in Counter(value for _, value, _ in scanned.records).items():
        if times > 1:
            where = [f"offset {o} epoch {e}" for o, v, e in scanned.records if v == value]
            verdict.add(f"p{partition}: {value!r} read {times} times by the final scan: {where}")
    scanned_seqs = {seq_of(value) for _, value, _ in scanned.records}
    for ack in acks:
        if ack.offset is None:  # persisted, offset unknown (librdkafka after a retry)
            if ack.seq not in scanned_seqs:
                verdict.add(
                    f"p{partition}: seq {ack.seq} acknowledged (offset unknown), the final "
                    "scan never read it"
                )
            continue
        found = at_offset.get(ack.offset)
        if found is None or seq_of(found) != ack.seq:
            verdict.add(
                f"p{partition}: seq {ack.seq} acknowledged at offset {ack.offset}, "
                f"the final scan has {found!r} there"
            )
    seqs = [seq_of(value) for _, value, _ in scanned.records]
    for (offset, _, epoch), (earlier, later) in zip(
        scanned.records[1:], pairwise(seqs), strict=False
    ):
        if later <= earlier:
            verdict.add(
                f"p{partition}: seq {later} (offset {offset}, epoch {epoch}) follows seq "
                f"{earlier} in the log"
            )


def judge_sightings(
    verdict: Verdict,
    sightings: dict[tuple[int, int], set[Sighting]],
    acks: dict[int, list[Ack]],
    scanned: dict[int, Scanned],
) -> None:
    acked_at = {(p, ack.offset): ack.seq for p in acks for ack in acks[p]}
    final = {(p, o): (v, e) for p in scanned for o, v, e in scanned[p].records}
    for (partition, offset), seen in sorted(sightings.items()):
        _judge_offset(verdict, partition, offset, seen, final.get((partition, offset)), acked_at)


def _judge_offset(
    verdict: Verdict,
    partition: int,
    offset: int,
    seen: set[Sighting],
    final: tuple[bytes, int | None] | None,
    acked_at: dict[tuple[int, int], int],
) -> None:
    place = f"p{partition}@{offset}"
    by_epoch: dict[int, set[bytes]] = defaultdict(set)
    for s in seen:
        if s.leader_epoch is not None:
            by_epoch[s.leader_epoch].add(s.value)
    for epoch, values in by_epoch.items():
        if len(values) > 1:
            verdict.add(f"{place}: {sorted(values)} all read in leader epoch {epoch}")
    final_value, final_epoch = final if final is not None else (None, None)
    for s in seen:
        if s.value == final_value:
            if _earlier(s.leader_epoch, final_epoch):  # cut, then appended again by a retry
                verdict.truncated[partition].add(offset)
            continue
        if acked_at.get((partition, offset)) == seq_of(s.value):
            verdict.add(f"{place}: acknowledged {s.value!r} was read, then replaced")
        elif _same_or_later(s.leader_epoch, final_epoch):
            verdict.add(
                f"{place}: {s.reader} read {s.value!r} in epoch {s.leader_epoch}, "
                f"the log has {final_value!r} in epoch {final_epoch}"
            )
        else:
            verdict.truncated[partition].add(offset)


def _same_or_later(read_epoch: int | None, final_epoch: int | None) -> bool:
    return read_epoch is not None and final_epoch is not None and read_epoch >= final_epoch


def _earlier(read_epoch: int | None, final_epoch: int | None) -> bool:
    return read_epoch is not None and final_epoch is not None and read_epoch < final_epoch


def judge_committed_offsets(
    verdict: Verdict,
    samples: list[tuple[float, dict[int, int]]],
    reads: GroupReads,
    origin: float,
) -> None:
    """Sampled committed offsets never go back, unless across a truncated tail (then the
    floor starts again from the lower offset). `origin`: the time the report counts from."""
    highest: dict[int, int] = {}
    for at, offsets in samples:
        for partition, offset in offsets.items():
            floor = highest.get(partition, offset)
            highest[partition] = max(floor, offset)
            if offset >= floor:
                continue
            if _explained(verdict, reads, partition, offset, floor):
                verdict.excused_regressions += 1
                highest[partition] = offset
                continue
            verdict.add(
                f"p{partition}: committed offset went back from {floor} to {offset} "
                f"(sampled at t={at - origin:.1f} s); commits of these offsets: "
                f"{_commits_of(reads.commits, partition, {offset, floor}, origin)}; "
                f"assignments until then: {_assignments(reads, at, origin)}"
            )


def _explained(verdict: Verdict, reads: GroupReads, partition: int, low: int, high: int) -> bool:
    """Whether a member saw the log cut between `low` and `high`: a record it read there
    rewritten in a later epoch, or a fetch at or past `high` told the log ends at or below
    `low`."""
    if any(low <= offset < high for offset in verdict.truncated[partition]):
        return True
    return any(
        c.partition == partition and c.new_end <= low and high <= c.fetched for c in reads.cuts
    )


def _assignments(reads: GroupReads, until: float, origin: float) -> str:
    shown = [
        f"{reader} t={at - origin:.2f} s {list(partitions)}"
        for at, reader, partitions in reads.assignments
        if at <= until
    ]
    return "; ".join(shown) or "none seen"


def _commits_of(commits: list[Commit], partition: int, offsets: set[int], origin: float) -> str:
    shown = [
        f"{c.reader} t={c.at - origin:.2f} s {'ok' if c.ok else 'failed'} {c.offsets[partition]}"
        for c in commits
        if c.offsets.get(partition) in offsets
    ]
    return "; ".join(shown) or "none seen"
