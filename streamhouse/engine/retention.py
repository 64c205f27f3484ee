"""Retention: every `retention_check_interval_ms`, each agent moves the log start of the
partitions it leads past the committed segment rows their topic's `retention.ms` and
`retention.bytes` let go (the rule is log/retention.py).

Only partitions led here now are judged (no lease is ever taken for retention), of topics whose
cleanup.policy includes delete. A partition's rows are read a page at a time from its log start
and reading stops at the first row that stays, so memory is a page and work follows what goes.
The log start moves through the log store's one path (`LogStore.raise_log_start`, DeleteRecords'
too): the metadata store drops the rows below it and stamps objects left without rows released,
which the reconciler deletes from the bucket a grace period later; reads and ListOffsets answer
from it at once. A pass reads at most RETENTION_ROWS_PER_PASS_MAX rows; the partitions it did
not reach come first at the next pass. A store failure ends the pass (logged, counted) and the
next pass retries from the partition it failed on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from streamhouse.config import Settings
from streamhouse.engine.coordinators import is_internal
from streamhouse.engine.failure import AgentFailure
from streamhouse.engine.log_store import LogStore
from streamhouse.engine.partition_log import PartitionLog
from streamhouse.engine.periodic import Periodic
from streamhouse.errors import NotLeader, StorageError, UnknownTopicOrPartition
from streamhouse.log.retention import RetentionPolicy, RetentionScan, topic_retention
from streamhouse.log.topic_configs import topic_config_specs
from streamhouse.names import TopicPartition
from streamhouse.ports.clock import Clock
from streamhouse.ports.leases import LeaseStore
from streamhouse.ports.topics import TopicStore

log = logging.getLogger("streamhouse.retention")

# Segment rows one pass reads from the metadata store at most (each partition looked at costs
# one more); partitions beyond it wait for the next pass
RETENTION_ROWS_PER_PASS_MAX = 100_000
# A partition's rows are read in pages that start small (most partitions have nothing to
# delete: their first row decides) and double up to the largest page
RETENTION_FIRST_PAGE_ROWS = 16
RETENTION_PAGE_ROWS_MAX = 1_000


@dataclass
class RetentionStats:
    """Counters over every pass of this agent's retention (exported as metrics)."""

    passes: int = 0
    passes_failed: int = 0
    partitions_checked: int = 0
    segments_deleted: int = 0
    bytes_deleted: int = 0


@dataclass(frozen=True)
class RetentionPassReport:
    """What one pass did: partitions judged, log starts moved, rows and bytes let go, and
    whether it reached every led partition (False: the row budget ran out or the store
    failed; the rest comes first next pass)."""

    partitions_checked: int = 0
    log_starts_moved: int = 0
    segments_deleted: int = 0
    bytes_deleted: int = 0
    complete: bool = True


@dataclass
class _TopicSizes:
    """A topic's bytes per partition as read once in a pass, and the log starts of its led
    partitions just before (a partition whose log start moved since is read again)."""

    by_partition: dict[int, int]
    log_starts: dict[TopicPartition, int]


class _Pass:
    """One pass's budget, what it read once per topic, and its counts."""

    def __init__(self) -> None:
        self.rows_left = RETENTION_ROWS_PER_PASS_MAX
        self.policies: dict[str, RetentionPolicy | None] = {}
        self.sizes: dict[str, _TopicSizes] = {}
        self.partitions_checked = 0
        self.log_starts_moved = 0
        self.segments_deleted = 0
        self.bytes_deleted = 0

    def moved(self, scan: RetentionScan) -> None:
        """A partition's log start moved past the rows the scan let go."""
        self.log_starts_moved += 1
        self.segments_deleted += scan.rows_deleted
        self.bytes_deleted += scan.bytes_deleted

    def report(self, complete: bool) -> RetentionPassReport:
        return RetentionPassReport(
            self.partitions_checked,
            self.log_starts_moved,
            self.segments_deleted,
            self.bytes_deleted,
            complete,
        )


