"""Reads of a led partition: batches from the in-memory tail or from objects, long-polls for
new data, and offsets by timestamp (ListOffsets)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from streamhouse.config import Settings
from streamhouse.engine.damaged_objects import DamagedObjects
from streamhouse.engine.object_reader import ObjectReader
from streamhouse.engine.partition_log import PartitionLog
from streamhouse.engine.waiting import any_done, sleep_or_until
from streamhouse.errors import (
    CorruptObject,
    DamagedData,
    ObjectNotFound,
    OffsetOutOfRange,
    StorageError,
)
from streamhouse.kafka.batch_header import iter_batches, parse_header
from streamhouse.kafka.compression import decompressor
from streamhouse.kafka.records import Decompressor
from streamhouse.kafka.varint import Buffer
from streamhouse.log.block_batches import BlockBatches
from streamhouse.log.partition_txns import AbortedTxn
from streamhouse.log.timestamps import first_at_or_after
from streamhouse.names import TopicPartition
from streamhouse.ports.clock import Clock
from streamhouse.ports.leases import LeaseStore, SegmentRecord
from streamhouse.ports.producers import ProducerStore

SEGMENT_ROWS_PER_READ = 16
# Segment rows listed for a partition are reused by the reads that follow (a consumer moves
# through them in order) instead of asking the metadata store at every fetch: kept for this
# many partitions (least recently read forgotten first), each listing for at most this long.
# A rewrite (merger, compaction) swaps rows; the objects they named live on for the
# reconciler's grace, far longer than this age bound, and a read that still finds one gone
# lists the rows again before it calls the object damaged (at most this many times a read)
SEGMENT_LISTINGS_MAX = 4096
SEGMENT_LISTING_AGE_MS_MAX = 5_000
STALE_LISTING_RETRIES_MAX = 3
DECOMPRESSION_RATIO_MAX = 64  # bound on a batch's records section when inflated


class StaleSegmentRow(StorageError):
    """A segment row read was replaced meanwhile (a rewrite swapped it) and its object is
    gone: the read lists the rows again (retriable if it escapes)."""


class LedPartitions(Protocol):
    """The partitions this agent leads (the log store)."""

    async def partition(self, tp: TopicPartition) -> PartitionLog:
        """The led partition, taking its lease first if needed. Raises NotLeader."""

    def led_partition(self, tp: TopicPartition) -> PartitionLog | None:
        """The partition if this agent leads it now, else None (no lease is taken)."""


@dataclass(frozen=True)
class ReadResult:
    """Batches from an offset (as stored: bytes or views of a cached block, not copied), and
    the partition's offsets at the time of the read. A read_committed read ends at the last
    stable offset and lists the aborted transactions with records among its batches (None
    for read_uncommitted)."""

    batches: Sequence[Buffer]
    high_watermark: int
    log_start_offset: int
    last_stable_offset: int
    aborted: Sequence[AbortedTxn] | None = None


class LogReader:
    """Reads for every door: the tail first, then the objects the segment rows point at."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        partitions: LedPartitions,
        leases: LeaseStore,
        objects: ObjectReader,
        producers: ProducerStore,
        damaged: DamagedObjects | None = None,
    ) -> None:
        self._settings = settings
        self.damaged = damaged or DamagedObjects()
        self._clock = clock
        self._partitions = partitions
        self._leases = leases
        self._producers = producers
        self.objects = objects
        # partition -> (offset listed from, rows, monotonic ms listed at)
        self._listings: OrderedDict[TopicPartition, tuple[int, list[SegmentRecord], int]] = (
            OrderedDict()
        )

    async def read(
        self, tp: TopicPartition, offset: int, bytes_max: int, *, read_committed: bool = False
    ) -> ReadResult:
        """Batches holding `offset` and after, up to the high watermark (read_committed: the
        last stable offset) and about `bytes_max` (at least one batch when there is one,
        unless `bytes_max` is 0: then none, but the offset is still checked)."""
        plog = await self._partitions.partition(tp)
        state = plog.state
        high_watermark, log_start = state.high_watermark, state.log_start_offset
        stable = plog.last_stable_offset
        if offset < log_start or offset > high_watermark:
            raise OffsetOutOfRange(
                f"offset {offset} of {tp} is outside [{log_start}, {high_watermark}]"
            )
        end_offset = stable if read_committed else high_watermark
        batches: Sequence[Buffer] = []
        if bytes_max > 0 and offset < end_offset:
            batches = await self._read_until(plog, offset, end_offset, bytes_max)
        aborted = None
        if read_committed:
            aborted = await self._aborted_among(plog, offset, batches)
        return ReadResult(batches, high_watermark, log_start, stable, aborted)

    async def _read_until(
        self, plog: PartitionLog, offset: int, end_offset: int, bytes_max: int
    ) -> Sequence[Buffer]:
        if offset >= plog.tail.start_offset:
            return [b.data for b in plog.tail.read(offset, end_offset, bytes_max)]
        until = min(end_offset, plog.tail.start_offset)
        found = await self._read_objects(plog.state.tp, offset, until, bytes_max)
        if found or until >= end_offset:
            return found
        # no batch from `offset` to the tail (compaction emptied those rows): the tail's first
        return [b.data for b in plog.tail.read(until, end_offset, bytes_max)]

    async def _aborted_among(
        self, plog: PartitionLog, offset: int, batches: Sequence[Buffer]
    ) -> list[AbortedTxn]:
        """Aborted transactions with records among `batches` (read from `offset`): those the
        leader holds, and older ones from the metadata store."""
        if not batches:
            return []
        last_offset = parse_header(batches[-1]).last_offset
        held = plog.txns.aborted_between(offset, last_offset)
        if offset >= plog.txns.covered_from:
            return held
        stored = await self._producers.list_aborted_txns(plog.state.tp, offset, last_offset)
        older = [a for a in stored if a.last_offset < plog.txns.covered_from]
        return older + held

    async def wait_for_data(
        self,
        positions: Mapping[TopicPartition, int],
        wait_ms: int,
        *,
        read_committed: bool = False,
    ) -> bool:
        """Long-poll: wait up to `wait_ms` until some partition's high watermark (with
        read_committed: last stable offset) passes its position (or its lease is lost). True
        if woken early; partitions not led are skipped."""
        watched = []
        for tp, offset in positions.items():
            plog = self._partitions.led_partition(tp)
            if plog is None:
                continue
            readable = plog.last_stable_offset if read_committed else plog.state.high_watermark
            if readable > offset or plog.fenced:
                return True
            watched.append(plog.watch_high_watermark())
        if not watched or wait_ms <= 0:
            return False
        return await sleep_or_until(self._clock, wait_ms, any_done(watched))

    async def offset_for_timestamp(
        self, tp: TopicPartition, timestamp_ms: int
    ) -> tuple[int, int] | None:
        """ListOffsets by time: (offset, timestamp) of the first record stamped at or after
        `timestamp_ms`, below the high watermark; None when there is none."""
        plog = await self._partitions.partition(tp)
        state = plog.state
        decompress = decompressor(self._settings.batch_bytes_max * DECOMPRESSION_RATIO_MAX)
        offset = state.log_start_offset
        stale = 0
        while offset < plog.tail.start_offset:
            segments = await self._leases.list_segments(tp, offset, SEGMENT_ROWS_PER_READ)
            if not segments:
                break
            try:
                found = await self._first_in(segments, timestamp_ms, offset, decompress)
            except StaleSegmentRow:
                stale += 1
                if stale > STALE_LISTING_RETRIES_MAX:
                    raise
                continue  # rewritten meanwhile: the same offsets listed again
            if found is not None:
                return found
            offset = segments[-1].last_offset + 1
        tail_from = max(offset, plog.tail.start_offset)
        in_tail = plog.tail.read(tail_from, state.high_watermark, plog.tail.byte_count)
        tail_batches = (batch.data for batch in in_tail)
        return first_at_or_after(tail_batches, timestamp_ms, state.log_start_offset, decompress)

    async def _first_in(
        self,
        segments: list[SegmentRecord],
        timestamp_ms: int,
        offset: int,
        decompress: Decompressor,
    ) -> tuple[int, int] | None:
        for segment in segments:
            if segment.max_timestamp_ms >= timestamp_ms:
                raw = (await self._read_block(segment)).raw
                batches = [bytes(view) for _, view in iter_batches(raw, from_producer=False)]
                found = first_at_or_after(batches, timestamp_ms, offset, decompress)
                if found is not None:
                    return found
        return None

    def forget_listing(self, tp: TopicPartition) -> None:
        """The partition's rows changed (a rewrite's swap): the next read lists them again."""
        self._listings.pop(tp, None)

    async def _read_objects(
        self, tp: TopicPartition, offset: int, end_offset: int, bytes_max: int
    ) -> list[memoryview]:
        """Batches from the objects the rows name, listed again when a row turns out to
        have been rewritten and its object deleted meanwhile."""
        for _ in range(STALE_LISTING_RETRIES_MAX):
            try:
                return await self._read_listed(tp, offset, end_offset, bytes_max)
            except StaleSegmentRow:
                self._listings.pop(tp, None)
        return await self._read_listed(tp, offset, end_offset, bytes_max)

    async def _read_listed(
        self, tp: TopicPartition, offset: int, end_offset: int, bytes_max: int
    ) -> list[memoryview]:
        found: list[memoryview] = []
        size_bytes = 0
        listed_from = offset
        while True:
            segments = await self._segments(tp, listed_from)
            for segment in segments:
                if segment.base_offset >= end_offset or size_bytes >= bytes_max:
                    return found
                if segment.last_offset < offset:
                    continue
                try:
                    block = await self._read_block(segment)
                except (DamagedData, StaleSegmentRow):
                    if found:
                        return found  # what comes before is served; a read from there fails
                    raise
                room = bytes_max - size_bytes
                views, full = block.read(offset, end_offset, room, first_always=not found)
                found += views
                size_bytes += sum(len(view) for view in views)
                if full:
                    return found  # the block's next batch does not fit: nothing after it may
            # Every row listed held no batch from `offset` on (compaction emptied them): the
            # read goes on to the next rows, as a fetch in a gap gets the batch after it
            if found or not segments or segments[-1].last_offset + 1 >= end_offset:
                return found
            listed_from = segments[-1].last_offset + 1

    async def _read_block(self, segment: SegmentRecord) -> BlockBatches:
        """The segment's block; DamagedData (remembered, logged with the object and offsets)
        when its object is missing or corrupt and the row still names it (StaleSegmentRow when
        a rewrite replaced the row meanwhile). ObjectStoreUnavailable passes: a retry may
        read it."""
        try:
            return await self.objects.read_block(segment)
        except (ObjectNotFound, CorruptObject) as error:
            current = await self._leases.list_segments(segment.tp, segment.base_offset, 1)
            if current[:1] != [segment]:
                self._listings.pop(segment.tp, None)
                raise StaleSegmentRow(f"{segment} was rewritten while it was read") from error
            raise self.damaged.found_by_read(segment, error) from error

    async def _segments(self, tp: TopicPartition, offset: int) -> list[SegmentRecord]:
        """The segment rows from `offset` on: the partition's last listing while it covers
        `offset` and is young enough, else a new one from the metadata store."""
        now_ms = self._clock.monotonic_ms()
        listed = self._listings.get(tp)
        if listed is not None:
            listed_from, rows, listed_ms = listed
            fresh = now_ms - listed_ms <= SEGMENT_LISTING_AGE_MS_MAX
            if fresh and rows and listed_from <= offset <= rows[-1].last_offset:
                self._listings.move_to_end(tp)
                return rows
        rows = await self._leases.list_segments(tp, offset, SEGMENT_ROWS_PER_READ)
        self._listings[tp] = (offset, rows, now_ms)
        self._listings.move_to_end(tp)
        while len(self._listings) > SEGMENT_LISTINGS_MAX:
            self._listings.popitem(last=False)
        return rows
