"""EXPLAIN of a query: per topic and partition, the objects (segment rows: one block of one
object each) its scan reads and those it skips by pushdown, and the unflushed tail it reads.

Segment rows come from the metadata store, which every agent shares, so partitions another
agent leads are listed the same way; the range read comes from the same `partition_span` the
scan uses (the time start through `offset_for_timestamp`, which skips objects by the rows' max
timestamps). At most EXPLAIN_ROWS_MAX rows are listed per partition.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from streamhouse.engine.admin import AdminService
from streamhouse.engine.consume import FetchService
from streamhouse.names import TopicPartition
from streamhouse.ports.leases import LeaseStore, SegmentRecord
from streamhouse.sql.pushdown import ScanRange
from streamhouse.sql.scan import partition_span
from streamhouse.sql.value_columns import TIMESTAMP

EXPLAIN_ROWS_MAX = 10_000  # segment rows listed per partition
SEGMENT_PAGE_ROWS = 1_000
MICROS_PER_MILLI = 1000
READ, SKIP, TAIL = "read", "skip", "tail"
EXPLAIN_SCHEMA = pa.schema(
    [
        pa.field("topic", pa.string()),
        pa.field("partition", pa.int32()),
        pa.field("action", pa.string()),  # read, skip, tail
        pa.field("object_key", pa.string()),
        pa.field("first_offset", pa.int64()),
        pa.field("last_offset", pa.int64()),
        pa.field("max_timestamp", TIMESTAMP),
        pa.field("bytes", pa.int64()),
        pa.field("reason", pa.string()),
    ]
)


@dataclass(frozen=True)
class Listed:
    """One row of the listing."""

    topic: str
    partition: int
    action: str
    object_key: str | None
    first_offset: int
    last_offset: int
    max_timestamp_ms: int | None
    size_bytes: int | None
    reason: str


class Explainer:
    """The listing of what scans will read."""

    def __init__(self, fetch: FetchService, admin: AdminService, segments: LeaseStore) -> None:
        self._fetch = fetch
        self._admin = admin
        self._segments = segments

    async def listing(self, topic: str, shown: str, wanted: ScanRange) -> list[Listed]:
        """The rows of `topic` (the engine's name; `shown`: the caller's)."""
        rows: list[Listed] = []
        count = (await self._admin.topic(topic)).partition_count
        for partition in range(count):
            rows += await self._partition(TopicPartition(topic, partition), shown, wanted)
        return rows

    async def _partition(self, tp: TopicPartition, shown: str, wanted: ScanRange) -> list[Listed]:
        selected = wanted.reads_partition(tp.partition)
        start, end = await partition_span(self._fetch, tp, wanted) if selected else (0, 0)
        rows: list[Listed] = []
        flushed_end = 0
        for segment in await self._rows(tp):
            flushed_end = segment.last_offset + 1
            action, reason = _judged(segment, selected, start, end)
            rows.append(_segment_row(shown, segment, action, reason))
        tail_from = max(flushed_end, start)
        if selected and tail_from < end:
            reason = "unflushed records, read from the leader's memory"
            rows.append(
                Listed(shown, tp.partition, TAIL, None, tail_from, end - 1, None, None, reason)
            )
        return rows

    async def _rows(self, tp: TopicPartition) -> list[SegmentRecord]:
        found: list[SegmentRecord] = []
        offset = 0
        while len(found) < EXPLAIN_ROWS_MAX:
            page = await self._segments.list_segments(tp, offset, SEGMENT_PAGE_ROWS)
            found += page
            if len(page) < SEGMENT_PAGE_ROWS:
                break
            offset = page[-1].last_offset + 1
        return found[:EXPLAIN_ROWS_MAX]


def _judged(segment: SegmentRecord, selected: bool, start: int, end: int) -> tuple[str, str]:
    if not selected:
        return SKIP, "the partition is filtered out"
    if segment.last_offset < start:
        return SKIP, f"before the scan's start offset {start}"
    if segment.base_offset >= end:
        return SKIP, f"at or past the scan's end offset {end}"
    return READ, "in the scanned range"


def _segment_row(shown: str, segment: SegmentRecord, action: str, reason: str) -> Listed:
    return Listed(
        shown,
        segment.partition,
        action,
        segment.object_key,
        segment.base_offset,
        segment.last_offset,
        segment.max_timestamp_ms,
        segment.length,
        reason,
    )


def explain_table(rows: list[Listed]) -> pa.Table:
    columns = {
        "topic": [r.topic for r in rows],
        "partition": [r.partition for r in rows],
        "action": [r.action for r in rows],
        "object_key": [r.object_key for r in rows],
        "first_offset": [r.first_offset for r in rows],
        "last_offset": [r.last_offset for r in rows],
        "max_timestamp": [
            None if r.max_timestamp_ms is None else r.max_timestamp_ms * MICROS_PER_MILLI
            for r in rows
        ],
        "bytes": [r.size_bytes for r in rows],
        "reason": [r.reason for r in rows],
    }
    return pa.Table.from_pydict(columns, schema=EXPLAIN_SCHEMA)
