"""ListOffsets v4 through an aiokafka client: a partition's earliest or latest offset together
with the leader epoch it was answered in, which aiokafka (ListOffsets v3 at most) never
asks for.

The request and answer are defined here with aiokafka's own protocol types
(aiokafka ships a v4 struct but does not use it, and types its
current_leader_epoch as int64; the protocol says int32) and sent through the
client's `send`, to the partition's leader as the client's metadata names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError, for_code  # type: ignore[import-untyped]
from aiokafka.protocol.api import Request, RequestStruct  # type: ignore[import-untyped]
from aiokafka.protocol.offset import OffsetResponse_v4  # type: ignore[import-untyped]
from aiokafka.protocol.types import (  # type: ignore[import-untyped]
    Array,
    Int8,
    Int32,
    Int64,
    Schema,
    String,
)
from aiokafka.structs import TopicPartition as ClientPartition  # type: ignore[import-untyped]

EARLIEST = -2
LATEST = -1
NO_LEADER_EPOCH = -1
READ_UNCOMMITTED = 0


class ListOffsetsV4Struct(RequestStruct):  # type: ignore[misc]
    API_KEY = 2
    API_VERSION = 4
    RESPONSE_TYPE = OffsetResponse_v4
    SCHEMA = Schema(
        ("replica_id", Int32),
        ("isolation_level", Int8),
        (
            "topics",
            Array(
                ("topic", String("utf-8")),
                (
                    "partitions",
                    Array(
                        ("partition", Int32),
                        ("current_leader_epoch", Int32),
                        ("timestamp", Int64),
                    ),
                ),
            ),
        ),
    )


class ListOffsetsV4(Request[ListOffsetsV4Struct]):  # type: ignore[misc]
    API_KEY = 2

    def __init__(self, tp: ClientPartition, timestamp: int) -> None:
        self._tp = tp
        self._timestamp = timestamp

    def build(self, request_struct_class: type[ListOffsetsV4Struct]) -> ListOffsetsV4Struct:
        partitions = [(self._tp.partition, NO_LEADER_EPOCH, self._timestamp)]
        return request_struct_class(-1, READ_UNCOMMITTED, [(self._tp.topic, partitions)])


@dataclass(frozen=True)
class Listed:
    """An offset as the partition's leader answered it, in leader epoch `leader_epoch`."""

    offset: int
    leader_epoch: int | None


async def list_offset(client: Any, tp: ClientPartition, timestamp: int) -> Listed:
    """The EARLIEST or LATEST offset of `tp` from its leader (raises KafkaError)."""
    leader = client.cluster.leader_for_partition(tp)
    if leader is None or leader < 0:
        client.force_metadata_update()
        raise KafkaError(f"no known leader for {tp}")
    response = await client.send(leader, ListOffsetsV4(tp, timestamp))
    for _, partitions in response.topics:
        for _, error_code, _, offset, leader_epoch in partitions:
            if error_code != 0:
                client.force_metadata_update()
                raise for_code(error_code)()
            return Listed(offset, None if leader_epoch == NO_LEADER_EPOCH else leader_epoch)
    raise KafkaError(f"no answer for {tp}")
