"""The scan of one topic for a query: each partition the range allows, from its log start (or
the pushed-down start) to its last stable offset at the query's start, read through the fetch
service (flushed objects and the unflushed tail, here or at the partition's leader, committed
records only: what a read_committed consumer sees), bounded in rows and bytes.

The time start is found with `FetchService.offset_for_timestamp`, which skips objects by the
max timestamps of their segment rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from streamhouse.engine.admin import AdminService
from streamhouse.engine.consume import ConsumedRecord, FetchService
from streamhouse.names import TopicPartition
from streamhouse.sql.pushdown import ScanRange

SCAN_READ_BYTES = 1024 * 1024  # asked of one fetch; a read returns at least one batch


@dataclass
class ScanStats:
    """What a query's scans read, summed over its topics."""

    partitions_read: int = 0
    fetches: int = 0  # reads of the fetch service (each up to SCAN_READ_BYTES)
    rows_read: int = 0
    bytes_read: int = 0  # keys, values and headers of the records read


class ScanLimit(Exception):
    """A scan passed `limit` (a Settings name) at `value`."""

    def __init__(self, limit: str, value: int) -> None:
        super().__init__(f"{limit}={value}")
        self.limit = limit
        self.value = value


@dataclass
class ScanBounds:
    """The rows and bytes one query may read, over all its topics."""

    rows_max: int
    bytes_max: int
    stats: ScanStats = field(default_factory=ScanStats)

    def count(self, records: list[ConsumedRecord]) -> None:
        self.stats.fetches += 1
        self.stats.rows_read += len(records)
        self.stats.bytes_read += sum(map(record_bytes, records))
        if self.stats.rows_read > self.rows_max:
            raise ScanLimit("sql_scan_rows_max", self.rows_max)
        if self.stats.bytes_read > self.bytes_max:
            raise ScanLimit("sql_scan_bytes_max", self.bytes_max)


def record_bytes(record: ConsumedRecord) -> int:
    size = len(record.key or b"") + len(record.value or b"")
    if record.headers:  # most records have none: no generator for them
        size += sum(len(key) + len(value or b"") for key, value in record.headers)
    return size


async def partitions_of(admin: AdminService, topic: str, wanted: ScanRange) -> list[int]:
    """The topic's partitions the range reads (UnknownTopicOrPartition for no topic)."""
    count = (await admin.topic(topic)).partition_count
    return [partition for partition in range(count) if wanted.reads_partition(partition)]


async def scan_topic(
    fetch: FetchService,
    admin: AdminService,
    topic: str,
    wanted: ScanRange,
    bounds: ScanBounds,
    on_records: Callable[[list[ConsumedRecord]], None],
) -> None:
    """Hand `on_records` the committed records of `topic` (the engine's name) in `wanted`,
    partition by partition, one fetch at a time."""
    for partition in await partitions_of(admin, topic, wanted):
        tp = TopicPartition(topic, partition)
        start, end = await partition_span(fetch, tp, wanted)
        if start >= end:
            continue
        bounds.stats.partitions_read += 1
        await _scan_partition(fetch, tp, start, end, bounds, on_records)


async def partition_span(
    fetch: FetchService, tp: TopicPartition, wanted: ScanRange
) -> tuple[int, int]:
    """[start, end) of the partition's offsets the range reads, as of now."""
    offsets = await fetch.offsets(tp)
    start = max(offsets.log_start_offset, wanted.offset_from)
    end = min(offsets.last_stable_offset, wanted.offset_to)
    if wanted.timestamp_from_ms is not None and start < end:
        found = await fetch.offset_for_timestamp(tp, wanted.timestamp_from_ms)
        start = end if found is None else max(start, found)
    return start, end


async def _scan_partition(
    fetch: FetchService,
    tp: TopicPartition,
    start: int,
    end: int,
    bounds: ScanBounds,
    on_records: Callable[[list[ConsumedRecord]], None],
) -> None:
    offset = start
    while offset < end:
        read = await fetch.read(tp, offset, SCAN_READ_BYTES, read_committed=True)
        records = [record for record in read.records if record.offset < end]
        bounds.count(records)
        if records:
            on_records(records)
        if read.next_offset <= offset:
            break  # nothing more to read below the end (the log moved under us)
        offset = read.next_offset
