"""Marker delivery: a transaction's COMMIT or ABORT marker into each of its partitions, retried
with a capped backoff until each partition's leader has written it durably, the partition is
gone, or the caller stops coordinating the transaction.

A partition this agent leads (or may take: it is placed here) gets the marker from the log
store directly; those led by another agent get one Kafka WriteTxnMarkers per agent through
the MarkerSender port. A marker counts as written only once it is durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, TypeVar

from streamhouse.config import Settings
from streamhouse.engine.cluster import AgentAddress, ClusterDirectory
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
T = TypeVar("T")
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
    its caller's `keep_going` and in concurrency by `txn_marker_writes_in_flight_max` (each
    WriteTxnMarkers request, and each transaction's writes here, counts once)."""

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
        self,
        partitions: Iterable[TopicPartition],
        marker: TxnMarker,
        keep_going: Callable[[], bool],
    ) -> bool:
        """Write `marker` into every partition until each is written (True) or `keep_going()`
        turns false (False: the caller no longer coordinates the transaction; its next holder
        does). Each round sends one WriteTxnMarkers per other leader; the partitions not
        written are tried again after a backoff that doubles up to txn_marker_backoff_ms_max."""
        pending = set(partitions)
        backoff_ms = FIRST_BACKOFF_MS
        while pending and keep_going():
            for tp, code in (await self._write_round(sorted(pending), marker)).items():
                if code in SETTLED_CODES:
                    pending.discard(tp)
                    if code is not ErrorCode.NONE:
                        log.info("marker %s for %s settled unwritten: %s", marker, tp, code.name)
                else:
                    log.debug("marker %s for %s not written (%s); retrying", marker, tp, code.name)
            if pending:
                await self._clock.sleep_ms(backoff_ms)
                backoff_ms = min(backoff_ms * 2, self._settings.txn_marker_backoff_ms_max)
        return not pending

    async def _write_round(
        self, partitions: list[TopicPartition], marker: TxnMarker
    ) -> dict[TopicPartition, ErrorCode]:
        """One attempt at each partition, at its leader as the metadata store names it now."""
        codes: dict[TopicPartition, ErrorCode] = {}
        by_leader: dict[AgentAddress, list[TopicPartition]] = {}
        for tp in partitions:
            try:
                record = await self._topics.get_partition(tp)
            except StreamHouseError as error:  # gone (settled), or the store failed (retried)
                codes[tp] = error.code
                continue
            by_leader.setdefault(self._cluster.leader(record), []).append(tp)
        rounds = [
            self._bounded(self._write_here_each(tps, marker))
            if leader.agent_id == self._cluster.agent_id
            else self._bounded(self._send(leader, tps, marker))
            for leader, tps in by_leader.items()
        ]
        for answered in await asyncio.gather(*rounds):
            codes.update(answered)
        return codes

    async def _write_here_each(
        self, partitions: list[TopicPartition], marker: TxnMarker
    ) -> dict[TopicPartition, ErrorCode]:
        written = await asyncio.gather(*(self.write_here(tp, marker) for tp in partitions))
        return dict(zip(partitions, written, strict=True))

    async def _bounded(self, write: Awaitable[T]) -> T:
        async with self._in_flight:
            return await write

    async def _send(
        self, agent: AgentAddress, partitions: list[TopicPartition], marker: TxnMarker
    ) -> dict[TopicPartition, ErrorCode]:
        try:
            codes = await self._sender.send_markers(agent.host, agent.port, marker, partitions)
        except StreamHouseError as error:  # unreachable: every partition is tried again
            log.debug("WriteTxnMarkers to %s failed: %s", agent.agent_id, error)
            return dict.fromkeys(partitions, error.code)
        return {tp: ErrorCode(codes.get(tp, ErrorCode.UNKNOWN_SERVER_ERROR)) for tp in partitions}

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
