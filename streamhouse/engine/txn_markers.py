"""Marker delivery: a transaction's COMMIT or ABORT marker into one partition, retried with a
capped backoff until the partition's leader has written it durably, the partition is gone,
or the caller stops coordinating the transaction.

A partition this agent leads (or may take: it is placed here) gets the marker from the log
store directly; one led by another agent gets Kafka's WriteTxnMarkers through the
MarkerSender port. A marker counts as written only once it is durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from streamhouse.config import Settings
from streamhouse.engine.cluster import ClusterDirectory
from streamhouse.engine.log_store import AppendResult
from streamhouse.engine.waiting import CLIENT_RETRY_BACKOFF_MS
from streamhouse.errors import (
    ErrorCode,
    NotLeader,
    ProducerRefused,
    StreamHouseError,
    UnknownTopicOrPartition,
)
from streamhouse.kafka.control_records import TxnMarker
from streamhouse.names import TopicPartition
from streamhouse.ports.clock import Clock
from streamhouse.ports.topics import TopicStore
from streamhouse.ports.txn_markers import MarkerSender

log = logging.getLogger("streamhouse.transactions")
FIRST_BACKOFF_MS = CLIENT_RETRY_BACKOFF_MS
# The codes that end a delivery: written, the partition is gone, or a later epoch of the
# producer wrote there already (its coordinator moved on past this transaction)
SETTLED_CODES = frozenset(
    {ErrorCode.NONE, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.INVALID_PRODUCER_EPOCH}
)


class MarkerLog(Protocol):
    """The log store's marker write (engine/log_store.py)."""

    async def write_marker(self, tp: TopicPartition, marker: TxnMarker) -> AppendResult:
        """Append the marker's control batch to a partition this agent leads. Raises
        NotLeader, ProducerRefused (an older epoch than the producer's), StorageError."""


class MarkerDelivery:
    """Writes markers wherever their partitions are led; every delivery bounded in time by
    its caller's `keep_going` and in concurrency by `txn_marker_writes_in_flight_max`."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        *,
        log: MarkerLog,
        topics: TopicStore,
        cluster: ClusterDirectory,
        sender: MarkerSender,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._log = log
        self._topics = topics
        self._cluster = cluster
        self._sender = sender
        self._in_flight = asyncio.Semaphore(settings.txn_marker_writes_in_flight_max)

    async def deliver(
        self, tp: TopicPartition, marker: TxnMarker, keep_going: Callable[[], bool]
    ) -> bool:
        """Write `marker` into `tp` until it is written (True) or `keep_going()` turns false
        (False: the caller no longer coordinates the transaction; its next holder does)."""
        backoff_ms = FIRST_BACKOFF_MS
        while keep_going():
            async with self._in_flight:
                code = await self._write_once(tp, marker)
            if code in SETTLED_CODES:
                if code is not ErrorCode.NONE:
                    log.info("marker %s for %s settled without a write: %s", marker, tp, code.name)
                return True
            log.debug("marker %s for %s not written (%s); retrying", marker, tp, code.name)
            await self._clock.sleep_ms(backoff_ms)
            backoff_ms = min(backoff_ms * 2, self._settings.txn_marker_backoff_ms_max)
        return False

    async def _write_once(self, tp: TopicPartition, marker: TxnMarker) -> ErrorCode:
        try:
            record = await self._topics.get_partition(tp)
            leader = self._cluster.leader(record)
            if leader.agent_id == self._cluster.agent_id:
                return await self.write_here(tp, marker)
            codes = await self._sender.send_markers(leader.host, leader.port, marker, [tp])
        except StreamHouseError as error:  # the store or the peer failed: try again later
            return error.code
        return ErrorCode(codes.get(tp, ErrorCode.UNKNOWN_SERVER_ERROR))

    async def write_here(self, tp: TopicPartition, marker: TxnMarker) -> ErrorCode:
        """Write the marker into a partition this agent leads (or may take); its code. Also
        what WriteTxnMarkers from another agent's coordinator runs per partition."""
        try:
            result = await self._log.write_marker(tp, marker)
            assert result.durable is not None, result  # markers always wait to be durable
            await result.durable
        except (NotLeader, ProducerRefused, UnknownTopicOrPartition) as refused:
            return refused.code
        except StreamHouseError as error:
            log.warning("marker %s for %s failed: %s", marker, tp, error)
            return error.code
        return ErrorCode.NONE
