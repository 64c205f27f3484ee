"""The object merger: runs of small blocks of a led partition rewritten into one object each.

Every flush writes one small object for all the agent's partitions, so a consumer reading an
old range of one partition would range-read many small objects. Every `merge_interval_ms`
each agent looks at the segment rows of the partitions it leads (it never takes a lease for
this) and merges runs of small ones through the rewrite-and-swap step (engine/rewrite.py)
with the identity transform.

Rows are looked at in *pieces*: consecutive rows pointing into one object (a merged object
is one piece). A piece is small when its stored blocks hold under `merge_small_block_bytes`.
A run is as many consecutive small pieces as fit in `merge_target_bytes` together; it is
merged when it has `merge_run_rows_min` pieces, or two or more and the next small piece did
not fit (a lone piece never is, so what a merge wrote is merged again only together with
others, and a run still growing at the end of the log waits for its pieces). A cycle
rewrites at most `merge_cycle_bytes_max` raw bytes, paced to `merge_bytes_per_s_max`, and
goes on from where the last one stopped in each partition.

Stateless: the work is derived from the rows each time, so after a crash at any step the
next cycle finds what is left (an upload whose swap never came is the reconciler's orphan).
A store that fails ends the cycle; it is logged and the next one tries again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from streamhouse.config import MERGE_OFF, Settings
from streamhouse.engine.failure import AgentFailure, BackgroundTask
from streamhouse.engine.partition_log import PartitionLog
from streamhouse.engine.rewrite import RewriteOutcome, Rewriter, Swapped, pace
from streamhouse.errors import StreamHouseError
from streamhouse.names import TopicPartition
from streamhouse.ports.buggify import MERGE_ANY_RUN, Buggify
from streamhouse.ports.clock import Clock
from streamhouse.ports.leases import LeaseStore, SegmentRecord

log = logging.getLogger("streamhouse.merger")

MERGE_ROWS_PER_LISTING = 1_000  # segment rows read from the store at a time
MERGE_RUN_ROWS_MAX = 4_096  # rows one swap replaces at most (one metadata transaction)
MERGE_ANY_RUN_PIECES = 2  # what a buggified merge asks of a run: any two pieces


class LedLogs(Protocol):
    """The partitions this agent leads (the log store)."""

    def led_partitions(self) -> list[TopicPartition]:
        """Every partition led now."""

    def led_partition(self, tp: TopicPartition) -> PartitionLog | None:
        """The partition if this agent leads it now, else None (no lease is taken)."""


@dataclass
class MergeStats:
    """Counters over every cycle of this agent's merger (exported as metrics)."""

    cycles: int = 0
    cycles_failed: int = 0  # a store failed: some partition was left for the next cycle
    swaps: int = 0
    swaps_refused: int = 0  # fenced: the lease moved on or the rows changed
    swaps_abandoned: int = 0  # the store kept failing, or the upload grew too old
    objects_written: int = 0
    object_bytes_written: int = 0
    bytes_rewritten: int = 0  # raw bytes read from the old blocks of swapped runs
    rows_replaced: int = 0


@dataclass
class MergeCycle:
    """What one cycle did."""

    runs: list[RewriteOutcome] = field(default_factory=list)
    raw_bytes: int = 0  # read, swapped or not: what the bound and the pace count
    failed: bool = False


@dataclass
class _Run:
    rows: list[SegmentRecord] = field(default_factory=list)
    pieces: int = 0
    stored_bytes: int = 0


