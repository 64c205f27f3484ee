"""Finding offsets by timestamp inside record batches (ListOffsets with a target time)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from streamhouse.kafka.batch_header import BatchHeader, TimestampType, parse_header
from streamhouse.kafka.records import Decompressor, Record, decode_records


def record_timestamp(header: BatchHeader, record: Record) -> int:
    """A record's timestamp: its own (CreateTime), or the batch's (LogAppendTime)."""
    return record_timestamps(header)(record)


def record_timestamps(header: BatchHeader) -> Callable[[Record], int]:
    """`record_timestamp` for the records of one batch, the batch's type looked at once."""
    if header.timestamp_type == TimestampType.LOG_APPEND_TIME:
        appended = header.max_timestamp
        return lambda _: appended
    base = header.base_timestamp
    return lambda record: base + record.timestamp_delta


def first_at_or_after(
    batches: Iterable[bytes], timestamp_ms: int, log_start_offset: int, decompress: Decompressor
) -> tuple[int, int] | None:
    """(offset, timestamp) of the first record at or after `log_start_offset` whose timestamp
    is >= `timestamp_ms`, or None. Batches whose max timestamp is too small are skipped
    without decoding their records."""
    for batch in batches:
        header = parse_header(batch)
        if header.max_timestamp < timestamp_ms or header.last_offset < log_start_offset:
            continue
        found = _first_in_batch(batch, header, timestamp_ms, log_start_offset, decompress)
        if found is not None:
            return found
    return None


def _first_in_batch(
    batch: bytes,
    header: BatchHeader,
    timestamp_ms: int,
    log_start_offset: int,
    decompress: Decompressor,
) -> tuple[int, int] | None:
    for record in decode_records(batch, decompress):
        offset = header.base_offset + record.offset_delta
        stamp = record_timestamp(header, record)
        if offset >= log_start_offset and stamp >= timestamp_ms:
            return offset, stamp
    return None
