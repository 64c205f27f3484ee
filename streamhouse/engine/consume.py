"""Reads for every door: a partition's batches as the Kafka door serves them, or its records.

The Kafka door passes stored batches through untouched (`read_batches`); REST and gRPC want
records, so `read` decodes the same batches, leaves out control records and, reading
committed, the records of aborted transactions, and says where the next read starts. The
checks before a read (the partition exists, this agent leads it) are the same for all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from streamhouse.config import Settings
from streamhouse.engine.admin import AdminService
from streamhouse.engine.log_store import LogStore
from streamhouse.engine.reads import DECOMPRESSION_RATIO_MAX, ReadResult
from streamhouse.errors import StreamHouseError
from streamhouse.kafka.batch_header import parse_header
from streamhouse.kafka.compression import decompressor
from streamhouse.kafka.records import decode_records
from streamhouse.kafka.sentinels import NO_LEADER_EPOCH
from streamhouse.log.partition import PartitionState
from streamhouse.log.partition_txns import AbortedTxn
from streamhouse.log.timestamps import record_timestamp
from streamhouse.names import TopicPartition


@dataclass(frozen=True)
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

    def __init__(self, settings: Settings, log: LogStore, admin: AdminService) -> None:
        self._log = log
        self._admin = admin
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
        """Records at `offset` and after; StreamHouseError (OffsetOutOfRange, …) otherwise."""
        result = await self.read_batches(tp, offset, max_bytes, read_committed=read_committed)
        records: list[ConsumedRecord] = []
        next_offset = offset
        aborted = _AbortedRanges(result.aborted or ())
        for batch in result.batches:
            header = parse_header(batch)
            next_offset = max(next_offset, header.next_offset)
            if header.is_control or aborted.covers(header.producer_id, header.base_offset):
                continue
            for record in decode_records(batch, self._decompress):
                at = header.base_offset + record.offset_delta
                if at < offset:
                    continue  # the batch holding `offset` begins before it
                records.append(
                    ConsumedRecord(
                        tp.partition,
                        at,
                        record_timestamp(header, record),
                        record.key,
                        record.value,
                        record.headers,
                    )
                )
        return PartitionRead(records, next_offset, result.high_watermark, result.log_start_offset)

    async def wait_for_data(
        self, positions: dict[TopicPartition, int], max_wait_ms: int, *, read_committed: bool = True
    ) -> bool:
        """True as soon as any partition has data past its position, False after the wait."""
        return await self._log.reads.wait_for_data(
            positions, max_wait_ms, read_committed=read_committed
        )

    async def offsets(self, tp: TopicPartition) -> PartitionOffsets:
        """The partition's log start, high watermark and last stable offset."""
        await self._admin.check_partition(tp)
        plog = await self._log.partition(tp)
        state = plog.state
        return PartitionOffsets(
            state.log_start_offset, state.high_watermark, plog.last_stable_offset
        )

    async def offset_for_timestamp(self, tp: TopicPartition, timestamp_ms: int) -> int | None:
        """The first offset stamped at or after `timestamp_ms`; None when there is none."""
        await self._admin.check_partition(tp)
        found = await self._log.reads.offset_for_timestamp(tp, timestamp_ms)
        return None if found is None else found[0]


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
