"""The reconciler: walks the bucket and the metadata store's object rows side by side, deletes
orphan objects once past the grace period, and reports objects that segment rows point into
but that are missing or corrupt (DESIGN §2, "Metadata vs data consistency").

Both walks are paged and sorted by key, so the diff is a merge-join of two sorted streams:
memory is a page of each, never the bucket. Only keys under `orgs/` are the reconciler's
(objects written by flushes); other prefixes (metadata snapshots) are never touched.

An object is an *orphan* when no segment row points into it: in the bucket without a row (a
flush that crashed between its upload and its commit, or whose commit was fenced), or with
a row that no segment row references any more (a deleted topic; rows below a raised log
start; rows a rewrite swapped out). It is deleted, from the bucket first and then its row,
only when it is more than `reconcile_grace_ms` old: the bucket judges its last-modified time
(each run first puts a clock probe and reads the bucket's "now" back, so an agent's clock
that is off cannot age an object), the agent its row's creation time, the store the time its
last segment row went (a read that listed the rows just before may still be reading it), and
the youngest of these counts. A younger one may belong to an upload whose commit is still
coming. A run is idempotent: a second run right after finds nothing more to do.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from streamhouse.config import Settings
from streamhouse.engine.damaged_objects import (
    Damage,
    DamagedObject,
    DamagedObjects,
    offset_ranges,
)
from streamhouse.engine.failure import AgentFailure, BackgroundTask
from streamhouse.engine.object_reader import ObjectReader
from streamhouse.errors import CorruptObject, ObjectNotFound, ObjectStoreUnavailable, StorageError
from streamhouse.log.ids import OBJECTS_PREFIX
from streamhouse.ports.clock import Clock
from streamhouse.ports.jobs import JobClaims
from streamhouse.ports.leases import LeaseStore, ObjectRef
from streamhouse.ports.object_store import ObjectInfo, ObjectStore

log = logging.getLogger("streamhouse.reconciler")

# Damaged objects a report lists one by one (its counts stay exact beyond it), so a bucket
# wiped under its metadata gives a report of bounded size
REPORT_DAMAGED_MAX = 1_000
JOB_NAME = "reconcile"
# Put (and overwritten) at the start of every run, outside `orgs/`: its last-modified time is
# the bucket's "now", which ages are judged by
CLOCK_PROBE_KEY = "metadata/reconciler-clock-probe"


@dataclass
class ReconcileReport:
    """What one run found and did. In a dry run, `orphans_deleted`, `rows_forgotten` and
    `bytes_freed` say what a real run would have done."""

    dry_run: bool = False
    verified: bool = False
    listed: int = 0  # objects listed in the bucket under orgs/
    referenced: int = 0  # objects that segment rows point into
    orphans_deleted: int = 0
    orphans_kept_in_grace: int = 0
    rows_forgotten: int = 0  # rows of orphans no longer in the bucket (deleted with them)
    missing: int = 0
    corrupt: int = 0
    bytes_freed: int = 0
    blocks_verified: int = 0
    damaged: list[DamagedObject] = field(default_factory=list)  # the first REPORT_DAMAGED_MAX
    elapsed_ms: int = 0

    @property
    def damage_found(self) -> bool:
        return self.missing + self.corrupt > 0

    def as_json(self) -> dict[str, Any]:
        """The report as plain JSON values (for `--output json` and logs)."""
        return asdict(self)


@dataclass
class ReconcileStats:
    """Counters over every run of this agent's reconciler (exported as metrics)."""

    runs: int = 0
    runs_failed: int = 0
    orphans_deleted: int = 0
    bytes_freed: int = 0


@dataclass(frozen=True)
class _Clocks:
    """How old things are, each by the clock that stamped it: an object's last-modified time
    by the bucket's own clock (read from the clock probe this run wrote), a row's creation
    time by this agent's."""

    bucket_now_ms: int
    agent_now_ms: int

    def bucket_age_ms(self, listed: ObjectInfo) -> int:
        return self.bucket_now_ms - listed.modified_ms

    def row_age_ms(self, row: ObjectRef) -> int:
        """Since the row was written, or since its last segment row went if that is later
        (a read that listed the rows just before may still be reading it)."""
        created_age_ms = self.agent_now_ms - row.created_ms
        if row.released_age_ms is None:
            return created_age_ms
        return min(created_age_ms, row.released_age_ms)