class Merger:
    """Finds runs of small pieces in led partitions and rewrites them (see module)."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        logs: LedLogs,
        leases: LeaseStore,
        rewriter: Rewriter,
        buggify: Buggify | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._logs = logs
        self._leases = leases
        self.rewriter = rewriter
        self._buggify = buggify or Buggify()
        self._resume_from: dict[TopicPartition, int] = {}  # where the last cycle stopped
        # The durable end at which a look at the partition's rows found nothing to merge: it
        # is not looked at again until a flush moves it (most partitions, most cycles)
        self._idle_at: dict[TopicPartition, int] = {}
        self._task = BackgroundTask("merger")
        self.stats = MergeStats()

    @property
    def enabled(self) -> bool:
        return self._settings.merge_interval_ms > MERGE_OFF

    def start(self, failure: AgentFailure) -> None:
        if self.enabled:
            self._task.start(failure, self._loop())

    async def stop(self) -> None:
        await self._task.stop()

    async def _loop(self) -> None:
        while True:
            await self._clock.sleep_ms(self._settings.merge_interval_ms)
            await self.run_once()

    async def run_once(self) -> MergeCycle:
        """One cycle over the led partitions; a failing store ends a partition's turn early
        (logged; the next cycle tries again)."""
        cycle = MergeCycle()
        self.stats.cycles += 1
        led = sorted(self._logs.led_partitions())
        for gone in set(self._idle_at).difference(led):
            del self._idle_at[gone]
        for tp in led:
            if cycle.raw_bytes >= self._settings.merge_cycle_bytes_max:
                break
            try:
                await self._merge_partition(tp, cycle)
            except StreamHouseError as error:  # a store failed, a block is damaged: next cycle
                cycle.failed = True
                log.warning("merging %s stopped, retried next cycle: %s", tp, error)
        self.stats.cycles_failed += cycle.failed
        return cycle

    async def _merge_partition(self, tp: TopicPartition, cycle: MergeCycle) -> None:
        led = self._logs.led_partition(tp)
        if led is None or self._idle_at.get(tp) == led.state.durable_end_offset:
            return
        durable_end = led.state.durable_end_offset
        merged = False
        async for run in self._runs(tp):
            merged = True
            plog = self._logs.led_partition(tp)
            if plog is None or not plog.leading(self._clock.monotonic_ms()):
                self._resume_from.pop(tp, None)
                return
            started_ms = self._clock.monotonic_ms()
            outcome = await self.rewriter.rewrite(tp, plog.state.leader_epoch, run.rows)
            self._count(outcome, run)
            cycle.runs.append(outcome)
            cycle.raw_bytes += outcome.raw_bytes_read
            self._resume_from[tp] = run.rows[-1].last_offset + 1
            await pace(
                self._clock,
                outcome.raw_bytes_read,
                started_ms,
                self._settings.merge_bytes_per_s_max,
            )
            if cycle.raw_bytes >= self._settings.merge_cycle_bytes_max:
                return
        self._resume_from.pop(tp, None)  # the end reached: the next cycle starts over
        if not merged:
            self._idle_at[tp] = durable_end

    def _count(self, outcome: RewriteOutcome, run: _Run) -> None:
        stats = self.stats
        stats.objects_written += 1
        stats.object_bytes_written += outcome.object_bytes
        log.info(
            "merge of %d rows of %s into %s: %s",
            len(run.rows),
            run.rows[0].tp,
            outcome.key,
            outcome.swapped.value,
        )
        if outcome.swapped is Swapped.SWAPPED:
            stats.swaps += 1
            stats.bytes_rewritten += outcome.raw_bytes_read
            stats.rows_replaced += len(run.rows)
        elif outcome.swapped is Swapped.REFUSED:
            stats.swaps_refused += 1
        else:
            stats.swaps_abandoned += 1

    async def _runs(self, tp: TopicPartition) -> AsyncIterator[_Run]:
        """The runs of `tp` worth merging, from where the last cycle stopped, listed afresh
        after each one (a merge changes the rows)."""
        settings = self._settings
        pieces_min = settings.merge_run_rows_min
        if self._buggify.fires(MERGE_ANY_RUN):
            pieces_min = MERGE_ANY_RUN_PIECES
        offset = self._resume_from.get(tp, 0)
        while True:
            found = await self._next_run(tp, offset, pieces_min)
            if found is None:
                return
            yield found
            offset = found.rows[-1].last_offset + 1

    async def _next_run(self, tp: TopicPartition, offset: int, pieces_min: int) -> _Run | None:
        """The first run worth merging at or after `offset`, or None."""
        settings = self._settings
        run = _Run()
        piece: list[SegmentRecord] = []
        async for row in self._rows(tp, offset):
            if piece and row.object_key == piece[-1].object_key:
                piece.append(row)
                continue
            done = _close_piece(run, piece, settings, pieces_min)
            if done is not None:
                return done
            piece = [row]
        done = _close_piece(run, piece, settings, pieces_min)
        if done is not None:
            return done
        return run if _worth_merging(run, pieces_min, cut=False) else None

    async def _rows(self, tp: TopicPartition, offset: int) -> AsyncIterator[SegmentRecord]:
        while True:
            rows = await self._leases.list_segments(tp, offset, MERGE_ROWS_PER_LISTING)
            for row in rows:
                yield row
            if len(rows) < MERGE_ROWS_PER_LISTING:
                return
            offset = rows[-1].last_offset + 1


def _close_piece(
    run: _Run, piece: Sequence[SegmentRecord], settings: Settings, pieces_min: int
) -> _Run | None:
    """Add the finished `piece` to `run` (in place). Returns a run worth merging that the
    piece ends (or None), after which `run` starts afresh."""
    if not piece:
        return None
    piece_bytes = sum(row.length for row in piece)
    small = piece_bytes < settings.merge_small_block_bytes
    fits = (
        run.stored_bytes + piece_bytes <= settings.merge_target_bytes
        and len(run.rows) + len(piece) <= MERGE_RUN_ROWS_MAX
    )
    if small and fits:
        _add(run, piece, piece_bytes)
        return None
    taken = _taken(run)
    if small:  # the piece starts the next run
        _add(run, piece, piece_bytes)
    return taken if _worth_merging(taken, pieces_min, cut=small) else None


def _add(run: _Run, piece: Sequence[SegmentRecord], piece_bytes: int) -> None:
    run.rows += piece
    run.pieces += 1
    run.stored_bytes += piece_bytes


def _worth_merging(run: _Run, pieces_min: int, *, cut: bool) -> bool:
    """A run is merged once it has `pieces_min` pieces, or two or more when the next small
    piece would take it past its bounds (`cut`)."""
    return run.pieces >= pieces_min or (cut and run.pieces >= 2)


def _taken(run: _Run) -> _Run:
    """A copy of `run`, which starts afresh."""
    copy = _Run(run.rows, run.pieces, run.stored_bytes)
    run.rows, run.pieces, run.stored_bytes = [], 0, 0
    return copy
