"""The agent's log: appends through the WAL, reads from tail or objects, recovery at open.

It owns the partitions this agent leads (one `PartitionLog` per lease epoch),
mirrors the WAL's queue to move high watermarks when entries are fsynced,
rolls offsets back when a WAL write fails, and hands synced batches to the
flusher. `open()` replays the WAL against metadata: entries already durable
are released, entries of the current lease epoch are re-appended at their
offsets, entries whose epoch moved on are dropped and counted.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from streamhouse.config import Settings
from streamhouse.engine.failure import AgentFailure
from streamhouse.engine.flush import Flusher, PendingBatch
from streamhouse.engine.object_reader import ObjectReader
from streamhouse.engine.partition_log import PartitionLog
from streamhouse.engine.waiting import any_done, sleep_or_until
from streamhouse.engine.wal import RecoveredEntry, Wal, WalAppend
from streamhouse.errors import (
    MessageTooLarge,
    NotLeader,
    OffsetOutOfRange,
    ProducerRefused,
    StorageError,
    UnknownTopicOrPartition,
)
from streamhouse.kafka.compression import decompressor
from streamhouse.kafka.record_batch import (
    NO_PRODUCER_ID,
    BatchHeader,
    iter_batches,
    parse_header,
    validate_batch,
    with_base_offset,
)
from streamhouse.log.partition import PartitionState
from streamhouse.log.producer_state import (
    Duplicate,
    ProducerBatch,
    ProducerStates,
    Refuse,
    SequencedBatch,
    last_sequence,
)
from streamhouse.log.tail import TailBatch
from streamhouse.log.timestamps import first_at_or_after
from streamhouse.log.topics import validate_partition_count, validate_topic_name
from streamhouse.log.wal_format import (
    BatchEntry,
    EntryKind,
    TruncateEntry,
    decode_batch_entry,
    decode_truncate_entry,
    encode_batch_entry,
    encode_truncate_entry,
)
from streamhouse.names import TopicPartition
from streamhouse.ports.buggify import LEASE_RENEW_LATE, Buggify
from streamhouse.ports.clock import Clock
from streamhouse.ports.disk import Disk
from streamhouse.ports.metadata import MetadataStore, TopicRecord
from streamhouse.ports.object_store import ObjectStore
from streamhouse.ports.rng import Rng

SEGMENT_ROWS_PER_READ = 16
LEASE_RENEWALS_PER_TTL = 3
DELETE_TO_HIGH_WATERMARK = -1
DECOMPRESSION_RATIO_MAX = 64  # bound on a batch's records section when inflated


WAL_MARKER_FILE = "wal-owner"  # written once a disk holds this agent's WAL


@dataclass(frozen=True)
class AppendResult:
    """Where a batch landed and the futures its ack modes wait on."""

    base_offset: int
    last_offset: int
    log_start_offset: int
    synced: asyncio.Future[Any]  # acks=1: the WAL entry is fsynced (the value is unused)
    durable: asyncio.Future[None] | None  # acks=all: in a committed object


@dataclass(frozen=True)
class ReadResult:
    """Batches from an offset, and the partition's offsets at the time of the read."""

    batches: list[bytes]
    high_watermark: int
    log_start_offset: int


@dataclass
class _Inflight:
    """One WAL append as the log store sees it, in WAL order."""

    wal_append: WalAppend
    plog: PartitionLog
    pending: PendingBatch | None  # None for a truncate marker


@dataclass
class RecoveryStats:
    """What the last WAL replay did."""

    voided_batches: int = 0  # failed writes cancelled by a truncate marker
    replayed_batches: int = 0
    already_durable_batches: int = 0
    dropped_batches: int = 0
    leases_fenced: int = 0  # moved to a new epoch because this disk held no WAL


