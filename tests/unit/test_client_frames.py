"""The client's side of the wire: request frames as the agent's connection reads them, response
frames read back as the agent's connection writes them, and the version both sides share."""

from __future__ import annotations

from typing import Any

import pytest

from streamhouse.kafka import codec
from streamhouse.kafka.apis import ALL_APIS, ApiKey, advertise
from streamhouse.kafka.client_frames import (
    SIZE_PREFIX_BYTES,
    UnexpectedResponse,
    request_frame,
    response_body,
    shared_version,
)
from streamhouse.kafka.connection import KafkaConnection, Request
from streamhouse.kafka.entities import build

CORRELATION_ID = 41


def _served(
    api_key: ApiKey, version: int, values: dict[str, Any]
) -> tuple[KafkaConnection, Request, Any]:
    """The agent's connection, our request as it decodes it from our frame, and what we sent."""
    sent = build(codec.request_schema(api_key, version), values)
    connection = KafkaConnection(advertise(ALL_APIS))
    connection.receive_data(request_frame(sent, CORRELATION_ID, "streamctl"))
    event = connection.next_event()
    assert isinstance(event, Request), event
    assert (event.api_key, event.api_version, event.correlation_id) == (
        api_key,
        version,
        CORRELATION_ID,
    )
    assert (event.client_id, event.body) == ("streamctl", sent)
    return connection, event, sent


@pytest.mark.parametrize(
    ("api_key", "version", "values", "answer"),
    [
        # flexible: request header v2, response header v1 with tagged fields
        (ApiKey.DESCRIBE_LOG_DIRS, 4, {"topics": None}, {"results": [{"log_dir": "/d"}]}),
        # not flexible: headers v1 and v0
        (ApiKey.LIST_OFFSETS, 5, {"topics": []}, {"topics": [{"name": "t", "partitions": []}]}),
        # ApiVersions v3 is flexible, its response header is v0 all the same
        (ApiKey.API_VERSIONS, 3, {}, {"api_keys": [{"api_key": 1, "max_version": 4}]}),
    ],
)
def test_frames_round_trip_through_the_agents_connection(
    api_key: ApiKey, version: int, values: dict[str, Any], answer: dict[str, Any]
) -> None:
    connection, request, _ = _served(api_key, version, values)
    response = build(codec.response_schema(api_key, version), answer)
    frame = connection.send_response(request, response)
    decoded = response_body(frame[SIZE_PREFIX_BYTES:], api_key, version, CORRELATION_ID)
    assert decoded == response


def test_an_answer_to_another_request_or_with_bytes_left_over_is_refused() -> None:
    response = build(codec.response_schema(ApiKey.LIST_OFFSETS, 5), {"topics": []})
    payload = (CORRELATION_ID).to_bytes(4, "big") + codec.encode_body(response)
    with pytest.raises(UnexpectedResponse, match="answer to request 41, expected 42"):
        response_body(payload, ApiKey.LIST_OFFSETS, 5, CORRELATION_ID + 1)
    with pytest.raises(UnexpectedResponse, match="2 bytes after the response body"):
        response_body(payload + b"\x00\x00", ApiKey.LIST_OFFSETS, 5, CORRELATION_ID)
    with pytest.raises(UnexpectedResponse):
        response_body(payload[:-2], ApiKey.LIST_OFFSETS, 5, CORRELATION_ID)


def test_the_shared_version_is_the_highest_both_speak() -> None:
    assert shared_version(ApiKey.DESCRIBE_LOG_DIRS, {35: (1, 3)}) == 3
    assert shared_version(ApiKey.DESCRIBE_LOG_DIRS, {35: (0, 99)}) == 5  # kio's highest
    assert shared_version(ApiKey.DESCRIBE_LOG_DIRS, {35: (7, 9)}) is None
    assert shared_version(ApiKey.DESCRIBE_LOG_DIRS, {}) is None
