"""What an appended batch does to its partition's producer and transaction state: the one
reading of a batch header shared by the log store (at append and WAL replay) and the rebuild
from the bucket (blocks written after the newest snapshot)."""

from __future__ import annotations

from streamhouse.kafka.batch_header import BatchHeader
from streamhouse.kafka.control_records import decode_marker_batch
from streamhouse.kafka.sentinels import NO_PRODUCER_ID
from streamhouse.log.partition_txns import PartitionTxns, TxnChange
from streamhouse.log.producer_state import ProducerBatch, SequencedBatch, last_sequence


def idempotent_fields(header: BatchHeader) -> tuple[int, int, int] | None:
    """(producer id, epoch, first sequence) of an idempotent producer's batch, else None."""
    if header.producer_id == NO_PRODUCER_ID:
        return None
    return header.producer_id, header.producer_epoch, header.base_sequence


def producer_batch(header: BatchHeader, base_offset: int) -> ProducerBatch | None:
    """The idempotent producer's batch as its state remembers it (for a marker, only the
    producer's epoch), or None for a batch of no idempotent producer."""
    fields = idempotent_fields(header)
    if fields is None:
        return None
    producer_id, epoch, first_sequence = fields
    if header.is_control:
        return ProducerBatch(producer_id, epoch, None)
    sequenced = SequencedBatch(
        first_sequence,
        last_sequence(first_sequence, header.record_count),
        base_offset,
        base_offset + header.last_offset_delta,
    )
    return ProducerBatch(producer_id, epoch, sequenced)


def txn_change(
    txns: PartitionTxns, header: BatchHeader, batch: bytes | memoryview, base_offset: int
) -> TxnChange | None:
    """The transaction this batch opens (a producer's first transactional batch here) or ends
    (a marker), if any; `txns` is updated."""
    if not header.is_transactional:
        return None
    if header.is_control:
        marker = decode_marker_batch(batch)
        return txns.ended(marker.producer_id, base_offset, marker.committed)
    return txns.began(header.producer_id, base_offset)