class LogStore:
    """Appends, reads and recovery for the partitions this agent leads."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        rng: Rng,
        disk: Disk,
        objects: ObjectStore,
        metadata: MetadataStore,
        agent_id: str,
        buggify: Buggify | None = None,
        failure: AgentFailure | None = None,
    ) -> None:
        self._settings = settings
        self.failure = failure or AgentFailure()  # a background service's death fails the agent
        self._clock = clock
        self._disk = disk
        self._metadata = metadata
        self.agent_id = agent_id
        self._buggify = buggify or Buggify()
        self.wal = Wal(
            disk,
            clock,
            settings,
            on_synced=self._wal_synced,
            on_failure=self._wal_failed,
            buggify=self._buggify,
        )
        self.flusher = Flusher(
            settings,
            clock,
            rng,
            objects,
            metadata,
            agent_id,
            self.wal.release,
            self._fenced,
            buggify=self._buggify,
        )
        self.reader = ObjectReader(objects, settings.block_cache_bytes_max, self._buggify)
        self._partitions: dict[TopicPartition, PartitionLog] = {}
        self._opening: dict[TopicPartition, asyncio.Lock] = {}
        self._inflight: deque[_Inflight] = deque()
        self._background: list[asyncio.Task[None]] = []
        self._closing = False
        self.recovery = RecoveryStats()

    # --- lifecycle ---------------------------------------------------------------------------

    async def open(self, *, run_background: bool = True) -> None:
        """Recover from the WAL and metadata, then start the WAL committer, and (with
        `run_background`) the flusher and the lease keeper."""
        await self._fence_leases_of_a_lost_wal()
        recovered = await self.wal.recover()
        self.wal.start()
        await self._replay(recovered)
        if run_background:
            loop = asyncio.get_running_loop()
            self._background = [
                loop.create_task(self.flusher.run(), name="flusher"),
                loop.create_task(self._keep_leases(), name="lease-keeper"),
            ]
            for task in self._background:
                self.failure.watch(task, stopping=lambda: self._closing)

    async def _fence_leases_of_a_lost_wal(self) -> None:
        """On a disk this agent never wrote a WAL to (new, or wiped under a configured agent
        id), move every lease it holds to a new epoch before anything is appended: records
        it acknowledged from the lost WAL must not share an epoch with what comes next
        (DESIGN §6: an acks=1 loss is detectable through leader epochs). The marker is
        written after the fence, so a crash in between fences again, which is harmless."""
        if self._disk.exists(WAL_MARKER_FILE):
            return
        if not self.wal.has_segments_on_disk():  # a WAL from before markers is no loss
            self.recovery.leases_fenced = await self._metadata.fence_own_leases(self.agent_id)
        await self._disk.write_atomic(WAL_MARKER_FILE, self.agent_id.encode())

    async def close(self, *, flush: bool = True) -> None:
        """Stop taking work; with `flush`, make everything synced durable first."""
        self._closing = True
        self.flusher.stop()
        for task in self._background:
            if task.get_name() == "lease-keeper":
                task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.wal.close()
        if flush:
            await self.flusher.flush_once()
            await self._release_leases()

    async def _release_leases(self) -> None:
        """Let another agent take over at once instead of waiting out the TTL."""
        for tp in sorted(self._partitions):
            try:
                await self._metadata.release_lease(tp, self.agent_id)
            except StorageError:
                return  # the leases expire on their own

    # --- topics and partitions ---------------------------------------------------------------

    async def create_topic(
        self, name: str, partition_count: int, configs: Mapping[str, str] | None = None
    ) -> TopicRecord:
        validate_topic_name(name)
        validate_partition_count(partition_count, self._settings.topic_partitions_max)
        return await self._metadata.create_topic(
            name, partition_count, configs or {}, self._clock.now_ms()
        )

    def led_partition(self, tp: TopicPartition) -> PartitionLog | None:
        return self._partitions.get(tp)

    def led_partitions(self) -> list[TopicPartition]:
        return list(self._partitions)

    async def partition(self, tp: TopicPartition) -> PartitionLog:
        """The led partition, taking its lease first if needed. Raises NotLeader."""
        plog = self._partitions.get(tp)
        if plog is not None:
            return plog
        lock = self._opening.setdefault(tp, asyncio.Lock())
        async with lock:
            plog = self._partitions.get(tp)
            if plog is None:
                plog = await self._take_lease(tp)
            return plog

    async def _take_lease(self, tp: TopicPartition) -> PartitionLog:
        lease = await self._metadata.acquire_lease(
            tp, self.agent_id, self._clock.now_ms(), self._settings.lease_ttl_ms
        )
        if lease is None:
            raise NotLeader(f"partition {tp} is led by another agent; refresh metadata")
        record = await self._metadata.get_partition(tp)
        state = PartitionState.opened(
            tp, lease.epoch, record.log_start_offset, record.durable_end_offset
        )
        expired_before_ms = self._clock.now_ms() - self._settings.producer_id_expiration_ms
        stored = await self._metadata.list_producer_states(tp)
        producers = ProducerStates(
            self._settings.producers_per_partition_max,
            [s for s in stored if s.last_append_ms >= expired_before_ms],
        )
        plog = PartitionLog.opened(state, producers)
        self._partitions[tp] = plog
        return plog

    async def _keep_leases(self) -> None:
        while not self._closing:
            await self._clock.sleep_ms(self._settings.lease_ttl_ms // LEASE_RENEWALS_PER_TTL)
            if self._buggify.fires(LEASE_RENEW_LATE):  # late, at most the TTL: may lose it
                await self._clock.sleep_ms(self._settings.lease_ttl_ms // LEASE_RENEWALS_PER_TTL)
            try:
                await self.renew_leases()
            except StorageError:
                continue  # the next round retries; the lease lasts a whole TTL

    async def renew_leases(self) -> None:
        """Renew every led partition's lease; fence those whose lease moved on."""
        for tp, plog in sorted(self._partitions.items()):
            lease = await self._metadata.acquire_lease(
                tp, self.agent_id, self._clock.now_ms(), self._settings.lease_ttl_ms
            )
            if lease is None or lease.epoch != plog.state.leader_epoch:
                plog.fence(NotLeader(f"lease of {tp} moved to another agent; refresh metadata"))
                self._fenced(plog)

    def forget_topic(self, name: str) -> None:
        """The topic was deleted: stop leading its partitions now, failing their waiters,
        rather than at the next flush (whose commit would be fenced anyway)."""
        for tp, plog in sorted(self._partitions.items()):
            if tp.topic == name:
                plog.fence(UnknownTopicOrPartition(f"topic {name!r} was deleted"))
                self._fenced(plog)

    def _fenced(self, plog: PartitionLog) -> None:
        if self._partitions.get(plog.state.tp) is plog:
            del self._partitions[plog.state.tp]

    # --- append ------------------------------------------------------------------------------

    async def append(self, tp: TopicPartition, batch: bytes, *, durable: bool) -> AppendResult:
        """Validate, assign offsets and queue a producer's batch.

        Returns at once after queueing (waiting only for room in bounded queues);
        the caller awaits `synced` or `durable` according to its ack mode.
        """
        if len(batch) > self._settings.batch_bytes_max:
            raise MessageTooLarge(
                f"batch of {len(batch)} bytes exceeds batch_bytes_max "
                f"{self._settings.batch_bytes_max}"
            )
        header = validate_batch(batch)
        plog = await self.partition(tp)
        await self._wait_for_room(len(batch))
        if plog.fenced:
            raise NotLeader(f"lease of {tp} moved to another agent; refresh metadata")
        # From here to the return nothing awaits: offset order equals WAL order.
        producer = _idempotent(header)
        if producer is not None:
            verdict = plog.producers.judge(*producer, header.record_count)
            if isinstance(verdict, Refuse):
                raise ProducerRefused(f"{tp}: {verdict.message}", verdict.code)
            if isinstance(verdict, Duplicate):
                return self._duplicate(plog, verdict.original, durable)
        state = plog.state
        if plog.truncate_marker_offset is not None:
            # Written once, ahead of the partition's next batch and in the same fsync: if the
            # marker fails, so does the batch, and the rollback asks for a marker again.
            marker = TruncateEntry(tp.topic, tp.partition, plog.truncate_marker_offset)
            plog.truncate_marker_offset = None
            self._queue(plog, EntryKind.TRUNCATE, encode_truncate_entry(marker), None)
        base_offset = state.assign(header.last_offset_delta + 1)
        stamped = with_base_offset(batch, base_offset, state.leader_epoch)
        tail_batch = TailBatch(
            base_offset, header.last_offset_delta + base_offset, header.max_timestamp, stamped
        )
        plog.append(tail_batch)
        entry = BatchEntry(tp.topic, tp.partition, state.leader_epoch, stamped)
        pending = PendingBatch(
            plog,
            state.leader_epoch,
            tail_batch,
            self._clock.monotonic_ms(),
            producer=self._record_producer(plog, header, base_offset),
        )
        self.flusher.add(pending)
        wal_append = self._queue(plog, EntryKind.BATCH, encode_batch_entry(entry), pending)
        durable_future = plog.wait_durable(tail_batch.end_offset) if durable else None
        return AppendResult(
            base_offset,
            tail_batch.last_offset,
            state.log_start_offset,
            wal_append.synced,
            durable_future,
        )

    def _duplicate(
        self, plog: PartitionLog, original: SequencedBatch, durable: bool
    ) -> AppendResult:
        """A producer's retry of a batch already appended: answer with the first offsets once
        the original reaches what the ack mode asks for."""
        end_offset = original.last_offset + 1
        return AppendResult(
            original.base_offset,
            original.last_offset,
            plog.state.log_start_offset,
            plog.wait_synced(end_offset),
            plog.wait_durable(end_offset) if durable else None,
        )

    def _record_producer(
        self, plog: PartitionLog, header: BatchHeader, base_offset: int
    ) -> ProducerBatch | None:
        """Remember an idempotent batch's sequence range where it landed."""
        producer = _idempotent(header)
        if producer is None:
            return None
        producer_id, epoch, first_sequence = producer
        sequenced = SequencedBatch(
            first_sequence,
            last_sequence(first_sequence, header.record_count),
            base_offset,
            base_offset + header.last_offset_delta,
        )
        produced = ProducerBatch(producer_id, epoch, sequenced)
        plog.producers.record(produced, self._clock.now_ms())
        return produced

    async def _wait_for_room(self, size_bytes: int) -> None:
        while not (self.wal.has_room(size_bytes) and self.flusher.has_room()):
            await self.wal.wait_for_room()
            await self.flusher.wait_for_room()

    def _queue(
        self, plog: PartitionLog, kind: EntryKind, payload: bytes, pending: PendingBatch | None
    ) -> WalAppend:
        wal_append = self.wal.append(kind, payload)
        self._inflight.append(_Inflight(wal_append, plog, pending))
        return wal_append

    def _wal_synced(self, group: list[WalAppend], segment: int) -> None:
        for wal_append in group:
            inflight = self._inflight.popleft()
            assert inflight.wal_append is wal_append, "WAL and log store disagree on order"
            if inflight.pending is None:
                self.wal.release(segment)  # a marker pins nothing once written
                continue
            inflight.plog.synced(inflight.pending.batch.end_offset)
            self.flusher.mark_synced(inflight.pending, segment)

    def _wal_failed(self, failed: list[WalAppend], error: StorageError) -> None:
        assert len(failed) == len(self._inflight), "a WAL failure fails everything queued"
        touched = {id(i.plog): i.plog for i in self._inflight}
        self._inflight.clear()
        self.flusher.drop_unsynced()
        for plog in touched.values():
            plog.roll_back_unsynced(error)

    # --- read --------------------------------------------------------------------------------

    async def read(self, tp: TopicPartition, offset: int, bytes_max: int) -> ReadResult:
        """Batches holding `offset` and after, up to the high watermark and about `bytes_max`."""
        plog = await self.partition(tp)
        state = plog.state
        high_watermark, log_start = state.high_watermark, state.log_start_offset
        if offset < log_start or offset > high_watermark:
            raise OffsetOutOfRange(
                f"offset {offset} of {tp} is outside [{log_start}, {high_watermark}]"
            )
        if offset >= plog.tail.start_offset:
            found = plog.tail.read(offset, high_watermark, bytes_max)
            return ReadResult([b.data for b in found], high_watermark, log_start)
        batches = await self._read_objects(tp, offset, plog.tail.start_offset, bytes_max)
        return ReadResult(batches, high_watermark, log_start)

    async def wait_for_data(self, positions: Mapping[TopicPartition, int], wait_ms: int) -> bool:
        """Long-poll: wait up to `wait_ms` until some partition's high watermark passes its
        position (or its lease is lost). True if woken early; partitions not led are skipped."""
        watched = []
        for tp, offset in positions.items():
            plog = self._partitions.get(tp)
            if plog is None:
                continue
            if plog.state.high_watermark > offset or plog.fenced:
                return True
            watched.append(plog.watch_high_watermark())
        if not watched or wait_ms <= 0:
            return False
        return await sleep_or_until(self._clock, wait_ms, any_done(watched))

    async def delete_records(self, tp: TopicPartition, offset: int) -> int:
        """Move the log start to `offset` (-1: the high watermark); returns the new log start.
        An offset below the current log start changes nothing, as in Kafka."""
        plog = await self.partition(tp)
        high_watermark = plog.state.high_watermark
        target = high_watermark if offset == DELETE_TO_HIGH_WATERMARK else offset
        if not 0 <= target <= high_watermark:
            raise OffsetOutOfRange(
                f"cannot delete {tp} up to {offset}: the log holds "
                f"[{plog.state.log_start_offset}, {high_watermark}]"
            )
        log_start = await self._metadata.set_log_start_offset(tp, target)
        plog.state.advance_log_start(log_start)
        return plog.state.log_start_offset

    async def offset_for_timestamp(
        self, tp: TopicPartition, timestamp_ms: int
    ) -> tuple[int, int] | None:
        """ListOffsets by time: (offset, timestamp) of the first record stamped at or after
        `timestamp_ms`, below the high watermark; None when there is none."""
        plog = await self.partition(tp)
        state = plog.state
        decompress = decompressor(self._settings.batch_bytes_max * DECOMPRESSION_RATIO_MAX)
        offset = state.log_start_offset
        while offset < plog.tail.start_offset:
            segments = await self._metadata.list_segments(tp, offset, SEGMENT_ROWS_PER_READ)
            if not segments:
                break
            for segment in segments:
                if segment.max_timestamp_ms >= timestamp_ms:
                    raw = await self.reader.read_segment(segment)
                    batches = [bytes(view) for _, view in iter_batches(raw, from_producer=False)]
                    found = first_at_or_after(batches, timestamp_ms, offset, decompress)
                    if found is not None:
                        return found
            offset = segments[-1].last_offset + 1
        tail_from = max(offset, plog.tail.start_offset)
        in_tail = plog.tail.read(tail_from, state.high_watermark, plog.tail.byte_count)
        tail_batches = (batch.data for batch in in_tail)
        return first_at_or_after(tail_batches, timestamp_ms, state.log_start_offset, decompress)

    async def _read_objects(
        self, tp: TopicPartition, offset: int, end_offset: int, bytes_max: int
    ) -> list[bytes]:
        found: list[bytes] = []
        size_bytes = 0
        segments = await self._metadata.list_segments(tp, offset, SEGMENT_ROWS_PER_READ)
        for segment in segments:
            raw = await self.reader.read_segment(segment)
            for header, view in iter_batches(raw, from_producer=False):
                if header.last_offset < offset or header.base_offset >= end_offset:
                    continue
                if found and size_bytes + len(view) > bytes_max:
                    return found
                found.append(bytes(view))
                size_bytes += len(view)
        return found

    # --- recovery ----------------------------------------------------------------------------

    async def _replay(self, recovered: list[RecoveredEntry]) -> None:
        by_partition, voided = _surviving_batches(recovered, self.wal.release)
        self.recovery.voided_batches += voided
        for tp, entries in sorted(by_partition.items()):
            await self._replay_partition(tp, entries)

    async def _replay_partition(
        self, tp: TopicPartition, entries: list[tuple[BatchEntry, int]]
    ) -> None:
        try:
            plog = await self.partition(tp)
        except (NotLeader, UnknownTopicOrPartition):
            self._drop(entries)
            return
        for entry, segment in entries:
            header = validate_batch(entry.batch, from_producer=False)
            state = plog.state
            if header.next_offset <= state.durable_end_offset:
                self.recovery.already_durable_batches += 1
                self.wal.release(segment)
            elif entry.leader_epoch != state.leader_epoch or header.base_offset != (
                state.log_end_offset
            ):
                self._drop([(entry, segment)])
            else:
                self._reappend(
                    plog,
                    header.base_offset,
                    header.last_offset,
                    header.max_timestamp,
                    entry.batch,
                    segment,
                )

    def _reappend(
        self,
        plog: PartitionLog,
        base_offset: int,
        last_offset: int,
        max_timestamp_ms: int,
        data: bytes,
        segment: int,
    ) -> None:
        state = plog.state
        assert state.assign(last_offset - base_offset + 1) == base_offset
        tail_batch = TailBatch(base_offset, last_offset, max_timestamp_ms, data)
        plog.append(tail_batch)
        plog.synced(tail_batch.end_offset)
        producer = self._record_producer(plog, parse_header(data), base_offset)
        pending = PendingBatch(
            plog, state.leader_epoch, tail_batch, self._clock.monotonic_ms(), producer=producer
        )
        self.flusher.add(pending)
        self.flusher.mark_synced(pending, segment)
        self.recovery.replayed_batches += 1

    def _drop(self, entries: list[tuple[BatchEntry, int]]) -> None:
        for _, segment in entries:
            self.wal.release(segment)
        self.recovery.dropped_batches += len(entries)