class _Run:
    """One pass: the two sorted walks, the merge, and what each key turns out to be."""

    def __init__(
        self,
        owner: Reconciler,
        report: ReconcileReport,
        clocks: _Clocks,
        on_page: Callable[[ReconcileReport], None] | None,
    ) -> None:
        self._objects = owner.objects
        self._leases = owner.leases
        self._page_keys = owner.page_keys
        self._grace_ms = owner.grace_ms
        self._report = report
        self._clocks = clocks
        self._on_page = on_page
        # A fresh reader without a cache: each verified block is read from the bucket
        self._reader = ObjectReader(self._objects)

    async def merge(self) -> None:
        bucket = self._bucket()
        rows = self._rows()
        listed = await anext(bucket, None)
        row = await anext(rows, None)
        while listed is not None or row is not None:
            if row is None or (listed is not None and listed.key < row.key):
                assert listed is not None
                age_ms = self._clocks.bucket_age_ms(listed)
                await self._orphan(listed.key, listed.size_bytes, age_ms, None, True)
                listed = await anext(bucket, None)
            elif listed is None or row.key < listed.key:
                await self._row_only(row)
                row = await anext(rows, None)
            else:
                await self._both(listed, row)
                listed, row = await anext(bucket, None), await anext(rows, None)

    async def _bucket(self) -> AsyncIterator[ObjectInfo]:
        after = ""
        while True:
            page = await self._objects.list_page(OBJECTS_PREFIX, after, self._page_keys)
            self._report.listed += len(page)
            if self._on_page is not None:
                self._on_page(self._report)
            for info in page:
                yield info
            if len(page) < self._page_keys:
                return
            after = page[-1].key

    async def _rows(self) -> AsyncIterator[ObjectRef]:
        after = OBJECTS_PREFIX  # every key under the prefix sorts after the prefix itself
        while True:
            page = await self._leases.list_object_refs(after, self._page_keys)
            for ref in page:
                if not ref.key.startswith(OBJECTS_PREFIX):
                    return  # past the prefix: the rest sort after it too
                yield ref
            if len(page) < self._page_keys:
                return
            after = page[-1].key

    async def _both(self, listed: ObjectInfo, row: ObjectRef) -> None:
        if row.segment_count == 0:
            age_ms = min(self._clocks.bucket_age_ms(listed), self._clocks.row_age_ms(row))
            await self._orphan(listed.key, listed.size_bytes, age_ms, row, True)
            return
        self._report.referenced += 1
        if listed.size_bytes != row.size_bytes:
            detail = f"{listed.size_bytes} bytes in the bucket, {row.size_bytes} when written"
            await self._damaged(row.key, Damage.CORRUPT, detail)
        elif self._report.verified:
            await self._verify(row.key)

    async def _row_only(self, row: ObjectRef) -> None:
        if row.segment_count == 0:
            await self._orphan(row.key, 0, self._clocks.row_age_ms(row), row, False)
            return
        # Listed before its upload, committed before this page of rows was read? Look again.
        try:
            await self._objects.get_range(row.key, 0, 0)
        except ObjectNotFound as error:
            await self._damaged(row.key, Damage.MISSING, f"not in the bucket: {error}")
            return
        self._report.referenced += 1

    async def _orphan(
        self, key: str, size_bytes: int, age_ms: int, row: ObjectRef | None, in_bucket: bool
    ) -> None:
        report = self._report
        if age_ms <= self._grace_ms:
            report.orphans_kept_in_grace += 1
            return
        if not report.dry_run:
            # Committed since its page of rows was read (a flush retried past the grace)? Looked
            # up again right before deleting only: a dry run would pay it for every orphan
            if row is None and await self._leases.object_segments(key):
                report.referenced += 1
                return
            if in_bucket:  # the bucket first: a crash between leaves a row the next run forgets
                await self._objects.delete(key)
            if row is not None and not await self._leases.forget_object(key):
                log.warning("orphan %s gained segment rows while it was deleted", key)
        if in_bucket:
            report.orphans_deleted += 1
            report.bytes_freed += size_bytes
        else:
            report.rows_forgotten += 1

    async def _verify(self, key: str) -> None:
        """Read the footer and every block the object's rows point at: each must match its
        row and pass its checksum."""
        for row in await self._leases.object_segments(key):
            try:
                await self._reader.read_block(row)
            except CorruptObject as error:
                await self._damaged(key, Damage.CORRUPT, str(error))
                return
            except ObjectNotFound as error:
                await self._damaged(key, Damage.MISSING, f"gone while verified: {error}")
                return
            self._report.blocks_verified += 1

    async def _damaged(self, key: str, damage: Damage, detail: str) -> None:
        rows = await self._leases.object_segments(key)
        if not rows:
            return  # its rows went meanwhile (a deleted topic): nothing reads it any more
        report = self._report
        if damage is Damage.MISSING:
            report.missing += 1
        else:
            report.corrupt += 1
        if len(report.damaged) < REPORT_DAMAGED_MAX:
            found = DamagedObject(key, damage, detail, offset_ranges(rows), "reconcile")
            log.warning("reconcile found damage: %s", found.describe())
            report.damaged.append(found)


