"""Fetch responses (v4..v12) encoded straight to wire bytes, record batches passed through."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from streamhouse.kafka.encoded import EncodedBody, array_count, wire_string
from streamhouse.kafka.sentinels import NO_PREFERRED_REPLICA
from streamhouse.kafka.varint import Buffer, encode_unsigned

FETCH_VERSION_MIN = 4  # the oldest Fetch version kio has a schema for (and we serve)
FETCH_VERSION_MAX = 12  # the newest served: later versions name topics by id
FLEXIBLE_FETCH_VERSION_MIN = 12
SESSION_FETCH_VERSION_MIN = 7  # top-level error code and session id
LOG_START_FETCH_VERSION_MIN = 5
PREFERRED_REPLICA_FETCH_VERSION_MIN = 11
NO_TAGS = b"\x00"  # an empty tagged-fields section

_PARTITION_HEAD = struct.Struct(">ihqq")  # index, error code, high watermark, last stable
_INT32 = struct.Struct(">i")
_INT64 = struct.Struct(">q")
_ABORTED = struct.Struct(">qq")  # producer id, first offset
_TOP_WITH_SESSION = struct.Struct(">ihi")  # throttle time, error code, session id


@dataclass(frozen=True, slots=True)
class FetchedPartition:
    """One partition of a Fetch response; `records` are the batches as read, not copied."""

    partition_index: int
    error_code: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    records: Sequence[Buffer] = ()
    aborted_transactions: Sequence[tuple[int, int]] | None = None  # (producer id, first offset)
    preferred_read_replica: int = NO_PREFERRED_REPLICA

    @property
    def records_bytes(self) -> int:
        return sum(len(batch) for batch in self.records)


def encode_fetch_response(
    version: int,
    topics: Sequence[tuple[str, Sequence[FetchedPartition]]],
    *,
    error_code: int = 0,
    session_id: int = 0,
    throttle_time_ms: int = 0,
) -> EncodedBody:
    """The body of a Fetch response of `version`, topics in the order given."""
    assert FETCH_VERSION_MIN <= version <= FETCH_VERSION_MAX, version
    flexible = version >= FLEXIBLE_FETCH_VERSION_MIN
    parts: list[Buffer] = []
    if version >= SESSION_FETCH_VERSION_MIN:
        parts.append(_TOP_WITH_SESSION.pack(throttle_time_ms, error_code, session_id))
    else:
        assert error_code == 0 and session_id == 0, (version, error_code, session_id)
        parts.append(_INT32.pack(throttle_time_ms))
    parts.append(array_count(len(topics), flexible))
    for name, partitions in topics:
        parts.append(wire_string(name, flexible))
        parts.append(array_count(len(partitions), flexible))
        for partition in partitions:
            _encode_partition(parts, partition, version, flexible)
        if flexible:
            parts.append(NO_TAGS)
    if flexible:
        parts.append(NO_TAGS)
    return EncodedBody(parts, flexible)


def _encode_partition(
    parts: list[Buffer], partition: FetchedPartition, version: int, flexible: bool
) -> None:
    head = _PARTITION_HEAD.pack(
        partition.partition_index,
        partition.error_code,
        partition.high_watermark,
        partition.last_stable_offset,
    )
    parts.append(head)
    if version >= LOG_START_FETCH_VERSION_MIN:
        parts.append(_INT64.pack(partition.log_start_offset))
    aborted = partition.aborted_transactions
    if aborted is None:
        parts.append(b"\x00" if flexible else _INT32.pack(-1))
    else:
        parts.append(array_count(len(aborted), flexible))
        for producer_id, first_offset in aborted:
            parts.append(_ABORTED.pack(producer_id, first_offset))
            if flexible:
                parts.append(NO_TAGS)
    if version >= PREFERRED_REPLICA_FETCH_VERSION_MIN:
        parts.append(_INT32.pack(partition.preferred_read_replica))
    size = partition.records_bytes
    parts.append(encode_unsigned(size + 1) if flexible else _INT32.pack(size))
    parts.extend(batch for batch in partition.records if len(batch))
    if flexible:
        parts.append(NO_TAGS)
