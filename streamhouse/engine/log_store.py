"""The agent's log: the partitions it leads and appends to them through the WAL.

It owns the partitions this agent leads (one `PartitionLog` per lease epoch, leases
taken, renewed and released here through `engine.leases`, whose local deadline every
append, leader read and acks=1 answer is checked against), mirrors the WAL's queue to
move high watermarks when entries are fsynced, rolls offsets back when a WAL write
fails, and hands synced batches to the flusher. Reads are `engine.reads`
(`LogStore.reads`); what `open()` recovers from the WAL is `engine.recovery`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from streamhouse.config import Settings
from streamhouse.engine.damaged_objects import DamagedObjects
from streamhouse.engine.failure import AgentFailure
from streamhouse.engine.flush import Flusher, PendingBatch
from streamhouse.engine.leases import HeldLease, LeaseHolder
from streamhouse.engine.object_reader import ObjectReader
from streamhouse.engine.partition_log import PartitionLog
from streamhouse.engine.reads import LogReader
from streamhouse.engine.recovery import RecoveryStats, WalReplay, fence_leases_of_a_lost_wal
from streamhouse.engine.waiting import CLIENT_RETRY_BACKOFF_MS, any_done, sleep_or_until
from streamhouse.engine.wal import Wal, WalAppend
from streamhouse.errors import (
    ErrorCode,
    MessageTooLarge,
    NotLeader,
    OffsetOutOfRange,
    ProducerRefused,
    StorageError,
    StreamHouseError,
    UnknownTopicOrPartition,
)
from streamhouse.kafka.batch_header import (
    BatchHeader,
    parse_header,
    validate_batch,
    with_base_offset,
)
from streamhouse.kafka.control_records import TxnMarker, encode_marker_batch
from streamhouse.kafka.sentinels import DELETE_TO_HIGH_WATERMARK
from streamhouse.log.batch_effects import idempotent_fields, producer_batch, txn_change
from streamhouse.log.partition import PartitionState
from streamhouse.log.partition_txns import PartitionTxns
from streamhouse.log.producer_state import (
    Duplicate,
    ProducerBatch,
    ProducerStates,
    Refuse,
    SequencedBatch,
)
from streamhouse.log.tail import TailBatch, TailBudget
from streamhouse.log.wal_format import (
    BatchEntry,
    EntryKind,
    TruncateEntry,
    encode_batch_entry,
    encode_truncate_entry,
)
from streamhouse.names import TopicPartition
from streamhouse.ports.buggify import LEASE_RENEW_LATE, Buggify
from streamhouse.ports.clock import Clock
from streamhouse.ports.disk import Disk
from streamhouse.ports.leases import LeaseStore, SegmentSwap
from streamhouse.ports.object_store import ObjectStore
from streamhouse.ports.producers import ProducerStore
from streamhouse.ports.rng import Rng
from streamhouse.ports.topics import TopicStore

LEASE_RENEWALS_PER_TTL = 3
# Lease renewals in one store call (one transaction; 250 take about 30 ms on embedded SQLite):
# bounded so that one call holds the store's write lock only briefly
RENEWALS_PER_CALL_MAX = 250
# A request that finds its partition's local deadline passed waits at least this long for a
# renewal before it is refused: refused at once, a client asks again at once the agent that
# Metadata still names
LAPSED_WAIT_MS_MIN = CLIENT_RETRY_BACKOFF_MS


@dataclass(frozen=True)
class AppendResult:
    """Where a batch landed and the futures its ack modes wait on."""

    tp: TopicPartition
    leader_epoch: int  # the epoch the batch was appended in
    base_offset: int
    last_offset: int
    log_start_offset: int
    synced: asyncio.Future[Any]  # acks=1: the WAL entry is fsynced (the value is unused)
    durable: asyncio.Future[None] | None  # acks=all: in a committed object


TxnVerifier = Callable[[int, int, TopicPartition], Awaitable[None]]
"""(producer id, epoch, partition) -> raises ProducerRefused unless the producer's ongoing
transaction includes the partition."""


@dataclass(frozen=True)
class ActiveProducer:
    """An idempotent or transactional producer a led partition remembers (DescribeProducers)."""

    producer_id: int
    producer_epoch: int
    last_sequence: int  # -1: none in this epoch yet (only markers)
    last_timestamp_ms: int
    current_txn_start_offset: int  # -1: no transaction open here


@dataclass
class _Inflight:
    """One WAL append as the log store sees it, in WAL order."""

    wal_append: WalAppend
    plog: PartitionLog
    pending: PendingBatch | None  # None for a truncate marker


class LogStore:
    """Appends, reads and recovery for the partitions this agent leads."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        rng: Rng,
        disk: Disk,
        objects: ObjectStore,
        agent_id: str,
        *,
        topics: TopicStore,
        leases: LeaseStore,
        producers: ProducerStore,
        buggify: Buggify | None = None,
        failure: AgentFailure | None = None,
        may_lead: Callable[[TopicPartition], bool] = lambda _: True,
        verify_txn: TxnVerifier | None = None,
        damaged: DamagedObjects | None = None,
    ) -> None:
        self._settings = settings
        # KIP-890: checks a producer's first transactional batch here with its coordinator's
        # stored transaction (engine/txn_verification.py); None trusts the client
        self._verify_txn = verify_txn
        self._may_lead = may_lead  # whether a client's request may take a partition's lease
        self.failure = failure or AgentFailure()  # a background service's death fails the agent
        self._clock = clock
        self._disk = disk
        self._topics = topics
        self._leases = leases
        self._producers = producers
        self.agent_id = agent_id
        self._buggify = buggify or Buggify()
        self._holder = LeaseHolder(settings, clock, leases, agent_id)
        self._renewal_interval_ms = settings.lease_ttl_ms // LEASE_RENEWALS_PER_TTL
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
            leases,
            agent_id,
            self.wal.release,
            self._fenced,
            buggify=self._buggify,
        )
        self.tail_budget = TailBudget(settings.tail_bytes_max)  # every led partition's tail
        self.reads = LogReader(
            settings,
            clock,
            self,
            leases,
            ObjectReader(objects, settings.block_cache_bytes_max, self._buggify),
            producers,
            damaged,
        )
        self._partitions: dict[TopicPartition, PartitionLog] = {}
        self._opening: dict[TopicPartition, asyncio.Lock] = {}
        self._inflight: deque[_Inflight] = deque()
        self._background: list[asyncio.Task[None]] = []
        self._renewing = asyncio.Lock()  # a release never races a renewal of the same lease
        self._closing = False
        self.recovery = RecoveryStats()

    # --- lifecycle ---------------------------------------------------------------------------

    async def open(self, *, run_background: bool = True) -> None:
        """Recover from the WAL and metadata, then start the WAL committer, and (with
        `run_background`) the flusher and the lease keeper."""
        await fence_leases_of_a_lost_wal(
            self._disk, self.wal, self._leases, self.agent_id, self.recovery
        )
        recovered = await self.wal.recover()
        self.wal.start()
        await WalReplay(self.wal, self, self._reappend, self.recovery).replay(recovered)
        if run_background:
            loop = asyncio.get_running_loop()
            self._background = [
                loop.create_task(self.flusher.run(), name="flusher"),
                loop.create_task(self._keep_leases(), name="lease-keeper"),
            ]
            for task in self._background:
                self.failure.watch(task, stopping=lambda: self._closing)

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
        """Let another agent take over at once instead of waiting out the TTL (after the
        flush: whatever is left unflushed stays leased and expires on its own)."""
        for tp in sorted(self._partitions):
            plog = self._partitions[tp]
            if plog.state.durable_end_offset < plog.state.high_watermark:
                continue
            try:
                await self._leases.release_lease(tp, self.agent_id)
            except StorageError:
                return  # the leases expire on their own

    async def hand_over(self, tp: TopicPartition) -> bool:
        """Stop leading a partition so another agent takes it at once: refuse new appends,
        wait for what was appended to be synced and flushed, then release the lease. Returns
        whether it was released (False: not led, or its data could not be made durable,
        so it is led on and handed over at a later try)."""
        plog = self._partitions.get(tp)
        if plog is None or plog.fenced or plog.handing_over:
            return False
        plog.handing_over = True
        try:
            await plog.wait_synced(plog.state.log_end_offset)
            await self.flusher.flush_once()
        except StreamHouseError:  # a WAL or store failure: the data stays here for now
            plog.handing_over = False
            return False
        state = plog.state
        if plog.fenced or state.durable_end_offset < state.log_end_offset:
            plog.handing_over = False
            return False
        async with self._renewing:
            plog.fence(NotLeader(f"{tp} was handed over to another agent; refresh metadata"))
            self._fenced(plog)
            with contextlib.suppress(StorageError):  # else it expires: nobody renews it now
                await self._leases.release_lease(tp, self.agent_id)
        return True

    async def release_unled(self, tp: TopicPartition) -> None:
        """Release a lease the store says this agent holds though it does not lead the
        partition (an earlier incarnation took it before a restart), so the agent it is placed
        on takes it at once rather than after the TTL. Raises StorageError."""
        if tp not in self._partitions:
            await self._leases.release_lease(tp, self.agent_id)

    # --- partitions ---------------------------------------------------------------------------

    def led_partition(self, tp: TopicPartition) -> PartitionLog | None:
        return self._partitions.get(tp)

    def led_partitions(self) -> list[TopicPartition]:
        return list(self._partitions)

    def rows_swapped(self, swap: SegmentSwap) -> None:
        """A rewrite swapped rows of a partition (merged or compacted): reads list its rows
        afresh, and its tail lets go of the batches the new rows cover, so that what
        compaction removed is not read from memory."""
        self.reads.forget_listing(swap.tp)
        plog = self._partitions.get(swap.tp)
        if plog is not None:
            plog.tail.evict_through(swap.new[-1].last_offset + 1)

    async def partition(self, tp: TopicPartition) -> PartitionLog:
        """The led partition, taking its lease first if needed and the partition is placed
        here (or not placed yet). Raises NotLeader, also past the lease's local deadline
        unless a renewal succeeds meanwhile (`_await_renewal`)."""
        if tp not in self._partitions and not self._may_lead(tp):
            # refused at once, a client asks again at once: forever on a network without delay
            await self._clock.sleep_ms(CLIENT_RETRY_BACKOFF_MS)
            if tp not in self._partitions and not self._may_lead(tp):
                raise NotLeader(f"partition {tp} is placed on another agent; refresh metadata")
        return await self.take(tp)

    async def take(self, tp: TopicPartition) -> PartitionLog:
        """As `partition`, wherever the partition is placed (the ownership service decides)."""
        plog = self._partitions.get(tp)
        if plog is None:
            lock = self._opening.setdefault(tp, asyncio.Lock())
            async with lock:
                plog = self._partitions.get(tp)
                if plog is None:
                    plog = await self._take_lease(tp)
        if not plog.leading(self._clock.monotonic_ms()):
            await self._await_renewal(plog)
        self._check_leading(plog)
        return plog

    async def _await_renewal(self, plog: PartitionLog) -> None:
        """Past the local deadline: wait for the lease keeper's next renewal, or the lease's
        loss, until a renewal interval after the deadline (when the next round has come, if
        the store answers) and at least LAPSED_WAIT_MS_MIN, so that every partition of one
        request does not wait a whole interval in turn."""
        now_ms = self._clock.monotonic_ms()
        until_ms = max(
            plog.lease_deadline_ms + self._renewal_interval_ms, now_ms + LAPSED_WAIT_MS_MIN
        )
        await sleep_or_until(self._clock, until_ms - now_ms, any_done([plog.watch_lease()]))

    def _check_leading(self, plog: PartitionLog) -> None:
        if plog.fenced:
            raise NotLeader(f"lease of {plog.state.tp} moved to another agent; refresh metadata")
        if not plog.leading(self._clock.monotonic_ms()):
            raise NotLeader(
                f"lease of {plog.state.tp} passed its local deadline without a renewal; "
                "this agent leads it again once one succeeds"
            )

    def confirm_leader_ack(self, result: AppendResult) -> None:
        """An acks=1 answer may say success only while this agent still leads the partition
        in the epoch the batch was appended in, within the lease's local deadline: a new
        leader may own those offsets already. Raises NotLeader otherwise."""
        plog = self._partitions.get(result.tp)
        if plog is None or plog.state.leader_epoch != result.leader_epoch:
            raise NotLeader(f"lease of {result.tp} moved to another agent; refresh metadata")
        self._check_leading(plog)

    async def _take_lease(self, tp: TopicPartition) -> PartitionLog:
        lease = await self._holder.acquire(tp)
        if lease is None:
            raise NotLeader(f"partition {tp} is led by another agent; refresh metadata")
        record = await self._topics.get_partition(tp)
        state = PartitionState.opened(
            tp, lease.epoch, record.log_start_offset, record.durable_end_offset
        )
        expired_before_ms = self._clock.now_ms() - self._settings.producer_id_expiration_ms
        stored = await self._producers.list_producer_states(tp)
        producers = ProducerStates(
            self._settings.producers_per_partition_max,
            [s for s in stored if s.last_append_ms >= expired_before_ms],
        )
        txns = PartitionTxns(await self._producers.list_open_txns(tp), state.durable_end_offset)
        plog = PartitionLog.opened(state, producers, lease.deadline_ms, self.tail_budget, txns)
        self._partitions[tp] = plog
        return plog

    async def _keep_leases(self) -> None:
        while not self._closing:
            await self._clock.sleep_ms(self._renewal_interval_ms)
            if self._buggify.fires(LEASE_RENEW_LATE):  # late, at most the TTL: may lose it
                await self._clock.sleep_ms(self._renewal_interval_ms)
            try:
                await self.renew_leases()
            except StorageError:
                continue  # the next round retries, within the local deadline

    async def renew_leases(self) -> None:
        """Renew every led partition's lease (moving its local deadline on); fence those whose
        lease moved on or whose topic is gone. A store failure leaves that partition to the
        next round and the others are still renewed; then the first failure is raised."""
        async with self._renewing:
            await self._renew_each()

    async def _renew_each(self) -> None:
        """Every lease renewed, RENEWALS_PER_CALL_MAX to a store call (one transaction): one
        call per lease cost the store a write transaction each, so an idle agent leading
        1,000 partitions spent a fifth of a core on renewals, and their rounds held the store's
        threads and its write lock against the appends and flushes of a busy one."""
        led = sorted(self._partitions.items())
        failed: StorageError | None = None
        for start in range(0, len(led), RENEWALS_PER_CALL_MAX):
            batch = led[start : start + RENEWALS_PER_CALL_MAX]
            held = {tp: plog.state.leader_epoch for tp, plog in batch if not plog.fenced}
            if not held:
                continue
            try:
                renewed = await self._holder.renew(held)
            except StorageError as error:  # these wait for the next round; the others go on
                failed = failed or error
                continue
            for tp, plog in batch:
                if tp in held and not plog.fenced:  # not handed over or deleted meanwhile
                    self._renewed(plog, tp in renewed, renewed.get(tp))
        if failed is not None:
            raise failed

    def _renewed(self, plog: PartitionLog, exists: bool, lease: HeldLease | None) -> None:
        """Move the local deadline on, or fence: the partition is gone, or its lease moved."""
        tp = plog.state.tp
        if not exists:  # deleted through another agent
            plog.fence(UnknownTopicOrPartition(f"partition {tp} does not exist"))
            self._fenced(plog)
        elif lease is None or lease.epoch != plog.state.leader_epoch:
            plog.fence(NotLeader(f"lease of {tp} moved to another agent; refresh metadata"))
            self._fenced(plog)
        else:
            plog.renewed(lease.deadline_ms)

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
        if self._opens_txn(plog, header):
            # One at a time and in arrival order (the lock is fair): a producer's next batches
            # wait behind its first, so sequences still reach the log in the order sent.
            async with plog.txn_opening:
                if self._opens_txn(plog, header):
                    assert self._verify_txn is not None
                    await self._verify_txn(header.producer_id, header.producer_epoch, tp)
                return await self._append_led(plog, header, batch, durable)
        return await self._append_led(plog, header, batch, durable)

    def _opens_txn(self, plog: PartitionLog, header: BatchHeader) -> bool:
        """Whether the batch would open its producer's transaction here, to be verified."""
        if self._verify_txn is None or not header.is_transactional:
            return False
        return plog.txns.first_offset(header.producer_id) is None

    async def _append_led(
        self, plog: PartitionLog, header: BatchHeader, batch: bytes, durable: bool
    ) -> AppendResult:
        tp = plog.state.tp
        await self._wait_for_room(len(batch))
        self._check_leading(plog)
        if plog.handing_over:  # what it holds is being flushed for the next leader
            raise NotLeader(f"{tp} is being handed over to another agent; refresh metadata")
        # From here to the return nothing awaits: offset order equals WAL order.
        producer = idempotent_fields(header)
        if producer is not None:
            verdict = plog.producers.judge(*producer, header.record_count)
            if isinstance(verdict, Refuse):
                raise ProducerRefused(f"{tp}: {verdict.message}", verdict.code)
            if isinstance(verdict, Duplicate):
                return self._duplicate(plog, verdict.original, durable)
            _check_txn_state(plog, header)
        return self._place(plog, header, batch, durable=durable)

    async def write_marker(self, tp: TopicPartition, marker: TxnMarker) -> AppendResult:
        """Append a transaction marker (COMMIT or ABORT control batch) for the producer's
        transaction in a partition this agent leads, as its coordinator decided it; the
        transaction ends here (a marker may also come where it wrote nothing). The marker
        is written once `durable` resolves. Raises NotLeader, ProducerRefused
        (INVALID_PRODUCER_EPOCH: the producer has a newer epoch here), StorageError."""
        plog = await self.partition(tp)
        batch = encode_marker_batch(marker, self._clock.now_ms())
        await self._wait_for_room(len(batch))
        self._check_leading(plog)
        if plog.handing_over:
            raise NotLeader(f"{tp} is being handed over to another agent; refresh metadata")
        # From here to the return nothing awaits: offset order equals WAL order.
        known = plog.producers.get(marker.producer_id)
        if known is not None and marker.producer_epoch < known.producer_epoch:
            raise ProducerRefused(
                f"{tp}: marker of producer {marker.producer_id} has epoch "
                f"{marker.producer_epoch}, older than its epoch {known.producer_epoch} here",
                ErrorCode.INVALID_PRODUCER_EPOCH,
            )
        return self._place(plog, parse_header(batch), batch, durable=True)

    def _place(
        self, plog: PartitionLog, header: BatchHeader, batch: bytes, *, durable: bool
    ) -> AppendResult:
        """Assign the batch its offsets and queue it to the tail, the WAL and the flusher
        (the caller checked it may be appended; nothing here awaits)."""
        state, tp = plog.state, plog.state.tp
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
            txn=txn_change(plog.txns, header, stamped, base_offset),
            urgent=header.is_control,
        )
        self.flusher.add(pending)
        wal_append = self._queue(plog, EntryKind.BATCH, encode_batch_entry(entry), pending)
        durable_future = plog.wait_durable(tail_batch.end_offset) if durable else None
        return AppendResult(
            tp,
            state.leader_epoch,
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
            plog.state.tp,
            plog.state.leader_epoch,
            original.base_offset,
            original.last_offset,
            plog.state.log_start_offset,
            plog.wait_synced(end_offset),
            plog.wait_durable(end_offset) if durable else None,
        )

    def _record_producer(
        self, plog: PartitionLog, header: BatchHeader, base_offset: int
    ) -> ProducerBatch | None:
        """Remember an idempotent batch's sequence range where it landed (for a marker, only
        the producer's epoch)."""
        produced = producer_batch(header, base_offset)
        if produced is not None:
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

    async def describe_producers(self, tp: TopicPartition) -> list[ActiveProducer]:
        """The producers the partition remembers, by producer id. Raises NotLeader."""
        plog = await self.partition(tp)
        open_txns = plog.txns.open_txns()
        return [
            ActiveProducer(
                snapshot.producer_id,
                snapshot.producer_epoch,
                snapshot.batches[-1].last_sequence if snapshot.batches else -1,
                snapshot.last_append_ms,
                open_txns.get(snapshot.producer_id, -1),
            )
            for snapshot in plog.producers.snapshots()
        ]

    # --- log start ---------------------------------------------------------------------------

    async def delete_records(self, tp: TopicPartition, offset: int) -> int:
        """Move the log start to `offset` (-1: the high watermark); returns the new log start.
        An offset below the current log start changes nothing, as in Kafka."""
        plog = await self.partition(tp)
        async with plog.log_start_moving:
            high_watermark = plog.state.high_watermark
            target = high_watermark if offset == DELETE_TO_HIGH_WATERMARK else offset
            if not 0 <= target <= high_watermark:
                raise OffsetOutOfRange(
                    f"cannot delete {tp} up to {offset}: the log holds "
                    f"[{plog.state.log_start_offset}, {high_watermark}]"
                )
            return await self.raise_log_start(plog, target)

    async def raise_log_start(self, plog: PartitionLog, offset: int) -> int:
        """The one way a led partition's log start moves (DeleteRecords, retention): first in
        the metadata store, which drops the segment rows wholly below it, then in memory, so
        reads and ListOffsets answer from it. Never moves back; returns the log start. The
        caller holds `plog.log_start_moving`. Raises NotLeader, StorageError."""
        assert plog.log_start_moving.locked(), "log start moves are taken one at a time"
        self._check_leading(plog)
        log_start = await self._leases.set_log_start_offset(plog.state.tp, offset)
        plog.state.advance_log_start(log_start)
        return plog.state.log_start_offset

    def _reappend(self, plog: PartitionLog, header: BatchHeader, data: bytes, segment: int) -> None:
        """Put a batch the WAL kept back at its offsets, synced, pending its flush."""
        state = plog.state
        assert state.assign(header.last_offset_delta + 1) == header.base_offset
        tail_batch = TailBatch(header.base_offset, header.last_offset, header.max_timestamp, data)
        plog.append(tail_batch)
        plog.synced(tail_batch.end_offset)
        producer = self._record_producer(plog, header, header.base_offset)
        pending = PendingBatch(
            plog,
            state.leader_epoch,
            tail_batch,
            self._clock.monotonic_ms(),
            producer=producer,
            txn=txn_change(plog.txns, header, data, header.base_offset),
        )
        self.flusher.add(pending)
        self.flusher.mark_synced(pending, segment)


def _check_txn_state(plog: PartitionLog, header: BatchHeader) -> None:
    """A producer with a transaction open here may not write outside it (Kafka's rule)."""
    open_at = plog.txns.first_offset(header.producer_id)
    if open_at is not None and not header.is_transactional:
        raise ProducerRefused(
            f"{plog.state.tp}: producer {header.producer_id} has a transaction open here since "
            f"offset {open_at}; a non-transactional batch must wait for its end",
            ErrorCode.INVALID_TXN_STATE,
        )
