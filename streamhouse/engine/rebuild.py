"""The rebuild: a lost metadata store made again from the bucket alone.

The newest snapshot that passes its checksum is restored into the blank store (older ones
are tried when the newest is damaged). The footers of every object the snapshot does not
know are then read, and each partition's log is extended from its durable end by the
chain of their blocks (log/rebuild_plan.py: the later leader epoch wins from the first
offset it wrote). The chosen blocks themselves are read too, for the producer states and
transactions they hold, and everything is committed in one transaction that also moves
every lease epoch, producer id and group generation past what the bucket cannot tell.
An agent that finds a rebuild pending (another agent began it, or one crashed mid-way)
completes it; the first completion wins.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from streamhouse.engine.object_reader import ObjectReader
from streamhouse.errors import CorruptObject, ObjectNotFound, RebuildRefused, StorageError
from streamhouse.kafka.batch_header import iter_batches
from streamhouse.log.batch_effects import producer_batch, txn_change
from streamhouse.log.ids import OBJECTS_PREFIX
from streamhouse.log.object_format import ObjectFooter
from streamhouse.log.partition_txns import PartitionTxns, TxnChange
from streamhouse.log.producer_state import ProducerBatch
from streamhouse.log.rebuild_plan import FoundBlock, PartitionChain, plan_chain
from streamhouse.log.snapshot_format import (
    SNAPSHOT_PREFIX,
    Snapshot,
    decode_snapshot,
    seq_of_key,
)
from streamhouse.names import TopicPartition
from streamhouse.ports.clock import Clock
from streamhouse.ports.leases import LeaseStore, ObjectRecord, SegmentRecord
from streamhouse.ports.object_store import ObjectInfo, ObjectStore
from streamhouse.ports.producers import ProducerStore
from streamhouse.ports.snapshots import (
    RebuildPlan,
    RebuiltPartition,
    SnapshotStore,
    StoreState,
)
from streamhouse.ports.topics import PartitionRecord, TopicStore

OBJECT_SUFFIX = ".obj"
FOOTER_READS_IN_FLIGHT_MAX = 32
REBUILD_BLOCK_CACHE_BYTES_MAX = 16 * 1024 * 1024
STORE_ATTEMPTS_MAX = 5
RETRY_BACKOFF_MS = 200
log = logging.getLogger("streamhouse.rebuild")
T = TypeVar("T")

Progress = Callable[[str, int, int], None]
"""Told (step, done, total) as the rebuild goes: "footers", "blocks"."""


@dataclass
class RebuildReport:
    """What a rebuild found and did."""

    snapshot_key: str | None = None
    snapshot_rows: int = 0
    snapshots_damaged: list[tuple[str, str]] = field(default_factory=list)  # (key, why)
    began_here: bool = False  # False: another agent had begun it (its snapshot restored)
    completed_here: bool = False  # False: another agent completed it first
    objects_listed: int = 0
    objects_new: int = 0  # not known to the snapshot: their footers were read
    objects_added: int = 0  # holding at least one block the log now uses
    objects_unreadable: list[tuple[str, str]] = field(default_factory=list)  # (key, why)
    segments_added: int = 0
    partitions_extended: int = 0
    topics_created: list[str] = field(default_factory=list)
    blocks_skipped: list[tuple[str, str, int, int, str]] = field(default_factory=list)
    elapsed_ms: int = 0


class Rebuilder:
    """Rebuilds the metadata store from the bucket."""

    def __init__(
        self,
        clock: Clock,
        objects: ObjectStore,
        agent_id: str,
        *,
        snapshots: SnapshotStore,
        topics: TopicStore,
        leases: LeaseStore,
        producers: ProducerStore,
        progress: Progress | None = None,
    ) -> None:
        self._clock = clock
        self._objects = objects
        self._store = snapshots
        self._topics = topics
        self._leases = leases
        self._producers = producers
        self._agent_id = agent_id
        self._progress = progress or _quiet
        self._reader = ObjectReader(objects, REBUILD_BLOCK_CACHE_BYTES_MAX)

    async def rebuild_if_needed(self) -> RebuildReport | None:
        """At an agent's start: rebuild when the store is blank and the bucket holds snapshots
        or objects, or complete a pending rebuild; None when there is nothing to do."""
        state = await self._retried(self._store.store_state)
        if state is StoreState.IN_USE:
            return None
        if state is StoreState.BLANK and not await self._bucket_holds_data():
            return None
        try:
            return await self.rebuild()
        except RebuildRefused:
            return None  # another agent rebuilt the store meanwhile: nothing left to do

    async def rebuild(self) -> RebuildReport:
        """Rebuild now. Raises RebuildRefused when the store is in use (also when another agent
        completed a rebuild meanwhile), StorageError when the bucket or the store fails
        (nothing is half done: start again)."""
        started_ms = self._clock.monotonic_ms()
        report = RebuildReport()
        state = await self._retried(self._store.store_state)
        if state is StoreState.IN_USE:
            raise RebuildRefused(_IN_USE)
        if state is StoreState.BLANK:
            snapshot = await self._newest_snapshot(report)
            dump = snapshot.dump if snapshot is not None else None
            began = await self._retried(lambda: self._store.begin_rebuild(dump, self._agent_id))
            if began is StoreState.IN_USE:  # another agent began and completed it meanwhile
                raise RebuildRefused(_IN_USE)
            report.began_here = began is StoreState.BLANK
        plan = await self._plan(report)
        report.completed_here = await self._retried(lambda: self._store.complete_rebuild(plan))
        report.elapsed_ms = self._clock.monotonic_ms() - started_ms
        _log_report(report)
        return report

    async def _bucket_holds_data(self) -> bool:
        for prefix in (SNAPSHOT_PREFIX, OBJECTS_PREFIX):
            if await self._retried(partial(self._objects.list_page, prefix, "", 1)):
                return True
        return False

    # ------------------------------------------------------------ the snapshot

    async def _newest_snapshot(self, report: RebuildReport) -> Snapshot | None:
        listed = await self._retried(lambda: self._objects.list(SNAPSHOT_PREFIX))
        numbered = sorted(
            ((seq, info.key) for info in listed if (seq := seq_of_key(info.key)) is not None),
            reverse=True,
        )
        for _, key in numbered:
            try:
                snapshot = decode_snapshot(await self._retried(partial(self._objects.get, key)))
            except (CorruptObject, ObjectNotFound) as damage:
                report.snapshots_damaged.append((key, str(damage)))
                log.warning("snapshot %s cannot be used, trying an older one: %s", key, damage)
                continue
            report.snapshot_key = key
            report.snapshot_rows = snapshot.dump.row_count()
            return snapshot
        return None

    # ------------------------------------------------------------ the footers

    async def _plan(self, report: RebuildReport) -> RebuildPlan:
        known = {o.key for o in await self._retried(self._leases.list_objects)}
        partitions = {p.tp: p for p in await self._retried(self._topics.list_partitions)}
        topics = {t.name: t.partition_count for t in await self._retried(self._topics.list_topics)}
        listed = await self._retried(lambda: self._objects.list(OBJECTS_PREFIX))
        snapshot_seqs = [
            seq
            for info in await self._retried(lambda: self._objects.list(SNAPSHOT_PREFIX))
            if (seq := seq_of_key(info.key)) is not None
        ]
        report.objects_listed = len(listed)
        new = [i for i in listed if i.key.endswith(OBJECT_SUFFIX) and i.key not in known]
        report.objects_new = len(new)
        footers = await self._read_footers(new, report)
        chains = _chains(footers, partitions)
        rebuilt, producer_id_seen = await self._rebuilt_partitions(chains, partitions)
        sizes = {info.key: info.size_bytes for info in new}
        used = sorted({s.object_key for p in rebuilt for s in p.segments})
        objects = [_object_record(key, footers[key], sizes[key]) for key in used]
        new_topics = _new_topics(rebuilt, topics)
        for chain_tp, chain in sorted(chains.items()):
            for skipped in chain.skipped:
                block = skipped.block
                where = (block.key, str(chain_tp), block.first_offset, block.last_offset)
                report.blocks_skipped.append((*where, skipped.why))
        report.objects_added = len(objects)
        report.segments_added = sum(len(p.segments) for p in rebuilt)
        report.partitions_extended = sum(1 for p in rebuilt if p.segments)
        report.topics_created = sorted(set(new_topics) - set(topics))
        return RebuildPlan(
            objects=objects,
            partitions=rebuilt,
            new_topics=new_topics,
            now_ms=self._clock.now_ms(),
            producer_id_seen=producer_id_seen,
            snapshot_seq_seen=max(snapshot_seqs, default=-1),
        )

    async def _read_footers(
        self, listed: list[ObjectInfo], report: RebuildReport
    ) -> dict[str, ObjectFooter]:
        footers: dict[str, ObjectFooter] = {}
        done = 0
        for start in range(0, len(listed), FOOTER_READS_IN_FLIGHT_MAX):
            batch = listed[start : start + FOOTER_READS_IN_FLIGHT_MAX]
            found = await asyncio.gather(*(self._footer(info.key, report) for info in batch))
            for info, footer in zip(batch, found, strict=True):
                if footer is not None:
                    footers[info.key] = footer
            done += len(batch)
            self._progress("footers", done, len(listed))
        return footers

    async def _footer(self, key: str, report: RebuildReport) -> ObjectFooter | None:
        try:
            return await self._retried(partial(self._reader.footer, key))
        except ObjectNotFound:
            return None  # deleted since it was listed (the reconciler): nothing refers to it
        except CorruptObject as damage:
            report.objects_unreadable.append((key, str(damage)))
            log.warning("object %s left out of the rebuild: %s", key, damage)
            return None

    # ------------------------------------------------------------ the blocks

    async def _rebuilt_partitions(
        self,
        chains: dict[TopicPartition, PartitionChain],
        partitions: dict[TopicPartition, PartitionRecord],
    ) -> tuple[list[RebuiltPartition], int]:
        """Each chain's segment rows, and the producer batches and transaction changes its
        blocks hold (read a window of blocks at a time, folded in offset order)."""
        effects: dict[TopicPartition, _Effects] = {}
        for tp, chain in sorted(chains.items()):
            open_txns = await self._open_txns(tp, partitions)
            effects[tp] = _Effects(PartitionTxns(open_txns, chain.start_offset))
        segments = [
            _segment(tp, block) for tp, chain in sorted(chains.items()) for block in chain.blocks
        ]
        for start in range(0, len(segments), FOOTER_READS_IN_FLIGHT_MAX):
            window = segments[start : start + FOOTER_READS_IN_FLIGHT_MAX]
            blocks = await asyncio.gather(
                *(self._retried(partial(self._reader.read_block, s)) for s in window)
            )
            for segment, block in zip(window, blocks, strict=True):
                effects[segment.tp].fold(block.raw)
            self._progress("blocks", start + len(window), len(segments))
        rebuilt = []
        for tp, chain in sorted(chains.items()):
            epochs = [b.leader_epoch for b in chain.blocks]
            epochs += [s.block.leader_epoch for s in chain.skipped]
            rebuilt.append(
                RebuiltPartition(
                    tp,
                    chain.start_offset,
                    chain.end_offset,
                    max(epochs, default=-1),
                    [_segment(tp, block) for block in chain.blocks],
                    effects[tp].produced,
                    effects[tp].changes,
                )
            )
        producer_id_seen = max((e.producer_id_seen for e in effects.values()), default=-1)
        return rebuilt, producer_id_seen

    async def _open_txns(
        self, tp: TopicPartition, partitions: dict[TopicPartition, PartitionRecord]
    ) -> dict[int, int]:
        if tp not in partitions:
            return {}
        return await self._retried(lambda: self._producers.list_open_txns(tp))

    async def _retried(self, call: Callable[[], Awaitable[T]]) -> T:
        """A bucket or store call, retried a few times while the failure may pass."""
        for attempt in range(1, STORE_ATTEMPTS_MAX + 1):
            try:
                return await call()
            except (ObjectNotFound, CorruptObject, RebuildRefused):
                raise
            except StorageError as error:
                if attempt == STORE_ATTEMPTS_MAX:
                    raise
                log.warning("rebuild: %s; retrying (attempt %d)", error, attempt + 1)
                await self._clock.sleep_ms(RETRY_BACKOFF_MS * attempt)
        raise AssertionError("unreachable")


class _Effects:
    """What one partition's blocks do to its producer and transaction state, in order."""

    def __init__(self, txns: PartitionTxns) -> None:
        self.txns = txns
        self.produced: list[ProducerBatch] = []
        self.changes: list[TxnChange] = []
        self.producer_id_seen = -1

    def fold(self, raw: bytes) -> None:
        for header, view in iter_batches(raw, from_producer=False):
            produced = producer_batch(header, header.base_offset)
            if produced is not None:
                self.produced.append(produced)
                self.producer_id_seen = max(self.producer_id_seen, produced.producer_id)
            change = txn_change(self.txns, header, view, header.base_offset)
            if change is not None:
                self.changes.append(change)