class Retention:
    """The retention service of one agent and its background loop (see module)."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        log_store: LogStore,
        topics: TopicStore,
        leases: LeaseStore,
    ) -> None:
        self._interval_ms = settings.retention_check_interval_ms
        self._specs = topic_config_specs(settings.batch_bytes_max)
        self._clock = clock
        self._log = log_store
        self._topics = topics
        self._leases = leases
        self.stats = RetentionStats()
        self._resume_at: TopicPartition | None = None  # where the last unfinished pass stopped
        self._periodic: Periodic | None = None

    # --- the loop ---------------------------------------------------------------------------

    def start(self, failure: AgentFailure) -> None:
        """A pass every `retention_check_interval_ms` until `stop`; a failed pass is logged
        and retried at the next one."""
        self._periodic = Periodic("retention", self._clock, self._interval_ms, self.run_pass, log)
        self._periodic.start(failure)

    async def stop(self) -> None:
        if self._periodic is not None:
            await self._periodic.stop()

    # --- one pass ---------------------------------------------------------------------------

    async def run_pass(self) -> RetentionPassReport:
        """Judge the led partitions of topics with retention, from where the last unfinished
        pass stopped, within the pass's row budget. Raises StorageError (the pass is counted
        failed and the next one starts at the partition that failed)."""
        led = sorted(tp for tp in self._log.led_partitions() if not is_internal(tp.topic))
        if self._resume_at is not None:
            at = next((i for i, tp in enumerate(led) if tp >= self._resume_at), 0)
            led = led[at:] + led[:at]
        work = _Pass()
        try:
            for tp in led:
                self._resume_at = tp  # a failure, or the budget running out, resumes here
                if work.rows_left <= 0 or not await self._judge(tp, work):
                    break
            else:
                self._resume_at = None
        except StorageError:
            self.stats.passes_failed += 1
            raise
        finally:
            self._count(work)
        return work.report(complete=self._resume_at is None)

    def _count(self, work: _Pass) -> None:
        self.stats.passes += 1
        self.stats.partitions_checked += work.partitions_checked
        self.stats.segments_deleted += work.segments_deleted
        self.stats.bytes_deleted += work.bytes_deleted

    async def _judge(self, tp: TopicPartition, work: _Pass) -> bool:
        """Judge one partition if it is led here and its topic has retention; False when the
        row budget ran out before its judgement was complete."""
        if tp.topic not in work.policies:
            work.policies[tp.topic] = await self._policy(tp.topic)
        policy = work.policies[tp.topic]
        plog = self._log.led_partition(tp)
        if policy is None or plog is None:
            return True
        try:
            async with plog.log_start_moving:
                return await self._judge_led(plog, policy, work)
        except (NotLeader, UnknownTopicOrPartition):
            return True  # no longer led here, or deleted: not this agent's to judge any more

    async def _policy(self, topic: str) -> RetentionPolicy | None:
        record = await self._topics.get_topic(topic)
        return None if record is None else topic_retention(record.configs, self._specs)

    async def _size_bytes(self, plog: PartitionLog, work: _Pass) -> int:
        """The partition's bytes in the bucket, from one read per topic per pass, read again
        when its log start moved since (DeleteRecords meanwhile: rows went)."""
        tp = plog.state.tp
        sizes = work.sizes.get(tp.topic)
        if sizes is None or sizes.log_starts.get(tp) != plog.state.log_start_offset:
            # the log starts first: a move that overlaps the read shows as a change later
            log_starts = {
                led: led_plog.state.log_start_offset
                for led in self._log.led_partitions()
                if led.topic == tp.topic and (led_plog := self._log.led_partition(led))
            }
            sizes = _TopicSizes(await self._leases.partition_sizes(tp.topic), log_starts)
            work.sizes[tp.topic] = sizes
        return sizes.by_partition.get(tp.partition, 0)

    async def _judge_led(self, plog: PartitionLog, policy: RetentionPolicy, work: _Pass) -> bool:
        """With the partition's log start held still: read its rows from the log start until
        one stays, then move the log start past those that go. False when the row budget ran
        out first."""
        tp = plog.state.tp
        size_bytes = await self._size_bytes(plog, work) if policy.by_bytes else 0
        log_start = plog.state.log_start_offset
        scan = RetentionScan(policy, log_start, self._clock.now_ms(), size_bytes)
        work.partitions_checked += 1
        work.rows_left -= 1
        page_rows = RETENTION_FIRST_PAGE_ROWS
        offset = log_start
        while not scan.finished:
            if work.rows_left <= 0:
                break
            asked = min(page_rows, work.rows_left)
            rows = await self._leases.list_segments(tp, offset, asked)
            work.rows_left -= len(rows)
            scan.take(rows)
            if len(rows) < asked:
                scan.finished = True  # the last committed row was seen: the tail is not judged
                break
            offset = rows[-1].last_offset + 1
            page_rows = min(2 * page_rows, RETENTION_PAGE_ROWS_MAX)
        if scan.log_start_offset > log_start:
            await self._log.raise_log_start(plog, scan.log_start_offset)
            work.moved(scan)
            log.info(
                "retention moved the log start of %s from %d to %d: %d segments, %d bytes",
                tp,
                log_start,
                scan.log_start_offset,
                scan.rows_deleted,
                scan.bytes_deleted,
            )
        return scan.finished
