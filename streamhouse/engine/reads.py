"""Reads of a led partition: batches from the in-memory tail or from objects, long-polls for
new data, and offsets by timestamp (ListOffsets)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from streamhouse.config import Settings
from streamhouse.engine.object_reader import ObjectReader
from streamhouse.engine.partition_log import PartitionLog
from streamhouse.engine.waiting import any_done, sleep_or_until
from streamhouse.errors import OffsetOutOfRange
from streamhouse.kafka.batch_header import iter_batches
from streamhouse.kafka.compression import decompressor
from streamhouse.log.timestamps import first_at_or_after
from streamhouse.names import TopicPartition
from streamhouse.ports.clock import Clock
from streamhouse.ports.leases import LeaseStore

SEGMENT_ROWS_PER_READ = 16
DECOMPRESSION_RATIO_MAX = 64  # bound on a batch's records section when inflated


class LedPartitions(Protocol):
    """The partitions this agent leads (the log store)."""

    async def partition(self, tp: TopicPartition) -> PartitionLog:
        """The led partition, taking its lease first if needed. Raises NotLeader."""

    def led_partition(self, tp: TopicPartition) -> PartitionLog | None:
        """The partition if this agent leads it now, else None (no lease is taken)."""


@dataclass(frozen=True)
class ReadResult:
    """Batches from an offset, and the partition's offsets at the time of the read."""

    batches: list[bytes]
    high_watermark: int
    log_start_offset: int


class LogReader:
    """Reads for every door: the tail first, then the objects the segment rows point at."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        partitions: LedPartitions,
        leases: LeaseStore,
        objects: ObjectReader,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._partitions = partitions
        self._leases = leases
        self.objects = objects

    async def read(self, tp: TopicPartition, offset: int, bytes_max: int) -> ReadResult:
        """Batches holding `offset` and after, up to the high watermark and about `bytes_max`."""
        plog = await self._partitions.partition(tp)
        state = plog.state
        high_watermark, log_start = state.high_watermark, state.log_start_offset
        if offset < log_start or offset > high_watermark:
            raise OffsetOutOfRange(
                f"offset {offset} of {tp} is outside [{log_start}, {high_watermark}]"
            )
        if offset >= plog.tail.start_offset:
            found = plog.tail.read(offset, high_watermark, bytes_max)
            return ReadResult([b.data for b in found], high_watermark, log_start)
        batches = await self._read_objects(tp, offset, plog.tail.start_offset, bytes_max)
        return ReadResult(batches, high_watermark, log_start)

    async def wait_for_data(self, positions: Mapping[TopicPartition, int], wait_ms: int) -> bool:
        """Long-poll: wait up to `wait_ms` until some partition's high watermark passes its
        position (or its lease is lost). True if woken early; partitions not led are skipped."""
        watched = []
        for tp, offset in positions.items():
            plog = self._partitions.led_partition(tp)
            if plog is None:
                continue
            if plog.state.high_watermark > offset or plog.fenced:
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
        while offset < plog.tail.start_offset:
            segments = await self._leases.list_segments(tp, offset, SEGMENT_ROWS_PER_READ)
            if not segments:
                break
            for segment in segments:
                if segment.max_timestamp_ms >= timestamp_ms:
                    raw = await self.objects.read_segment(segment)
                    batches = [bytes(view) for _, view in iter_batches(raw, from_producer=False)]
                    found = first_at_or_after(batches, timestamp_ms, offset, decompress)
                    if found is not None:
                        return found
            offset = segments[-1].last_offset + 1
        tail_from = max(offset, plog.tail.start_offset)
        in_tail = plog.tail.read(tail_from, state.high_watermark, plog.tail.byte_count)
        tail_batches = (batch.data for batch in in_tail)
        return first_at_or_after(tail_batches, timestamp_ms, state.log_start_offset, decompress)

    async def _read_objects(
        self, tp: TopicPartition, offset: int, end_offset: int, bytes_max: int
    ) -> list[bytes]:
        found: list[bytes] = []
        size_bytes = 0
        segments = await self._leases.list_segments(tp, offset, SEGMENT_ROWS_PER_READ)
        for segment in segments:
            raw = await self.objects.read_segment(segment)
            for header, view in iter_batches(raw, from_producer=False):
                if header.last_offset < offset or header.base_offset >= end_offset:
                    continue
                if found and size_bytes + len(view) > bytes_max:
                    return found
                found.append(bytes(view))
                size_bytes += len(view)
        return found
