"""Recovery at open: fence the leases of a lost WAL, then replay what the WAL kept against the
metadata store. Entries already durable are released, entries of the current lease epoch are
re-appended at their offsets, entries whose epoch moved on are dropped, counted
(`RecoveryStats.dropped_batches`, exported as a Prometheus counter) and logged per partition
with their epochs: never appended at new offsets."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from streamhouse.engine.partition_log import PartitionLog
from streamhouse.engine.reads import LedPartitions
from streamhouse.engine.wal import RecoveredEntry, Wal
from streamhouse.errors import NotLeader, UnknownTopicOrPartition
from streamhouse.kafka.batch_header import BatchHeader, validate_batch
from streamhouse.log.wal_format import (
    BatchEntry,
    EntryKind,
    decode_batch_entry,
    decode_truncate_entry,
)
from streamhouse.names import TopicPartition
from streamhouse.ports.disk import Disk
from streamhouse.ports.leases import LeaseStore

WAL_MARKER_FILE = "wal-owner"  # written once a disk holds this agent's WAL
log = logging.getLogger("streamhouse.recovery")

Surviving = dict[TopicPartition, list[tuple[BatchEntry, int]]]
"""Batch entries per partition with the WAL segment holding each, in WAL order."""


@dataclass
class RecoveryStats:
    """What the last WAL replay did."""

    voided_batches: int = 0  # failed writes cancelled by a truncate marker
    replayed_batches: int = 0
    already_durable_batches: int = 0
    dropped_batches: int = 0
    leases_fenced: int = 0  # moved to a new epoch because this disk held no WAL


class Reappend(Protocol):
    """Puts a replayed batch back at its offsets in the partition's tail (the log store)."""

    def __call__(
        self, plog: PartitionLog, header: BatchHeader, data: bytes, segment: int
    ) -> None: ...


async def fence_leases_of_a_lost_wal(
    disk: Disk, wal: Wal, leases: LeaseStore, agent_id: str, stats: RecoveryStats
) -> None:
    """On a disk this agent never wrote a WAL to (new, or wiped under a configured agent
    id), move every lease it holds to a new epoch before anything is appended: records
    it acknowledged from the lost WAL must not share an epoch with what comes next
    (DESIGN §6: an acks=1 loss is detectable through leader epochs). The marker is
    written after the fence, so a crash in between fences again, which is harmless."""
    if disk.exists(WAL_MARKER_FILE):
        return
    if not wal.has_segments_on_disk():  # a WAL from before markers is no loss
        stats.leases_fenced = await leases.fence_own_leases(agent_id)
    await disk.write_atomic(WAL_MARKER_FILE, agent_id.encode())


class WalReplay:
    """Replays recovered WAL entries into the partitions this agent leads."""

    def __init__(
        self, wal: Wal, partitions: LedPartitions, reappend: Reappend, stats: RecoveryStats
    ) -> None:
        self._wal = wal
        self._partitions = partitions
        self._reappend = reappend
        self._stats = stats

    async def replay(self, recovered: list[RecoveredEntry]) -> None:
        by_partition, voided = surviving_batches(recovered, self._wal.release)
        self._stats.voided_batches += voided
        for tp, entries in sorted(by_partition.items()):
            await self._replay_partition(tp, entries)

    async def _replay_partition(
        self, tp: TopicPartition, entries: list[tuple[BatchEntry, int]]
    ) -> None:
        try:
            plog = await self._partitions.partition(tp)
        except (NotLeader, UnknownTopicOrPartition) as error:
            self._drop(tp, entries, f"this agent leads it no more ({error})")
            return
        dropped = []
        for entry, segment in entries:
            header = validate_batch(entry.batch, from_producer=False)
            state = plog.state
            if header.next_offset <= state.durable_end_offset:
                self._stats.already_durable_batches += 1
                self._wal.release(segment)
            elif entry.leader_epoch != state.leader_epoch or header.base_offset != (
                state.log_end_offset
            ):
                dropped.append((entry, segment))
            else:
                self._reappend(plog, header, entry.batch, segment)
                self._stats.replayed_batches += 1
        if dropped:
            state = plog.state
            why = f"it is at epoch {state.leader_epoch}, offset {state.log_end_offset}"
            self._drop(tp, dropped, why)

    def _drop(self, tp: TopicPartition, entries: list[tuple[BatchEntry, int]], why: str) -> None:
        """Entries that can never be appended where they were acknowledged: released from the
        WAL, counted and logged, never written at other offsets."""
        for _, segment in entries:
            self._wal.release(segment)
        self._stats.dropped_batches += len(entries)
        epochs = sorted({entry.leader_epoch for entry, _ in entries})
        log.warning(
            "recovery dropped %d WAL batch(es) of %s written in epoch(s) %s: %s",
            len(entries),
            tp,
            ", ".join(map(str, epochs)),
            why,
        )


def surviving_batches(
    recovered: list[RecoveredEntry], release: Callable[[int], None]
) -> tuple[Surviving, int]:
    """Batch entries per partition after applying truncate markers, in WAL order, and how
    many entries the markers voided (their WAL references are released here)."""
    by_partition: Surviving = {}
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
