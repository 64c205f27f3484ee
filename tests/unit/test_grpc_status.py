"""Every Kafka error code the engine can raise answers a deliberate gRPC status."""

from __future__ import annotations

from grpc import StatusCode

from streamhouse.errors import ErrorCode, StreamHouseError
from streamhouse.server.grpc.status import (
    NOT_AN_ERROR,
    STATUS_OF_ERROR,
    UNMAPPED_STATUS,
    error_message,
    status_of,
)


def test_every_error_code_has_a_status() -> None:
    unmapped = [
        code.name for code in ErrorCode if code not in STATUS_OF_ERROR and code not in NOT_AN_ERROR
    ]
    assert unmapped == [], f"give these a gRPC status in server/grpc/status.py: {unmapped}"
    assert all(status_of(code) is not StatusCode.OK for code in STATUS_OF_ERROR)


def test_the_brief_s_mappings() -> None:
    assert status_of(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION) is StatusCode.NOT_FOUND
    assert status_of(ErrorCode.TOPIC_ALREADY_EXISTS) is StatusCode.ALREADY_EXISTS
    assert status_of(ErrorCode.TOPIC_AUTHORIZATION_FAILED) is StatusCode.PERMISSION_DENIED
    assert status_of(ErrorCode.INVALID_CONFIG) is StatusCode.INVALID_ARGUMENT
    assert status_of(ErrorCode.NOT_LEADER_OR_FOLLOWER) is StatusCode.UNAVAILABLE
    assert status_of(ErrorCode.NOT_COORDINATOR) is StatusCode.UNAVAILABLE
    assert status_of(ErrorCode.REQUEST_TIMED_OUT) is StatusCode.DEADLINE_EXCEEDED
    assert UNMAPPED_STATUS is StatusCode.INTERNAL


def test_an_item_refusal_keeps_its_kafka_code() -> None:
    error = error_message(
        StreamHouseError("no such partition", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    )
    assert (error.code, error.kafka_error_code) == ("UNKNOWN_TOPIC_OR_PARTITION", 3)
    assert error.message == "no such partition"