class Reconciler:
    """Diffs the bucket against the metadata store and settles what it may (see module)."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        objects: ObjectStore,
        leases: LeaseStore,
        damaged: DamagedObjects | None = None,
    ) -> None:
        self.objects = objects
        self.leases = leases
        self.page_keys = settings.reconcile_page_keys_max
        self.grace_ms = settings.reconcile_grace_ms
        self._clock = clock
        self.damaged = damaged or DamagedObjects()
        self.stats = ReconcileStats()

    async def _bucket_now_ms(self) -> int:
        """The bucket's time now: the last-modified time of a probe object put for it (an
        agent's clock may be off; an orphan's age must not be). Raises StorageError."""
        await self.objects.put(CLOCK_PROBE_KEY, b"")
        listed = await self.objects.list_page(CLOCK_PROBE_KEY, "", 1)
        if not listed or listed[0].key != CLOCK_PROBE_KEY:  # the store lost a write it took
            raise ObjectStoreUnavailable("the reconciler's clock probe is not in the bucket")
        return listed[0].modified_ms

    async def run(
        self,
        dry_run: bool = False,
        verify: bool = False,
        on_page: Callable[[ReconcileReport], None] | None = None,
    ) -> ReconcileReport:
        """One pass over the bucket and the object rows. `dry_run`: delete nothing, report
        what would be deleted. `verify`: also read every referenced object's footer and
        blocks. `on_page` is told the report so far after each page of the bucket. Raises
        StorageError when a store fails (nothing half-done is left: a deletion is the
        bucket's object first, its row second, and the next run finishes either)."""
        started_ms = self._clock.monotonic_ms()
        report = ReconcileReport(dry_run=dry_run, verified=verify)
        try:
            clocks = _Clocks(await self._bucket_now_ms(), self._clock.now_ms())
            await _Run(self, report, clocks, on_page).merge()
        except StorageError:
            self.stats.runs_failed += 1
            raise
        report.elapsed_ms = self._clock.monotonic_ms() - started_ms
        self.stats.runs += 1
        if not dry_run:
            self.stats.orphans_deleted += report.orphans_deleted
            self.stats.bytes_freed += report.bytes_freed
        self.damaged.update_from_run(report.damaged, verify)
        log.info(
            "reconciled %d objects in %d ms%s: %d referenced, %d orphans deleted (%d bytes), "
            "%d kept in grace, %d missing, %d corrupt",
            report.listed,
            report.elapsed_ms,
            " (dry run)" if dry_run else "",
            report.referenced,
            report.orphans_deleted,
            report.bytes_freed,
            report.orphans_kept_in_grace,
            report.missing,
            report.corrupt,
        )
        return report


class ReconcileLoop:
    """The background reconciler: every `reconcile_interval_ms`, the one agent of the cluster
    that claims the job runs a pass; a failed pass is logged and retried at the next one."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        reconciler: Reconciler,
        claims: JobClaims,
        agent_id: str,
    ) -> None:
        assert settings.reconcile_interval_ms > 0, "the reconciler is off"
        self._interval_ms = settings.reconcile_interval_ms
        self._clock = clock
        self.reconciler = reconciler
        self._claims = claims
        self._agent_id = agent_id
        self._task = BackgroundTask("reconciler")

    def start(self, failure: AgentFailure) -> None:
        self._task.start(failure, self._loop())

    async def stop(self) -> None:
        await self._task.stop()

    async def run_once(self) -> ReconcileReport | None:
        """A pass if this agent claims the job now, else None. Raises StorageError."""
        if not await self._claims.claim_job(JOB_NAME, self._agent_id, self._interval_ms):
            return None
        return await self.reconciler.run()

    async def _loop(self) -> None:
        while True:
            await self._clock.sleep_ms(self._interval_ms)
            try:
                await self.run_once()
            except StorageError as error:  # retried at the next interval
                log.warning("reconcile failed, retrying in %d ms: %s", self._interval_ms, error)
