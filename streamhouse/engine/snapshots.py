"""The snapshot writer: after committed flushes, the whole metadata store goes to the bucket.

A flush that commits makes a snapshot owed. Owed snapshots are coalesced: one agent at a time
in the cluster writes one, at most once per `snapshot_interval_ms` of the store's time (the
jobs port grants the turn); an agent refused its turn keeps the debt and asks again an
interval later, so once flushes stop, the last snapshot written comes after the last commit
of every agent. A clean shutdown writes a final one when owed. Each snapshot gets a number
above every earlier one (its key sorts after theirs); the newest `snapshot_keep_count` are
kept and older ones deleted. The rebuild (engine/rebuild.py) reads them back.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from streamhouse.config import Settings
from streamhouse.engine.failure import AgentFailure
from streamhouse.errors import StorageError
from streamhouse.log.snapshot_format import (
    SNAPSHOT_PREFIX,
    Snapshot,
    encode_snapshot,
    seq_of_key,
    snapshot_key,
)
from streamhouse.ports.clock import Clock
from streamhouse.ports.jobs import JobClaims
from streamhouse.ports.object_store import ObjectInfo, ObjectStore
from streamhouse.ports.snapshots import SnapshotStore

SNAPSHOT_JOB = "snapshot"
log = logging.getLogger("streamhouse.snapshots")


@dataclass
class SnapshotStats:
    """Counters for metrics and tests."""

    written: int = 0
    bytes_written: int = 0
    refused_turns: int = 0  # another agent wrote one within the interval
    failures: int = 0
    pruned: int = 0


class SnapshotWriter:
    """Writes the snapshots this agent owes."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        objects: ObjectStore,
        agent_id: str,
        *,
        snapshots: SnapshotStore,
        jobs: JobClaims,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._objects = objects
        self._store = snapshots
        self._jobs = jobs
        self._agent_id = agent_id
        self._owed = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.stats = SnapshotStats()
        self.last_seq = -1  # of the last snapshot this agent wrote

    @property
    def enabled(self) -> bool:
        return self._settings.snapshot_interval_ms > 0

    def flushed(self) -> None:
        """A flush committed: the store holds something no snapshot has."""
        self._owed = True
        self._wake.set()

    def start(self, failure: AgentFailure) -> None:
        if not self.enabled:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="snapshots")
        failure.watch(self._task, stopping=lambda: self._stopping)

    async def stop(self, *, final: bool = True) -> None:
        """Stop writing; with `final`, write one last snapshot if one is owed (whatever the
        interval: a clean shutdown leaves the newest state in the bucket)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if final and self.enabled and self._owed:
            try:
                await self.write_once()
            except StorageError as error:
                log.warning("the final snapshot was not written: %s", error)

    async def _run(self) -> None:
        interval_ms = self._settings.snapshot_interval_ms
        while True:
            if not self._owed:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                granted = await self._jobs.claim_job(SNAPSHOT_JOB, self._agent_id, interval_ms)
                if granted:
                    await self.write_once()
                else:
                    self.stats.refused_turns += 1
            except StorageError as error:
                self.stats.failures += 1
                log.warning("snapshot failed, retrying in %d ms: %s", interval_ms, error)
            await self._clock.sleep_ms(interval_ms)

    async def write_once(self) -> str:
        """Dump the store and put it in the bucket now; returns its key. Raises StorageError
        (the debt stays)."""
        self._owed = False
        try:
            seq = await self._store.next_snapshot_seq()
            dump = await self._store.dump_metadata()
            data = encode_snapshot(Snapshot(seq, self._agent_id, self._clock.now_ms(), dump))
            key = snapshot_key(seq)
            await self._objects.put(key, data)
        except BaseException:
            self._owed = True
            raise
        self.stats.written += 1
        self.stats.bytes_written += len(data)
        self.last_seq = seq
        log.info("snapshot %s written: %d rows, %d bytes", key, dump.row_count(), len(data))
        await self._prune(seq)
        return key

    async def _prune(self, newest_seq: int) -> None:
        """Delete snapshots older than the newest `snapshot_keep_count` (best effort: one left
        behind goes at the next snapshot)."""
        try:
            listed = await self._objects.list(SNAPSHOT_PREFIX)
            await self._delete_older(newest_seq, listed)
        except StorageError as error:
            log.warning("old snapshots not pruned (the next snapshot will): %s", error)

    async def _delete_older(self, newest_seq: int, listed: list[ObjectInfo]) -> None:
        numbered = sorted(
            (seq, info.key) for info in listed if (seq := seq_of_key(info.key)) is not None
        )
        kept_from = len(numbered) - self._settings.snapshot_keep_count
        for seq, key in numbered[: max(0, kept_from)]:
            if seq < newest_seq:
                await self._objects.delete(key)
                self.stats.pruned += 1
