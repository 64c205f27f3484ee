"""Transaction markers encode as Kafka's control batches and decode back."""

from __future__ import annotations

import pytest

from streamhouse.errors import InvalidRecordBatch
from streamhouse.kafka.batch_header import validate_batch
from streamhouse.kafka.control_records import TxnMarker, decode_marker_batch, encode_marker_batch
from streamhouse.kafka.records import SimpleRecord, build_batch


@pytest.mark.parametrize("committed", [True, False])
def test_marker_round_trip(committed: bool) -> None:
    marker = TxnMarker(producer_id=7, producer_epoch=3, committed=committed, coordinator_epoch=11)
    batch = encode_marker_batch(marker, timestamp_ms=1_700_000_000_000)
    header = validate_batch(batch, from_producer=False)
    assert header.is_control and header.is_transactional
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (7, 3, -1)
    assert header.record_count == 1
    assert decode_marker_batch(batch) == marker


def test_marker_bytes_as_kafka_writes_them() -> None:
    batch = encode_marker_batch(TxnMarker(1, 0, True, 5), timestamp_ms=0)
    # the one record's key is (version 0, type 1 = commit); its value (version 0, epoch 5)
    assert b"\x08\x00\x00\x00\x01" in batch  # key length 4 (zigzag 8), then the key
    assert b"\x0c\x00\x00\x00\x00\x00\x05" in batch  # value length 6 (zigzag 12), the value


def test_data_batch_is_not_a_marker() -> None:
    batch = build_batch(
        [SimpleRecord(b"k", b"v")], producer_id=1, producer_epoch=0, base_sequence=0
    )
    with pytest.raises(InvalidRecordBatch, match="not a transaction marker"):
        decode_marker_batch(batch)


def test_producers_may_not_send_markers() -> None:
    batch = encode_marker_batch(TxnMarker(1, 0, False, 0), timestamp_ms=0)
    with pytest.raises(InvalidRecordBatch, match="control batches"):
        validate_batch(batch)
