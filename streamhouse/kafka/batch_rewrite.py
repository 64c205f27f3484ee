"""Rewrite one stored RecordBatch v2 with some of its records left out (log compaction's
record-level step), as Kafka's cleaner rewrites a batch.

Sans-IO: bytes in, bytes out. What a rewrite keeps from the original, as Kafka does: base
offset and last_offset_delta (so the batch still ends at the same offset and the next batch's
offsets follow on), max_timestamp, producer id and epoch, base sequence, partition leader epoch
and the attributes (codec, timestamp type, transactional, control, delete horizon). Each kept
record keeps its offset delta and its absolute timestamp. The records section is compressed
again with the batch's own codec and the CRC-32C is computed afresh.

Stamping a delete horizon (KIP-534) sets the attributes' delete-horizon bit and moves
base_timestamp to the horizon; every record's timestamp delta is then re-based so that
base_timestamp + delta is still the record's own timestamp.

Decompression is bounded by the `Decompressor` the caller passes (`compression.decompressor`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeAlias

from streamhouse.kafka.batch_header import BatchHeader, Compression, validate_batch
from streamhouse.kafka.compression import compress
from streamhouse.kafka.records import Decompressor, Record, decode_records, encode_batch
from streamhouse.kafka.varint import Buffer

KeepRecord: TypeAlias = Callable[[int, bytes | None, bool], bool]
"""(absolute offset, key or None, is a tombstone: value is None) -> whether the record stays."""


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """One stored batch, validated as read back from a log, with its records decoded."""

    header: BatchHeader
    records: list[Record]

    def offset_of(self, record: Record) -> int:
        """The record's absolute offset."""
        return self.header.base_offset + record.offset_delta


def decode_stored_batch(batch: Buffer, decompress: Decompressor) -> StoredBatch:
    """Validate `batch` as a stored batch (gaps and empty batches allowed) and decode its
    records. Raises InvalidRecordBatch if it is corrupt or inflates past the decompressor's
    bound."""
    header = validate_batch(batch, from_producer=False)
    return StoredBatch(header, decode_records(batch, decompress))


def filter_batch(
    batch: Buffer,
    keep: KeepRecord,
    decompress: Decompressor,
    *,
    delete_horizon_ms: int | None = None,
    keep_empty: bool = False,
) -> bytes | None:
    """`batch` holding only the records `keep` accepts, or None when it accepts none (the
    whole batch goes; with `keep_empty`, an empty batch over the same offsets instead).

    With `delete_horizon_ms`, a batch that keeps a tombstone and has no delete horizon yet
    is stamped with that horizon (Kafka stamps it the first time a cleaning keeps a
    tombstone). When every record is kept and nothing is stamped the original bytes come
    back unchanged.
    """
    stored = decode_stored_batch(batch, decompress)
    kept = [r for r in stored.records if keep(stored.offset_of(r), r.key, r.value is None)]
    stamp = (
        delete_horizon_ms
        if delete_horizon_ms is not None
        and not stored.header.has_delete_horizon
        and any(r.value is None for r in kept)
        else None
    )
    if not kept and not keep_empty:
        return None
    if len(kept) == len(stored.records) and stamp is None:
        return bytes(batch)
    return rewrite_batch(stored, kept, delete_horizon_ms=stamp)


def stamp_delete_horizon(batch: Buffer, delete_horizon_ms: int, decompress: Decompressor) -> bytes:
    """`batch` with every record kept and `delete_horizon_ms` stamped as its delete horizon
    (how Kafka's cleaner marks a transaction marker it may delete once the horizon passes)."""
    return rewrite_batch(
        decode_stored_batch(batch, decompress),
        None,
        delete_horizon_ms=delete_horizon_ms,
    )


def rewrite_batch(
    stored: StoredBatch, kept: Sequence[Record] | None, *, delete_horizon_ms: int | None = None
) -> bytes:
    """`stored`'s batch re-encoded with only `kept` (a subsequence of its records; None: all
    of them), the header preserved as the module says; `delete_horizon_ms`, if given,
    becomes its delete horizon (the batch's own horizon is kept otherwise)."""
    header = stored.header
    records = stored.records if kept is None else kept
    base_timestamp = header.base_timestamp if delete_horizon_ms is None else delete_horizon_ms
    shift = header.base_timestamp - base_timestamp
    if shift:
        records = [_shifted(r, shift) for r in records]
    codec = header.compression
    return encode_batch(
        records,
        base_timestamp=base_timestamp,
        max_timestamp=header.max_timestamp,
        last_offset_delta=header.last_offset_delta,
        base_offset=header.base_offset,
        producer_id=header.producer_id,
        producer_epoch=header.producer_epoch,
        base_sequence=header.base_sequence,
        is_transactional=header.is_transactional,
        is_control=header.is_control,
        compression=codec,
        compressor=None if codec == Compression.NONE else partial(compress, codec),
        partition_leader_epoch=header.partition_leader_epoch,
        timestamp_type=header.timestamp_type,
        has_delete_horizon=header.has_delete_horizon or delete_horizon_ms is not None,
    )


def _shifted(record: Record, shift: int) -> Record:
    """The record with its timestamp delta moved by `shift` (its base timestamp moved the
    other way), so its absolute timestamp stays."""
    return replace(record, timestamp_delta=record.timestamp_delta + shift)
