"""The produce step both REST API versions share: the ack mode a request asks for, the caller's
right to write the topic, the topic and partition as the caller names them, and the one
produce rule (engine/produce.py) every door calls.

The ack mode is the query parameter `ack=none|leader|durable`, else the header
`X-Streamhouse-Ack`, else durable; anything else is 400.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from fastapi import Request

from streamhouse.engine.produce import Ack, NewRecord, RecordProduced
from streamhouse.errors import ErrorCode, StorageError, StreamHouseError, UnknownTopicOrPartition
from streamhouse.server.rest_common import (
    BAD_REQUEST,
    KAFKA_ERROR,
    KAFKA_RETRIABLE_ERROR,
    PARTITION_NOT_FOUND,
    Caller,
    RestError,
    RestServices,
    engine_refusal,
    partition_not_found,
    topic_not_found,
)
from streamhouse.tenancy.acls import AclOperation, ResourceType

ACK_QUERY = "ack"
ACK_HEADER = "x-streamhouse-ack"
PRODUCE_REQUEST_TIMEOUT_MS = 30_000  # the longest a REST produce waits for its acks
HEADERS_PER_RECORD_MAX = 1_000


def ack_of(request: Request) -> Ack:
    """The ack mode the request asks for (durable when it names none)."""
    text = request.query_params.get(ACK_QUERY) or request.headers.get(ACK_HEADER)
    if text is None:
        return Ack.DURABLE
    try:
        return Ack.parse(text)
    except StreamHouseError as error:
        raise RestError(400, BAD_REQUEST, str(error)) from None


def record_headers(items: Any, status: int = BAD_REQUEST) -> tuple[tuple[str, bytes | None], ...]:
    """A record's headers written as [{"name": str, "value": base64 str or null}]."""
    if items is None:
        return ()
    if not isinstance(items, list) or len(items) > HEADERS_PER_RECORD_MAX:
        raise RestError(
            status, status, f"'headers' must be a list of at most {HEADERS_PER_RECORD_MAX}"
        )
    found = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise RestError(status, status, "each header needs a string 'name'")
        value = item.get("value")
        if value is not None and not isinstance(value, str):
            raise RestError(status, status, "a header's 'value' must be base64 text or null")
        try:
            decoded = None if value is None else base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise RestError(status, status, "a header's 'value' is not valid base64") from None
        found.append((item["name"], decoded))
    return tuple(found)


async def writable(services: RestServices, caller: Caller, topic: str) -> int:
    """The partition count of the caller's `topic` it may write: 403 without WRITE, 404
    (40401) for a topic it does not have. Checked before a schema is registered for it."""
    caller.require(AclOperation.WRITE, ResourceType.TOPIC, topic)
    try:
        return (await services.admin.topic(caller.internal(topic))).partition_count
    except UnknownTopicOrPartition:
        raise topic_not_found(topic) from None
    except StreamHouseError as error:
        raise engine_refusal(error, topic) from None


async def produce(
    services: RestServices, caller: Caller, topic: str, records: Sequence[NewRecord], ack: Ack
) -> list[RecordProduced]:
    """Produce `records` to the caller's `topic`: 403 without WRITE, 404 (40401) for a topic
    it does not have, 404 (40402) for a partition the topic does not have; refusals of a
    partition's records come back per record."""
    count = await writable(services, caller, topic)
    internal = caller.internal(topic)
    for record in records:
        if record.partition is not None and not 0 <= record.partition < count:
            raise partition_not_found(topic, record.partition)
    try:
        return await services.produce.produce(
            internal, records, ack, timeout_ms=PRODUCE_REQUEST_TIMEOUT_MS
        )
    except UnknownTopicOrPartition:  # deleted meanwhile
        raise topic_not_found(topic) from None
    except StreamHouseError as error:
        raise engine_refusal(error, topic) from None


def record_error_code(error: StreamHouseError) -> int:
    """Confluent's code of one record's refusal: retriable (50003) or not (50002)."""
    if isinstance(error, UnknownTopicOrPartition):
        return PARTITION_NOT_FOUND
    retriable = isinstance(error, StorageError) or error.code in (
        ErrorCode.REQUEST_TIMED_OUT,
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
    )
    return KAFKA_RETRIABLE_ERROR if retriable else KAFKA_ERROR
