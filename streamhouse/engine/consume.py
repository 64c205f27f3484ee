"""Reads for every door: a partition's batches as the Kafka door serves them, or its records.

The Kafka door passes stored batches through untouched (`read_batches`); REST and gRPC want
records, so `read` decodes the same batches, leaves out control records and, reading
committed, the records of aborted transactions, and says where the next read starts. The
checks before a read (the partition exists, this agent leads it) are the same for all.

REST and gRPC read every partition of the cluster: one another agent leads is read from that
agent by a Kafka Fetch (its offsets by ListOffsets; a wait for data by a Fetch that waits),
through engine/forwarding.py, and its batches are decoded as a local read's are. The Kafka
door's `read_batches` never forwards: Kafka clients find the leader themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

from streamhouse.config import Settings
from streamhouse.engine.admin import AdminService
from streamhouse.engine.cluster import AgentAddress
from streamhouse.engine.forwarding import Forwarding, peer_error
from streamhouse.engine.log_store import LogStore
from streamhouse.engine.reads import DECOMPRESSION_RATIO_MAX, ReadResult
from streamhouse.errors import PeerUnreachable, StreamHouseError
from streamhouse.kafka.batch_header import BatchHeader, parse_header, split_batches
from streamhouse.kafka.compression import decompressor
from streamhouse.kafka.records import Decompressor, decode_records
from streamhouse.kafka.sentinels import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    NO_LEADER_EPOCH,
    NO_OFFSET,
)
from streamhouse.kafka.varint import Buffer
from streamhouse.log.partition import PartitionState
from streamhouse.log.partition_txns import AbortedTxn
from streamhouse.log.timestamps import record_timestamps
from streamhouse.names import TopicPartition
from streamhouse.ports.peers import OffsetQuery, PeerFetched, PeerRequests

OFFSET_MAX = 2**63 - 1  # an aborted transaction whose marker is past the batches read
WAIT_FETCH_BYTES = 1  # a Fetch that only waits for data asks for its first batch at most
# What a leader is asked for a partition's offsets: log start, high watermark, last stable
OFFSET_QUERIES = (
    OffsetQuery(EARLIEST_TIMESTAMP, read_committed=False),
    OffsetQuery(LATEST_TIMESTAMP, read_committed=False),
    OffsetQuery(LATEST_TIMESTAMP, read_committed=True),
)


@dataclass(frozen=True, slots=True)  # slots: a scan holds many of them
class ConsumedRecord:
    """One record as a door hands it out."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


@dataclass(frozen=True)
class PartitionRead:
    """Records from an offset and the partition's offsets at the time of the read."""

    records: list[ConsumedRecord]
    next_offset: int  # where the next read of the partition starts
    high_watermark: int
    log_start_offset: int


@dataclass(frozen=True)
class PartitionOffsets:
    """Where a partition's log starts and ends."""

    log_start_offset: int
    high_watermark: int
    last_stable_offset: int