def _surviving_batches(
    recovered: list[RecoveredEntry], release: Callable[[int], None]
) -> tuple[dict[TopicPartition, list[tuple[BatchEntry, int]]], int]:
    """Batch entries per partition after applying truncate markers, in WAL order, and how
    many entries the markers voided (their WAL references are released here)."""
    by_partition: dict[TopicPartition, list[tuple[BatchEntry, int]]] = {}
    voided = 0
    for item in recovered:
        if item.kind == EntryKind.TRUNCATE:
            marker = decode_truncate_entry(item.payload)
            tp = TopicPartition(marker.topic, marker.partition)
            kept = []
            for entry, segment in by_partition.get(tp, []):
                if validate_batch(entry.batch, from_producer=False).base_offset >= marker.offset:
                    release(segment)
                    voided += 1
                else:
                    kept.append((entry, segment))
            by_partition[tp] = kept
            release(item.segment)
        else:
            entry = decode_batch_entry(item.payload)
            tp = TopicPartition(entry.topic, entry.partition)
            by_partition.setdefault(tp, []).append((entry, item.segment))
    return by_partition, voided


def _idempotent(header: BatchHeader) -> tuple[int, int, int] | None:
    """(producer id, epoch, first sequence) of an idempotent producer's batch, else None."""
    if header.producer_id == NO_PRODUCER_ID:
        return None
    return header.producer_id, header.producer_epoch, header.base_sequence
