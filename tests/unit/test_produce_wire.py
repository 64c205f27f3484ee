"""Produce's hand-written decoder and encoder agree with kio's on every version served."""

from __future__ import annotations

import contextlib
import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.index import load_request_schema

from streamhouse.kafka import codec
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.entities import build
from streamhouse.kafka.produce_wire import (
    PRODUCE_VERSION_MAX,
    ProduceRequestBody,
    decode_produce_request,
    encode_produce_response,
)
from tests.property_budget import examples

VERSIONS = range(3, PRODUCE_VERSION_MAX + 1)  # kio's schemas start at v3
INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
NAMES = st.text(min_size=1, max_size=12)
RECORDS = st.none() | st.binary(max_size=40)

PARTITIONS = st.lists(st.tuples(INT32, RECORDS), max_size=3)
TOPICS = st.lists(st.tuples(NAMES, PARTITIONS), max_size=3)


def _kio_request(version: int, txn: str | None, acks: int, timeout_ms: int, topics: Any) -> Any:
    schema = load_request_schema(ApiKey.PRODUCE, version)
    values = {
        "transactional_id": txn,
        "acks": acks,
        "timeout": timeout_ms,
        "topic_data": [
            {"name": name, "partition_data": [{"index": i, "records": r} for i, r in parts]}
            for name, parts in topics
        ],
    }
    return build(schema, values)


def _plain(body: Any) -> tuple[Any, ...]:
    return (
        body.transactional_id,
        int(body.acks),
        int(body.timeout / datetime.timedelta(milliseconds=1)),
        [(t.name, [(int(p.index), p.records) for p in t.partition_data]) for t in body.topic_data],
    )


@settings(max_examples=examples(300), deadline=None)
@given(
    st.sampled_from(VERSIONS),
    st.none() | st.text(max_size=8),
    st.sampled_from([-1, 0, 1]),
    st.integers(0, 2**31 - 1),
    TOPICS,
)
def test_requests_decode_as_kio_decodes_them(
    version: int, txn: str | None, acks: int, timeout_ms: int, topics: Any
) -> None:
    body = codec.encode_body(_kio_request(version, txn, acks, timeout_ms, topics))
    ours = decode_produce_request(version, body)
    assert isinstance(ours, ProduceRequestBody)
    assert _plain(ours) == _plain(codec.decode_request(ApiKey.PRODUCE, version, body))


@settings(max_examples=examples(300), deadline=None)
@given(st.sampled_from(range(0, 3)), st.sampled_from([-1, 1]), TOPICS)
def test_legacy_requests_decode_as_v3_without_a_transactional_id(
    version: int, acks: int, topics: Any
) -> None:
    v3_body = codec.encode_body(_kio_request(3, None, acks, 1000, topics))
    legacy = v3_body[len(codec.NULL_LEGACY_STRING) :]
    assert _plain(decode_produce_request(version, legacy)) == _plain(
        codec.decode_request(ApiKey.PRODUCE, version, legacy)
    )


@settings(max_examples=examples(500), deadline=None)
@given(st.sampled_from(VERSIONS), st.binary(max_size=80))
def test_any_bytes_decode_or_fail_as_malformed(version: int, data: bytes) -> None:
    with contextlib.suppress(codec.MalformedBody):
        decode_produce_request(version, data)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_truncation_of_a_request_is_malformed(version: int) -> None:
    body = codec.encode_body(_kio_request(version, "t", 1, 30_000, [("a", [(0, b"xy")])]))
    for end in range(len(body)):
        with pytest.raises(codec.MalformedBody):
            decode_produce_request(version, body[:end])


PARTITION_ANSWERS = st.lists(
    st.fixed_dictionaries(
        {"index": INT32, "error_code": st.sampled_from([0, 6, 7, 2]), "base_offset": INT64},
        optional={"log_start_offset": INT64, "error_message": st.none() | st.text(max_size=20)},
    ),
    max_size=3,
)
ANSWERS = st.lists(
    st.fixed_dictionaries({"name": NAMES, "partition_responses": PARTITION_ANSWERS}), max_size=3
)


@settings(max_examples=examples(300), deadline=None)
@given(st.sampled_from(VERSIONS), ANSWERS, st.integers(0, 2**31 - 1))
def test_responses_encode_as_kio_encodes_them(
    version: int, responses: list[dict[str, Any]], throttle_ms: int
) -> None:
    values = {"responses": responses, "throttle_time": throttle_ms}
    schema = codec.response_schema(ApiKey.PRODUCE, version)
    assert encode_produce_response(version, values) == codec.encode_body(build(schema, values))


def test_leader_hints_are_left_to_kio() -> None:
    hinted = {"index": 0, "error_code": 6, "base_offset": -1}
    hinted["current_leader"] = {"leader_id": 2, "leader_epoch": 5}
    values = {"responses": [{"name": "t", "partition_responses": [hinted]}], "throttle_time": 0}
    assert encode_produce_response(10, values) is None
    endpoints = {"node_id": 2, "host": "h", "port": 9092, "rack": None}
    assert encode_produce_response(10, {**values, "node_endpoints": [endpoints]}) is None


def test_record_errors_are_left_to_kio() -> None:
    refused = {"index": 0, "error_code": 87, "base_offset": -1, "error_message": "no key"}
    refused["record_errors"] = [{"batch_index": 1, "batch_index_error_message": "no key"}]
    values = {"responses": [{"name": "t", "partition_responses": [refused]}], "throttle_time": 0}
    assert encode_produce_response(9, values) is None
    schema = codec.response_schema(ApiKey.PRODUCE, 9)
    assert (
        build(schema, values).responses[0].partition_responses[0].record_errors[0].batch_index == 1
    )