class FetchService:
    """The read rule every door calls."""

    def __init__(
        self, settings: Settings, log: LogStore, admin: AdminService, forwarding: Forwarding
    ) -> None:
        self._log = log
        self._admin = admin
        self._forwarding = forwarding
        self._decompress = decompressor(settings.batch_bytes_max * DECOMPRESSION_RATIO_MAX)

    async def read_batches(
        self,
        tp: TopicPartition,
        offset: int,
        max_bytes: int,
        *,
        read_committed: bool,
        current_leader_epoch: int = NO_LEADER_EPOCH,
    ) -> ReadResult:
        """Stored batches from `offset`, about `max_bytes` of them (at least one if any), if
        the client's idea of the leader epoch (a Kafka client's; the others name none) holds."""
        await self._admin.check_partition(tp)
        check_leader_epoch((await self._log.partition(tp)).state, current_leader_epoch)
        return await self._log.reads.read(tp, offset, max_bytes, read_committed=read_committed)

    async def read(
        self, tp: TopicPartition, offset: int, max_bytes: int, *, read_committed: bool = True
    ) -> PartitionRead:
        """Records at `offset` and after, here or at the partition's leader; StreamHouseError
        (OffsetOutOfRange, …) otherwise."""

        async def here() -> ReadResult:
            return await self.read_batches(tp, offset, max_bytes, read_committed=read_committed)

        async def there(peers: PeerRequests, leader: AgentAddress) -> ReadResult:
            fetched = await peers.fetch(
                leader.host,
                leader.port,
                [(tp, offset)],
                max_bytes,
                read_committed=read_committed,
                max_wait_ms=0,
            )
            return _read_result(tp, leader, fetched)

        result = await self._forwarding.serve(tp, here, there)
        records: list[ConsumedRecord] = []
        next_offset = offset
        aborted = _AbortedRanges(result.aborted or ())
        for batch in result.batches:
            header = parse_header(batch)
            next_offset = max(next_offset, header.next_offset)
            if header.is_control or aborted.covers(header.producer_id, header.base_offset):
                continue
            records += _consumed(tp.partition, header, batch, offset, self._decompress)
        return PartitionRead(records, next_offset, result.high_watermark, result.log_start_offset)

    async def wait_for_data(
        self, positions: dict[TopicPartition, int], max_wait_ms: int, *, read_committed: bool = True
    ) -> bool:
        """True as soon as any partition has data past its position (or a partition led
        elsewhere answers an error its read will tell), False after the wait. Partitions
        other agents lead are waited for there, by one waiting Fetch per agent."""
        here: dict[TopicPartition, int] = {}
        elsewhere: dict[AgentAddress, list[tuple[TopicPartition, int]]] = {}
        for tp, offset in positions.items():
            leader = await self._forwarding.leader_elsewhere(tp)
            if leader is None or self._forwarding.peers is None:
                here[tp] = offset
            else:
                elsewhere.setdefault(leader, []).append((tp, offset))
        local = self._log.reads.wait_for_data(here, max_wait_ms, read_committed=read_committed)
        if not elsewhere:
            return await local
        peers = self._forwarding.peers
        assert peers is not None
        waits = [
            _wait_at(peers, leader, wanted, max_wait_ms, read_committed)
            for leader, wanted in elsewhere.items()
        ]
        return await _first_true([local, *waits])

    async def offsets(self, tp: TopicPartition) -> PartitionOffsets:
        """The partition's log start, high watermark and last stable offset, here or as its
        leader tells."""

        async def here() -> PartitionOffsets:
            await self._admin.check_partition(tp)
            plog = await self._log.partition(tp)
            state = plog.state
            return PartitionOffsets(
                state.log_start_offset, state.high_watermark, plog.last_stable_offset
            )

        async def there(peers: PeerRequests, leader: AgentAddress) -> PartitionOffsets:
            answers = await peers.list_offsets(leader.host, leader.port, tp, OFFSET_QUERIES)
            for answer in answers:
                if answer.error_code:
                    raise peer_error(tp, leader, answer.error_code, None)
            start, high_watermark, stable = (answer.offset for answer in answers)
            return PartitionOffsets(start, high_watermark, stable)

        return await self._forwarding.serve(tp, here, there)

    async def offset_for_timestamp(self, tp: TopicPartition, timestamp_ms: int) -> int | None:
        """The first offset stamped at or after `timestamp_ms`; None when there is none."""

        async def here() -> int | None:
            await self._admin.check_partition(tp)
            found = await self._log.reads.offset_for_timestamp(tp, timestamp_ms)
            return None if found is None else found[0]

        async def there(peers: PeerRequests, leader: AgentAddress) -> int | None:
            (answer,) = await peers.list_offsets(
                leader.host, leader.port, tp, [OffsetQuery(timestamp_ms, read_committed=False)]
            )
            if answer.error_code:
                raise peer_error(tp, leader, answer.error_code, None)
            return None if answer.offset == NO_OFFSET else answer.offset

        return await self._forwarding.serve(tp, here, there)