_IN_USE = (
    "the metadata store is in use (it has topics or objects): a rebuild from the bucket only "
    "fills a blank store. Point the agent at an empty database, or leave the store as it is."
)


def _quiet(step: str, done: int, total: int) -> None:
    """No progress shown."""


def _chains(
    footers: dict[str, ObjectFooter], partitions: dict[TopicPartition, PartitionRecord]
) -> dict[TopicPartition, PartitionChain]:
    found: dict[TopicPartition, list[FoundBlock]] = {}
    for key, footer in footers.items():
        for entry in footer.blocks:
            tp = TopicPartition(entry.topic, entry.partition)
            found.setdefault(tp, []).append(FoundBlock(key, entry))
    chains = {}
    for tp, blocks in found.items():
        known = partitions.get(tp)
        chains[tp] = plan_chain(None if known is None else known.durable_end_offset, blocks)
    return chains


def _segment(tp: TopicPartition, block: FoundBlock) -> SegmentRecord:
    segment = SegmentRecord.of_block(block.key, block.entry)
    assert segment.tp == tp, (tp, segment)
    return segment


def _object_record(key: str, footer: ObjectFooter, size_bytes: int) -> ObjectRecord:
    return ObjectRecord(key, footer.agent, footer.org, size_bytes, footer.created_ms)


def _new_topics(rebuilt: Sequence[RebuiltPartition], topics: dict[str, int]) -> dict[str, int]:
    """Topics to create or grow: the partition count the footers show, where it is more."""
    counts: dict[str, int] = {}
    for partition in rebuilt:
        tp = partition.tp
        counts[tp.topic] = max(counts.get(tp.topic, 0), tp.partition + 1)
    return {name: count for name, count in counts.items() if count > topics.get(name, 0)}


def _log_report(report: RebuildReport) -> None:
    log.warning(
        "metadata rebuilt from the bucket in %d ms%s: snapshot %s (%d rows), %d objects listed, "
        "%d new, %d added with %d segment rows over %d partitions, topics created: %s; "
        "%d blocks skipped, %d objects unreadable, %d snapshots damaged",
        report.elapsed_ms,
        "" if report.completed_here else " (completed by another agent first)",
        report.snapshot_key or "none",
        report.snapshot_rows,
        report.objects_listed,
        report.objects_new,
        report.objects_added,
        report.segments_added,
        report.partitions_extended,
        ", ".join(report.topics_created) or "none",
        len(report.blocks_skipped),
        len(report.objects_unreadable),
        len(report.snapshots_damaged),
    )
