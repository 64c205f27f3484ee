"""Log compaction: every `compaction_interval_ms` each agent runs a cleaning round on each due
partition it leads of a topic whose cleanup.policy includes compact. log/compaction.py holds
the rules (what a round keeps, when a partition is due); engine/rewrite.py rewrites and swaps.

A round, for one partition:

1. Its committed segment rows from the log start are listed (at most COMPACTION_ROWS_MAX);
   the partition's checkpoint (`cleaned_end_offset`, the store's) splits their bytes into
   clean and dirty. The round is due when the dirty ratio passes min.cleanable.dirty.ratio
   or the first dirty row's records are older than max.compaction.lag.ms (a row knows its
   largest timestamp only, so a round can come up to one row's time span late).
2. The first uncleanable offset is the lowest of the durable end, the last stable offset
   (open transactions) and the first dirty row younger than min.compaction.lag.ms; the
   unflushed tail is never touched.
3. The offset map is built from the dirty rows up to it (it may fill first: the round then
   ends where it filled and the rest stays dirty).
4. Every batch from the log start to the map's end goes through the round in offset order,
   in runs of at most `compaction_run_rows_max` rows, each run rewritten into one object and
   swapped under the lease epoch this agent holds; the last run's swap moves the checkpoint.
   A run whose swap is refused or fails ends the round and the checkpoint stays, so the
   next round covers it all again (what was swapped before is a cleaned prefix).

Offsets never move: a rewritten batch keeps its first and last offset, and rows keep
covering the offsets they covered (gaps appear inside). Until a round has cleaned them, the
tail and the dirty rows are read as written, so a consumer can see several values of a key,
as in Kafka.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from streamhouse.config import COMPACTION_OFF, Settings
from streamhouse.engine.coordinators import is_internal
from streamhouse.engine.failure import AgentFailure
from streamhouse.engine.merger import LedLogs
from streamhouse.engine.object_reader import ObjectReader
from streamhouse.engine.partition_log import PartitionLog
from streamhouse.engine.periodic import Periodic
from streamhouse.engine.reads import DECOMPRESSION_RATIO_MAX
from streamhouse.engine.rewrite import Rewriter, Swapped, pace
from streamhouse.errors import StreamHouseError
from streamhouse.kafka.compression import decompressor
from streamhouse.log.compaction import (
    CleaningRound,
    OffsetMap,
    first_uncleanable_offset,
    is_compacted,
    should_clean,
)
from streamhouse.log.partition_txns import AbortedTxn
from streamhouse.log.rewrite_blocks import StoredBatch, stored_batches
from streamhouse.log.topic_configs import topic_config_specs
from streamhouse.names import TopicPartition
from streamhouse.ports.buggify import COMPACTION_BETWEEN_RUNS, Buggify
from streamhouse.ports.clock import Clock
from streamhouse.ports.leases import LeaseStore, SegmentRecord
from streamhouse.ports.object_store import ObjectStore
from streamhouse.ports.producers import ProducerStore
from streamhouse.ports.topics import PartitionRecord, TopicStore

log = logging.getLogger("streamhouse.compactor")

COMPACTION_ROWS_MAX = 100_000  # segment rows one round looks at, from the log start
COMPACTION_ROWS_PER_LISTING = 1_000


@dataclass(frozen=True)
class CompactionConfig:
    """A compacted topic's cleaning configs, read from its topic configs."""

    delete_retention_ms: int
    min_compaction_lag_ms: int
    max_compaction_lag_ms: int
    min_cleanable_dirty_ratio: float


@dataclass
class CompactionStats:
    """Counters over every pass of this agent's compactor (exported as metrics)."""

    passes: int = 0
    rounds: int = 0  # rounds that swapped every run and moved the checkpoint
    rounds_failed: int = 0  # a store failed, a block was damaged, a swap was refused
    swaps: int = 0
    bytes_read: int = 0  # raw bytes of the batches rounds read (the map's and the runs')
    bytes_written: int = 0  # raw bytes of the batches swapped in
    records_removed: int = 0


@dataclass(frozen=True)
class RoundOutcome:
    """What one round did for a partition: whether it was due, how many runs it swapped,
    where the checkpoint went (None: it stayed) and the round's own counts."""

    due: bool
    runs_swapped: int = 0
    cleaned_end_offset: int | None = None
    records_read: int = 0
    records_kept: int = 0


