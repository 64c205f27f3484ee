"""The marker sender over asyncio streams: WriteTxnMarkers to another agent's Kafka listener.

One connection per request, closed after the answer, every wait bounded by the request
timeout. Only asyncio streams (asyncio.open_connection): the simulator runs agents on a
simulated network behind the event loop's create_connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence

from streamhouse.errors import PeerUnreachable
from streamhouse.kafka import codec
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.client_frames import (
    SIZE,
    SIZE_PREFIX_BYTES,
    UnexpectedResponse,
    request_frame,
    response_body,
)
from streamhouse.kafka.control_records import TxnMarker
from streamhouse.kafka.entities import build
from streamhouse.names import TopicPartition
from streamhouse.ports.txn_markers import MarkerSender

WRITE_TXN_MARKERS_VERSION = 1  # every agent serves v1 (the first version kio knows)
RESPONSE_BYTES_MAX = 1024 * 1024  # one code per partition: far below this
CLIENT_ID = "streamhouse-txn-coordinator"


class StreamsMarkerSender(MarkerSender):
    """WriteTxnMarkers over a fresh asyncio connection per request."""

    def __init__(self, timeout_ms: int) -> None:
        self._timeout_s = timeout_ms / 1000
        self._correlation_ids = itertools.count(1)

    async def send_markers(
        self, host: str, port: int, marker: TxnMarker, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        correlation_id = next(self._correlation_ids)
        by_topic: dict[str, list[int]] = {}
        for tp in partitions:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        values = {
            "markers": [
                {
                    "producer_id": marker.producer_id,
                    "producer_epoch": marker.producer_epoch,
                    "transaction_result": marker.committed,
                    "coordinator_epoch": marker.coordinator_epoch,
                    "topics": [
                        {"name": name, "partition_indexes": indexes}
                        for name, indexes in by_topic.items()
                    ],
                }
            ]
        }
        request = build(
            codec.request_schema(ApiKey.WRITE_TXN_MARKERS, WRITE_TXN_MARKERS_VERSION), values
        )
        frame = request_frame(request, correlation_id, CLIENT_ID)
        try:
            async with asyncio.timeout(self._timeout_s):
                payload = await _exchange(host, port, frame)
            body = response_body(
                payload, ApiKey.WRITE_TXN_MARKERS, WRITE_TXN_MARKERS_VERSION, correlation_id
            )
        except (OSError, EOFError, TimeoutError, UnexpectedResponse) as error:
            raise PeerUnreachable(
                f"WriteTxnMarkers to the agent at {host}:{port} failed: {error!r}"
            ) from error
        return {
            TopicPartition(topic.name, part.partition_index): int(part.error_code)
            for answer in body.markers
            for topic in answer.topics
            for part in topic.partitions
        }


async def _exchange(host: str, port: int, frame: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(frame)
        await writer.drain()
        (size,) = SIZE.unpack(await reader.readexactly(SIZE_PREFIX_BYTES))
        if not 0 < size <= RESPONSE_BYTES_MAX:
            raise UnexpectedResponse(f"a response frame of {size} bytes")
        return await reader.readexactly(size)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
