"""Transaction markers: the control batches (COMMIT, ABORT) that end a transaction in a partition.

A marker is a v2 batch with the transactional and control attribute bits set, the producer's
id and epoch, no sequence (-1) and one record whose key is (version int16 = 0, type int16:
0 abort, 1 commit) and whose value is (version int16 = 0, coordinator epoch int32), as
Kafka writes them. Sans-IO: values in, bytes out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from streamhouse.errors import InvalidRecordBatch
from streamhouse.kafka.batch_header import parse_header
from streamhouse.kafka.records import SimpleRecord, build_batch, decode_records
from streamhouse.kafka.varint import Buffer

CONTROL_KEY = struct.Struct(">hh")  # version, type
CONTROL_VALUE = struct.Struct(">hi")  # version, coordinator epoch
CONTROL_VERSION = 0
ABORT_TYPE = 0
COMMIT_TYPE = 1


@dataclass(frozen=True, slots=True)
class TxnMarker:
    """The end of one producer's transaction in a partition, as its coordinator decided it."""

    producer_id: int
    producer_epoch: int
    committed: bool
    coordinator_epoch: int

    def __post_init__(self) -> None:
        assert self.producer_id >= 0, self
        assert 0 <= self.producer_epoch < 2**15, self


def encode_marker_batch(marker: TxnMarker, timestamp_ms: int) -> bytes:
    """The control batch for `marker`, at base offset 0 (the log assigns its offset)."""
    key = CONTROL_KEY.pack(CONTROL_VERSION, COMMIT_TYPE if marker.committed else ABORT_TYPE)
    value = CONTROL_VALUE.pack(CONTROL_VERSION, marker.coordinator_epoch)
    return build_batch(
        [SimpleRecord(key, value, (), timestamp_ms)],
        producer_id=marker.producer_id,
        producer_epoch=marker.producer_epoch,
        is_transactional=True,
        is_control=True,
    )


def decode_marker_batch(batch: Buffer) -> TxnMarker:
    """The marker a control batch holds. Raises InvalidRecordBatch if it holds none."""
    header = parse_header(batch)
    if not (header.is_control and header.is_transactional):
        raise InvalidRecordBatch("not a transaction marker: control and transactional bits unset")
    records = decode_records(batch)
    if len(records) != 1 or records[0].key is None or len(records[0].key) < CONTROL_KEY.size:
        raise InvalidRecordBatch("a transaction marker holds one record with a 4-byte key")
    _, kind = CONTROL_KEY.unpack_from(records[0].key)
    if kind not in (ABORT_TYPE, COMMIT_TYPE):
        raise InvalidRecordBatch(f"control record type {kind} is not a transaction marker")
    value = records[0].value or b""
    coordinator_epoch = CONTROL_VALUE.unpack_from(value)[1] if len(value) >= 6 else -1
    return TxnMarker(
        header.producer_id, header.producer_epoch, kind == COMMIT_TYPE, coordinator_epoch
    )
