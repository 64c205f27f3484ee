"""Produce requests and responses on the wire without kio: the hot path's decoder and encoder.

A producer sending a record per request pays the request's decode and its response's
encode on every record; kio's general entities cost more than the rest of the request.
Produce v0..v12 requests share one shape (v3 adds the transactional id, v9 makes it
flexible), so one small reader decodes them all, as bounds-checked as codec's shape walk:
every count and length must fit in the bytes that remain (MalformedBody otherwise).
Responses are written by hand for what the produce handler answers; one carrying KIP-951's
leader hints (tagged fields) or record errors (a refused batch's records, KIP-467) returns None
and goes through kio. The conformance test
checks both paths write the same bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from streamhouse.kafka.codec import MalformedBody, need_bytes, read_length, read_uvarint
from streamhouse.kafka.encoded import array_count, wire_string

TRANSACTIONAL_ID_VERSION_MIN = 3
FLEXIBLE_VERSION_MIN = 9
PRODUCE_VERSION_MAX = 12  # v13 names topics by id
THROTTLE_VERSION_MIN = 1
LOG_APPEND_TIME_VERSION_MIN = 2
LOG_START_OFFSET_VERSION_MIN = 5
RECORD_ERRORS_VERSION_MIN = 8
NO_LOG_APPEND_TIME_MS = -1

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_ACKS_TIMEOUT = struct.Struct(">hi")
_INDEX_ERROR_OFFSET = struct.Struct(">ihq")
_INT64 = struct.Struct(">q")
_EMPTY_TAGS = b"\x00"


@dataclass(frozen=True, slots=True)
class ProducePartitionData:
    index: int
    records: bytes | None


@dataclass(frozen=True, slots=True)
class ProduceTopicData:
    name: str
    partition_data: tuple[ProducePartitionData, ...]


@dataclass(frozen=True, slots=True)
class ProduceRequestBody:
    """A Produce request body, any version (field names as kio's, for the handler)."""

    transactional_id: str | None
    acks: int
    timeout_ms: int
    topic_data: tuple[ProduceTopicData, ...]

    @property
    def timeout(self) -> timedelta:
        return timedelta(milliseconds=self.timeout_ms)


# ---------------------------------------------------------------- decoding


class _Reader:
    """Reads one body's fields in order; flexible bodies use compact lengths and tags."""

    def __init__(self, data: bytes, flexible: bool) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.flexible = flexible

    def need(self, size: int) -> None:
        need_bytes(self.end, self.pos, size)

    def fixed(self, layout: struct.Struct) -> tuple[Any, ...]:
        self.need(layout.size)
        values = layout.unpack_from(self.data, self.pos)
        self.pos += layout.size
        return values

    def length(self, width: int) -> int:
        """A length or count: compact (uvarint N+1) or int16/int32; -1 is null."""
        length, self.pos = read_length(self.data, self.pos, self.end, self.flexible, width)
        return length

    def sized(self, width: int) -> bytes | None:
        size = self.length(width)
        if size == -1:
            return None
        self.need(size)
        value = self.data[self.pos : self.pos + size]
        self.pos += size
        return value

    def string(self) -> str | None:
        raw = self.sized(2)
        try:
            return None if raw is None else raw.decode()
        except UnicodeDecodeError as error:
            raise MalformedBody(f"string is not UTF-8: {error}") from None

    def count(self) -> int:
        count = self.length(4)
        if count < 0 or count > self.end - self.pos:
            raise MalformedBody(f"array of {count} items with {self.end - self.pos} bytes left")
        return count

    def skip_tags(self) -> None:
        """Tagged fields: none is defined for Produce requests; unknown ones are skipped."""
        if not self.flexible:
            return
        tags, self.pos = read_uvarint(self.data, self.pos, self.end)
        for _ in range(tags):
            _, self.pos = read_uvarint(self.data, self.pos, self.end)
            size, self.pos = read_uvarint(self.data, self.pos, self.end)
            self.need(size)
            self.pos += size


def decode_produce_request(api_version: int, body: bytes) -> ProduceRequestBody:
    """The Produce body of `api_version` (0..12); bytes after its end are ignored."""
    assert 0 <= api_version <= PRODUCE_VERSION_MAX, api_version
    reader = _Reader(body, api_version >= FLEXIBLE_VERSION_MIN)
    transactional_id = None
    if api_version >= TRANSACTIONAL_ID_VERSION_MIN:
        transactional_id = reader.string()
    acks, timeout_ms = reader.fixed(_ACKS_TIMEOUT)
    topics = tuple(_topic(reader) for _ in range(reader.count()))
    reader.skip_tags()
    return ProduceRequestBody(transactional_id, acks, timeout_ms, topics)


def _topic(reader: _Reader) -> ProduceTopicData:
    name = reader.string()
    if name is None:
        raise MalformedBody("null topic name")
    partitions = tuple(_partition(reader) for _ in range(reader.count()))
    reader.skip_tags()
    return ProduceTopicData(name, partitions)


def _partition(reader: _Reader) -> ProducePartitionData:
    (index,) = reader.fixed(_INT32)
    records = reader.sized(4)
    reader.skip_tags()
    return ProducePartitionData(index, records)


# ---------------------------------------------------------------- encoding


def encode_produce_response(api_version: int, values: dict[str, Any]) -> bytes | None:
    """The response body for the produce handler's `values`, or None when they carry
    KIP-951's leader hints or record errors (kio writes those)."""
    assert 0 <= api_version <= PRODUCE_VERSION_MAX, api_version
    if values.get("node_endpoints"):
        return None
    flexible = api_version >= FLEXIBLE_VERSION_MIN
    parts = [array_count(len(values["responses"]), flexible)]
    for topic in values["responses"]:
        partitions = topic["partition_responses"]
        parts += [wire_string(topic["name"], flexible), array_count(len(partitions), flexible)]
        for partition in partitions:
            if "current_leader" in partition or partition.get("record_errors"):
                return None
            _partition_response(parts, api_version, flexible, partition)
        if flexible:
            parts.append(_EMPTY_TAGS)
    if api_version >= THROTTLE_VERSION_MIN:
        parts.append(_INT32.pack(values.get("throttle_time", 0)))
    if flexible:
        parts.append(_EMPTY_TAGS)
    return b"".join(parts)


def _partition_response(
    parts: list[bytes], api_version: int, flexible: bool, partition: dict[str, Any]
) -> None:
    index, error, base = partition["index"], partition["error_code"], partition["base_offset"]
    parts.append(_INDEX_ERROR_OFFSET.pack(index, int(error), base))
    if api_version >= LOG_APPEND_TIME_VERSION_MIN:
        parts.append(_INT64.pack(partition.get("log_append_time", NO_LOG_APPEND_TIME_MS)))
    if api_version >= LOG_START_OFFSET_VERSION_MIN:
        parts.append(_INT64.pack(partition.get("log_start_offset", -1)))
    if api_version >= RECORD_ERRORS_VERSION_MIN:
        assert not partition.get("record_errors"), "record errors go through kio"
        parts.append(array_count(0, flexible))
        parts.append(_nullable_string(partition.get("error_message"), flexible))
    if flexible:
        parts.append(_EMPTY_TAGS)


def _nullable_string(value: str | None, flexible: bool) -> bytes:
    if value is None:
        return b"\x00" if flexible else _INT16.pack(-1)
    return wire_string(value, flexible)
