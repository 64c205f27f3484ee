"""Fetch responses encoded straight to bytes: the same bytes kio writes for every served version,
record batches passed through uncopied, and a session error answered alone."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.kafka.codec import encode_body, response_schema
from streamhouse.kafka.entities import build
from streamhouse.kafka.fetch_response import (
    FETCH_VERSION_MAX,
    FETCH_VERSION_MIN,
    FetchedPartition,
    encode_fetch_response,
)

INT64 = st.integers(-(2**63), 2**63 - 1)
FETCH_API_KEY = 1

partitions = st.builds(
    FetchedPartition,
    st.integers(0, 2**31 - 1),
    st.integers(0, 120),
    INT64,
    INT64,
    INT64,
    st.lists(st.binary(max_size=40), max_size=3),
    st.none() | st.lists(st.tuples(INT64, INT64), max_size=2),
    st.integers(-1, 5),
)
topics = st.lists(st.tuples(st.text(max_size=12), st.lists(partitions, max_size=3)), max_size=3)


def _values(topics: list[tuple[str, list[FetchedPartition]]], session_id: int) -> dict[str, Any]:
    """The same response as the version-agnostic values kio's entities are built from."""
    return {
        "throttle_time": 0,
        "error_code": 0,
        "session_id": session_id,
        "responses": [
            {"topic": name, "partitions": [_partition_values(p) for p in parts]}
            for name, parts in topics
        ],
    }


def _partition_values(partition: FetchedPartition) -> dict[str, Any]:
    aborted = partition.aborted_transactions
    return {
        "partition_index": partition.partition_index,
        "error_code": partition.error_code,
        "high_watermark": partition.high_watermark,
        "last_stable_offset": partition.last_stable_offset,
        "log_start_offset": partition.log_start_offset,
        "aborted_transactions": None
        if aborted is None
        else [{"producer_id": p, "first_offset": f} for p, f in aborted],
        "preferred_read_replica": partition.preferred_read_replica,
        "records": b"".join(partition.records),
    }


@given(st.integers(FETCH_VERSION_MIN, FETCH_VERSION_MAX), topics, st.integers(0, 2**31 - 1))
@settings(max_examples=300, deadline=None)
def test_same_bytes_as_kio_in_every_served_version(
    version: int, topics: list[tuple[str, list[FetchedPartition]]], session_id: int
) -> None:
    session_id = session_id if version >= 7 else 0
    encoded = encode_fetch_response(version, topics, session_id=session_id)
    schema = response_schema(FETCH_API_KEY, version)
    expected = encode_body(build(schema, _values(topics, session_id)))
    assert b"".join(encoded.parts) == expected
    assert encoded.size_bytes == len(expected)
    assert encoded.flexible == (version >= 12)


def test_record_batches_are_passed_through_not_copied() -> None:
    block = bytearray(b"batch-one|batch-two")
    views = [memoryview(block)[:9], memoryview(block)[10:]]
    partition = FetchedPartition(0, 0, 5, 5, 0, views)
    encoded = encode_fetch_response(12, [("t", [partition])])
    assert [part for part in encoded.parts if isinstance(part, memoryview)] == views
    assert all(any(part is view for part in encoded.parts) for view in views)  # not copies
    assert partition.records_bytes == 18


def test_a_session_error_is_answered_without_topics() -> None:
    encoded = encode_fetch_response(12, [], error_code=70)
    schema = response_schema(FETCH_API_KEY, 12)
    values = {"throttle_time": 0, "error_code": 70, "session_id": 0, "responses": []}
    assert b"".join(encoded.parts) == encode_body(build(schema, values))