def check_leader_epoch(state: PartitionState, current_leader_epoch: int) -> None:
    """Refuse a client whose leader epoch is stale (FENCED_LEADER_EPOCH) or ahead of this
    leader (UNKNOWN_LEADER_EPOCH); NO_LEADER_EPOCH names none and passes."""
    code = state.epoch_error(current_leader_epoch)
    if code is not None:
        raise StreamHouseError(
            f"{state.tp}: the client knows leader epoch {current_leader_epoch}, "
            f"this leader is at {state.leader_epoch}; refresh metadata",
            code,
        )


def _read_result(
    tp: TopicPartition, leader: AgentAddress, fetched: dict[TopicPartition, PeerFetched]
) -> ReadResult:
    """A leader's Fetch answer for `tp` as a local read's result: whole batches (each checked,
    a cut one at the end dropped) and the aborted transactions among them with their ends."""
    answer = fetched.get(tp)
    if answer is None:
        raise PeerUnreachable(f"{tp}: its leader at {leader.host}:{leader.port} did not answer")
    if answer.error_code:
        raise peer_error(tp, leader, answer.error_code, None)
    batches = split_batches(answer.records, allow_partial_tail=True, from_producer=False)
    aborted = None
    if answer.aborted is not None:
        aborted = _aborted_with_ends(answer.aborted, batches)
    return ReadResult(
        batches, answer.high_watermark, answer.log_start_offset, answer.last_stable_offset, aborted
    )


def _aborted_with_ends(
    started: Sequence[tuple[int, int]], batches: Sequence[memoryview]
) -> list[AbortedTxn]:
    """Fetch names an aborted transaction by (producer id, first offset); it ends at that
    producer's first control batch (its ABORT marker) from there, or past the batches read."""
    headers = [parse_header(batch) for batch in batches]
    ended = []
    for producer_id, first_offset in started:
        last = next(
            (
                h.base_offset
                for h in headers
                if h.is_control and h.producer_id == producer_id and h.base_offset >= first_offset
            ),
            OFFSET_MAX,
        )
        ended.append(AbortedTxn(producer_id, first_offset, last))
    return ended


async def _wait_at(
    peers: PeerRequests,
    leader: AgentAddress,
    positions: list[tuple[TopicPartition, int]],
    max_wait_ms: int,
    read_committed: bool,
) -> bool:
    """Whether a Fetch of the leader's partitions, waiting up to `max_wait_ms`, found data or
    an error (a failed call counts as one: the next read tells it)."""
    try:
        fetched = await peers.fetch(
            leader.host,
            leader.port,
            positions,
            WAIT_FETCH_BYTES,
            read_committed=read_committed,
            max_wait_ms=max_wait_ms,
        )
    except StreamHouseError:
        return True
    return any(answer.records or answer.error_code for answer in fetched.values())


async def _first_true(waits: Sequence[Awaitable[bool]]) -> bool:
    """True as soon as one of `waits` is (the others cancelled), False once all are not."""
    pending = {asyncio.ensure_future(wait) for wait in waits}
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(task.result() for task in done):
                return True
        return False
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _consumed(
    partition: int, header: BatchHeader, batch: Buffer, offset: int, decompress: Decompressor
) -> list[ConsumedRecord]:
    """The batch's records at `offset` and after (the batch holding `offset` may begin
    before it)."""
    base = header.base_offset
    timestamp = record_timestamps(header)
    return [
        ConsumedRecord(
            partition,
            base + record.offset_delta,
            timestamp(record),
            record.key,
            record.value,
            record.headers,
        )
        for record in decode_records(batch, decompress)
        if base + record.offset_delta >= offset
    ]


class _AbortedRanges:
    """Which batches of a read_committed read belong to aborted transactions."""

    def __init__(self, aborted: Sequence[AbortedTxn]) -> None:
        self._by_producer: dict[int, list[AbortedTxn]] = {}
        for txn in aborted:
            self._by_producer.setdefault(txn.producer_id, []).append(txn)

    def covers(self, producer_id: int, offset: int) -> bool:
        return any(
            txn.first_offset <= offset <= txn.last_offset
            for txn in self._by_producer.get(producer_id, ())
        )