class Compactor:
    """Cleaning rounds over the compacted partitions this agent leads (see module)."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        logs: LedLogs,
        topics: TopicStore,
        leases: LeaseStore,
        producers: ProducerStore,
        objects: ObjectStore,
        rewriter: Rewriter,
        buggify: Buggify | None = None,
    ) -> None:
        self._settings = settings
        self._buggify = buggify or Buggify()
        self._clock = clock
        self._logs = logs
        self._topics = topics
        self._leases = leases
        self._producers = producers
        self._rewriter = rewriter
        self._reader = ObjectReader(objects)  # its own, without a cache: read once a round
        self._specs = topic_config_specs(settings.batch_bytes_max)
        self._decompress = decompressor(settings.batch_bytes_max * DECOMPRESSION_RATIO_MAX)
        self._periodic: Periodic | None = None
        self.stats = CompactionStats()

    @property
    def enabled(self) -> bool:
        return self._settings.compaction_interval_ms > COMPACTION_OFF

    def start(self, failure: AgentFailure) -> None:
        """A pass every `compaction_interval_ms` until `stop` (none when it is off)."""
        if not self.enabled:
            return
        interval_ms = self._settings.compaction_interval_ms
        self._periodic = Periodic("compactor", self._clock, interval_ms, self.run_once, log)
        self._periodic.start(failure)

    async def stop(self) -> None:
        if self._periodic is not None:
            await self._periodic.stop()

    async def run_once(self) -> dict[TopicPartition, RoundOutcome]:
        """One pass over the led partitions of compacted topics: a round for each that is
        due. A partition whose round fails (a store, a damaged block, a refused swap) is
        logged and tried again at the next pass."""
        self.stats.passes += 1
        outcomes: dict[TopicPartition, RoundOutcome] = {}
        configs: dict[str, CompactionConfig | None] = {}
        for tp in sorted(tp for tp in self._logs.led_partitions() if not is_internal(tp.topic)):
            try:
                if tp.topic not in configs:
                    configs[tp.topic] = await self._config(tp.topic)
                config = configs[tp.topic]
                if config is not None:
                    outcomes[tp] = await self.compact(tp, config)
            except StreamHouseError as error:
                self.stats.rounds_failed += 1
                log.warning("compacting %s stopped, tried again next pass: %s", tp, error)
        return outcomes

    async def _config(self, topic: str) -> CompactionConfig | None:
        """The topic's cleaning configs, or None when it does not compact (or is gone)."""
        record = await self._topics.get_topic(topic)
        if record is None:
            return None

        def value(name: str) -> str:
            configured = record.configs.get(name)
            return self._specs[name].default if configured is None else configured

        if not is_compacted(value("cleanup.policy")):
            return None
        return CompactionConfig(
            int(value("delete.retention.ms")),
            int(value("min.compaction.lag.ms")),
            int(value("max.compaction.lag.ms")),
            float(value("min.cleanable.dirty.ratio")),
        )

    async def compact(self, tp: TopicPartition, config: CompactionConfig) -> RoundOutcome:
        """A round for `tp` if this agent leads it and it is due. Raises StorageError,
        CorruptObject, ObjectNotFound or UnknownTopicOrPartition (the round stops; the
        checkpoint stays)."""
        plog = self._led(tp)
        if plog is None:
            return RoundOutcome(due=False)
        record = await self._topics.get_partition(tp)
        rows = await self._rows(tp, record)
        cleaned_end = max(record.cleaned_end_offset, record.log_start_offset)
        dirty = [row for row in rows if row.last_offset >= cleaned_end]
        now_ms = self._clock.now_ms()
        listed_end = rows[-1].last_offset + 1 if rows else record.log_start_offset
        uncleanable = first_uncleanable_offset(
            durable_end_offset=min(record.durable_end_offset, listed_end),
            last_stable_offset=plog.last_stable_offset,
            dirty_segments=[(row.base_offset, row.max_timestamp_ms) for row in dirty],
            now_ms=now_ms,
            min_compaction_lag_ms=config.min_compaction_lag_ms,
        )
        # As Kafka's LogCleanerManager: the ratio weighs only the dirty bytes a round may
        # clean now (rows starting before the first uncleanable offset), not young ones
        cleanable = [row for row in dirty if row.base_offset < uncleanable]
        due = should_clean(
            clean_bytes=sum(row.length for row in rows if row.last_offset < cleaned_end),
            dirty_bytes=sum(row.length for row in cleanable),
            oldest_dirty_timestamp_ms=cleanable[0].max_timestamp_ms if cleanable else -1,
            now_ms=now_ms,
            min_cleanable_dirty_ratio=config.min_cleanable_dirty_ratio,
            max_compaction_lag_ms=config.max_compaction_lag_ms,
        )
        if not due or uncleanable <= cleaned_end:
            return RoundOutcome(due=False)
        aborted = await self._aborted(plog, record.log_start_offset, uncleanable)
        offset_map = await self._offset_map(dirty, cleaned_end, uncleanable, aborted)
        cleaning = CleaningRound(
            offset_map,
            aborted,
            self._decompress,
            now_ms=now_ms,
            delete_retention_ms=config.delete_retention_ms,
        )
        covered = [row for row in rows if row.base_offset < offset_map.end_offset]
        return await self._swap_runs(tp, plog, covered, cleaning)

    def _led(self, tp: TopicPartition) -> PartitionLog | None:
        plog = self._logs.led_partition(tp)
        if plog is None or not plog.leading(self._clock.monotonic_ms()):
            return None
        return plog

    async def _rows(self, tp: TopicPartition, record: PartitionRecord) -> list[SegmentRecord]:
        """The committed rows from the log start, at most COMPACTION_ROWS_MAX."""
        rows: list[SegmentRecord] = []
        offset = record.log_start_offset
        while len(rows) < COMPACTION_ROWS_MAX:
            page = await self._leases.list_segments(tp, offset, COMPACTION_ROWS_PER_LISTING)
            rows += page[: COMPACTION_ROWS_MAX - len(rows)]
            if len(page) < COMPACTION_ROWS_PER_LISTING:
                break
            offset = page[-1].last_offset + 1
        return rows

    async def _aborted(self, plog: PartitionLog, first: int, end: int) -> list[AbortedTxn]:
        """The partition's aborted transactions with records in [first, end): those the
        leader holds, and older ones from the metadata store."""
        if end <= first:
            return []
        held = plog.txns.aborted_between(first, end - 1)
        if first >= plog.txns.covered_from:
            return held
        stored = await self._producers.list_aborted_txns(plog.state.tp, first, end - 1)
        return [a for a in stored if a.last_offset < plog.txns.covered_from] + held

    async def _offset_map(
        self,
        dirty: Sequence[SegmentRecord],
        cleaned_end: int,
        uncleanable: int,
        aborted: Sequence[AbortedTxn],
    ) -> OffsetMap:
        offset_map = OffsetMap(cleaned_end, uncleanable, aborted, self._decompress)
        for row in dirty:
            if row.base_offset >= uncleanable:
                break
            block = await self._reader.read_block(row)
            self.stats.bytes_read += len(block.raw)
            for batch in stored_batches(block.raw, row.leader_epoch):
                if batch.last_offset < cleaned_end:
                    continue  # the clean part of a row the checkpoint cuts
                if not offset_map.add(batch.data):
                    return offset_map
        return offset_map

    async def _swap_runs(
        self,
        tp: TopicPartition,
        plog: PartitionLog,
        covered: Sequence[SegmentRecord],
        cleaning: CleaningRound,
    ) -> RoundOutcome:
        """The round's batches, rewritten and swapped run by run; the last run's swap moves
        the checkpoint to the round's end."""

        def transform(_tp: TopicPartition, batches: Sequence[StoredBatch]) -> list[StoredBatch]:
            kept = []
            for batch in batches:
                data = cleaning.clean(batch.data)
                if data is not None:
                    kept.append(
                        StoredBatch(
                            batch.leader_epoch,
                            batch.base_offset,
                            batch.last_offset,
                            batch.max_timestamp_ms,
                            data,
                        )
                    )
            return kept

        run_rows_max = self._settings.compaction_run_rows_max
        runs = [
            covered[start : start + run_rows_max] for start in range(0, len(covered), run_rows_max)
        ]
        swapped = 0
        for index, run in enumerate(runs):
            last = index == len(runs) - 1
            if index:
                self._buggify.reached(COMPACTION_BETWEEN_RUNS)
            if self._led(tp) is not plog:
                break
            started_ms = self._clock.monotonic_ms()
            outcome = await self._rewriter.rewrite(
                tp,
                plog.state.leader_epoch,
                run,
                transform,
                cleaned_end_offset=cleaning.end_offset if last else None,
            )
            self.stats.bytes_read += outcome.raw_bytes_read
            await pace(
                self._clock,
                outcome.raw_bytes_read,
                started_ms,
                self._settings.compaction_bytes_per_s_max,
            )
            if outcome.swapped is not Swapped.SWAPPED:
                log.info("compaction of %s ended at a %s swap", tp, outcome.swapped.value)
                break
            swapped += 1
            log.info(
                "compaction of %s: run %d of %d (%d rows) swapped into %s",
                tp,
                index + 1,
                len(runs),
                len(run),
                outcome.key,
            )
            self.stats.swaps += 1
            self.stats.bytes_written += outcome.raw_bytes_written
        stats = cleaning.stats
        self.stats.records_removed += stats.records_read - stats.records_kept
        done = swapped == len(runs)
        if done:
            self.stats.rounds += 1
            log.info(
                "compacted %s up to offset %d: %d of %d records kept",
                tp,
                cleaning.end_offset,
                stats.records_kept,
                stats.records_read,
            )
        else:
            self.stats.rounds_failed += 1
        return RoundOutcome(
            True,
            swapped,
            cleaning.end_offset if done else None,
            stats.records_read,
            stats.records_kept,
        )
