"""The reconciler over real components: a local object store directory and a SQLite metadata
store, with a virtual clock for the reconciler and file times set to match it; pages of two
or three keys so that every walk crosses page boundaries."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sim.clock import VirtualClock
from sim.object_store import ObjectStoreFaults, SimObjectStore
from sim.rng import SeededRng
from streamhouse.config import Settings
from streamhouse.engine.damaged_objects import Damage, DamagedObjects, OffsetRange
from streamhouse.engine.failure import AgentFailure
from streamhouse.engine.reconciler import JOB_NAME, ReconcileLoop, Reconciler, ReconcileReport
from streamhouse.errors import ObjectStoreUnavailable
from streamhouse.io.local_object_store import LocalObjectStore
from streamhouse.io.sql.store import SqlMetadataStore, open_sql_metadata
from streamhouse.io.sql.store_clock import host_clock
from streamhouse.kafka.records import SimpleRecord, build_batch
from streamhouse.log.object_format import BlockSpec, encode_object
from streamhouse.names import TopicPartition
from streamhouse.ports.jobs import JobClaims
from streamhouse.ports.leases import FlushCommit, ObjectRecord, ObjectRef, SegmentRecord

T = TypeVar("T")
NOW_MS = 1_700_000_000_000
GRACE_MS = 3_600_000
HOUR_AGO_MS = NOW_MS - GRACE_MS
TOPIC = "t"
TP0, TP1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class VirtualTimeBucket(LocalObjectStore):
    """A local bucket whose clock is the test's virtual one: what is put is stamped with its
    time (the reconciler's clock probe too)."""

    def __init__(self, root: str, clock: VirtualClock) -> None:
        super().__init__(root)
        self._clock = clock

    async def put(self, key: str, data: bytes) -> None:
        await super().put(key, data)
        stamp_ns = self._clock.now_ms() * 1_000_000
        os.utime(os.path.join(self.root, key), ns=(stamp_ns, stamp_ns))


class World:
    """A bucket directory, a SQLite store with topic `t` (2 partitions, leased by agent-a),
    and a clock at NOW_MS; objects are written and committed the way a flush does."""

    def __init__(self, root: Path, page_keys_max: int = 2) -> None:
        self.root = root / "objects"
        self.clock = VirtualClock(start_wall_ms=NOW_MS)
        self.objects = VirtualTimeBucket(str(self.root), self.clock)
        self.metadata: SqlMetadataStore = open_sql_metadata(
            f"sqlite:///{root / 'meta.db'}", store_clock=host_clock(self.clock.now_ms)
        )
        self.settings = Settings(reconcile_grace_ms=GRACE_MS, reconcile_page_keys_max=page_keys_max)
        self.damaged = DamagedObjects()
        self.next_offset = {TP0: 0, TP1: 0}
        run(self._topic())

    async def _topic(self) -> None:
        await self.metadata.create_topic(TOPIC, 2, {}, NOW_MS)
        for tp in (TP0, TP1):
            assert await self.metadata.acquire_lease(tp, "agent-a", 60_000) is not None

    def reconciler(self, **overrides: Any) -> Reconciler:
        settings = self.settings.with_overrides(**overrides)
        return Reconciler(settings, self.clock, self.objects, self.metadata, self.damaged)

    def reconcile(self, dry_run: bool = False, verify: bool = False) -> ReconcileReport:
        return run(self.reconciler().run(dry_run=dry_run, verify=verify))

    def put(self, key: str, data: bytes, modified_ms: int) -> None:
        run(self.objects.put(key, data))
        self.touch(key, modified_ms)

    def touch(self, key: str, modified_ms: int) -> None:
        os.utime(self.root / key, ns=(modified_ms * 1_000_000, modified_ms * 1_000_000))

    def flush(
        self,
        name: str,
        modified_ms: int = HOUR_AGO_MS - 1,
        created_ms: int | None = None,
        tps: tuple[TopicPartition, ...] = (TP0, TP1),
        epoch: int = 1,
        records: int = 3,
    ) -> str:
        """An object holding `records` records of each of `tps`, uploaded and committed (epoch
        other than 1: fenced, its row is left without segment rows)."""
        key = f"orgs/o/objects/20231114/agent-a-{name}.obj"
        blocks = []
        for tp in tps:
            base = self.next_offset[tp] if epoch == 1 else 0
            batch = build_batch(
                [SimpleRecord(None, f"{tp}-{i}".encode(), (), 5) for i in range(records)],
                base_offset=base,
            )
            blocks.append(BlockSpec(tp.topic, tp.partition, 1, base, base + records - 1, 5, batch))
            if epoch == 1:
                self.next_offset[tp] = base + records
        created = modified_ms if created_ms is None else created_ms
        data, footer = encode_object(blocks, "o", "agent-a", created)
        self.put(key, data, modified_ms)
        rows = [
            SegmentRecord(
                b.topic,
                b.partition,
                b.first_offset,
                b.last_offset,
                1,
                b.max_timestamp_ms,
                key,
                b.position,
                b.length,
            )
            for b in footer.blocks
        ]
        commit = FlushCommit(
            ObjectRecord(key, "agent-a", "o", len(data), created),
            rows,
            {tp: epoch for tp in tps},
        )
        run(self.metadata.commit_flush(commit))
        return key

    def bucket(self, prefix: str = "orgs/") -> list[str]:
        """The flushed objects' keys (the reconciler's clock probe lives beside them)."""
        return [info.key for info in run(self.objects.list(prefix))]

    def rows(self) -> list[str]:
        return [ref.key for ref in run(self.metadata.list_object_refs("", 1000))]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    opened = World(tmp_path)
    yield opened
    run(opened.metadata.close())


def _counts(report: ReconcileReport) -> dict[str, int]:
    return {
        name: value
        for name, value in report.as_json().items()
        if isinstance(value, int) and not isinstance(value, bool) and value and name != "elapsed_ms"
    }


@pytest.mark.parametrize("page_keys_max", [1, 2, 3, 1000])
def test_a_consistent_bucket_changes_nothing(tmp_path: Path, page_keys_max: int) -> None:
    world = World(tmp_path, page_keys_max)
    keys = [world.flush(f"{index:02}") for index in range(7)]
    report = world.reconcile()
    assert _counts(report) == {"listed": 7, "referenced": 7}
    assert report.damaged == [] and not report.damage_found
    assert world.bucket() == keys
    verified = world.reconcile(verify=True)
    assert _counts(verified) == {"listed": 7, "referenced": 7, "blocks_verified": 14}
    run(world.metadata.close())


def test_orphans_past_the_grace_are_deleted_and_younger_ones_kept(world: World) -> None:
    referenced = world.flush("00-referenced")
    # uploads whose commit never came: one exactly at the grace, one a millisecond past it
    at_grace = "orgs/o/objects/20231114/agent-a-01-at-grace.obj"
    past_grace = "orgs/o/objects/20231114/agent-a-02-past-grace.obj"
    young = "orgs/o/objects/20231114/agent-a-03-young.obj"
    world.put(at_grace, b"x" * 10, HOUR_AGO_MS)
    world.put(past_grace, b"y" * 11, HOUR_AGO_MS - 1)
    world.put(young, b"z" * 12, NOW_MS - 5)
    # a commit whose partitions were all fenced: a row nothing points into, and its object
    fenced = world.flush("04-fenced", epoch=7)
    # not the reconciler's: never touched, however old
    world.put("metadata/snapshots/s-1.json", b"{}", 0)
    world.put("orgs-other/x.obj", b"{}", 0)
    fenced_bytes = (world.root / fenced).stat().st_size

    report = world.reconcile()
    assert _counts(report) == {
        "listed": 5,
        "referenced": 1,
        "orphans_deleted": 2,
        "orphans_kept_in_grace": 2,
        "bytes_freed": 11 + fenced_bytes,
    }
    assert world.bucket("") == [
        "metadata/reconciler-clock-probe",
        "metadata/snapshots/s-1.json",
        "orgs-other/x.obj",
        referenced,
        at_grace,
        young,
    ]
    assert world.rows() == [referenced]


def test_the_younger_of_upload_and_row_counts(world: World) -> None:
    # an old file with a young row (and the other way round): both in their grace
    young_row = world.flush("00", modified_ms=0, created_ms=NOW_MS - 10, epoch=9)
    young_file = world.flush("01", modified_ms=NOW_MS - 10, created_ms=0, epoch=9)
    report = world.reconcile()
    assert _counts(report) == {"listed": 2, "orphans_kept_in_grace": 2}
    assert world.rows() == [young_row, young_file]
    world.clock.advance_ms(GRACE_MS + 1)
    assert _counts(world.reconcile())["orphans_deleted"] == 2
    assert world.bucket() == [] and world.rows() == []


def test_an_object_whose_rows_went_is_deleted_a_grace_after_they_went(world: World) -> None:
    old = world.flush("00-old", tps=(TP0,))  # created and uploaded past the grace already
    kept = world.flush("01-kept", tps=(TP0,))
    assert run(world.metadata.set_log_start_offset(TP0, 3)) == 3  # 00-old's rows go now
    world.clock.advance_ms(GRACE_MS)
    assert _counts(world.reconcile()) == {"listed": 2, "referenced": 1, "orphans_kept_in_grace": 1}
    world.clock.advance_ms(1)
    report = world.reconcile()
    assert report.orphans_deleted == 1
    assert world.bucket() == [kept] and world.rows() == [kept]
    assert old not in world.bucket()


def test_dry_run_deletes_nothing_and_a_second_run_changes_nothing(world: World) -> None:
    world.flush("00")
    world.put("orgs/o/objects/20231114/orphan-1.obj", b"a" * 5, 0)
    world.put("orgs/o/objects/20231114/orphan-2.obj", b"b" * 7, 0)
    world.flush("03-fenced", epoch=5)
    before = (world.bucket(), world.rows())
    dry = world.reconcile(dry_run=True)
    assert (world.bucket(), world.rows()) == before
    real = world.reconcile()
    assert _counts(dry) == _counts(real)
    assert real.orphans_deleted == 3
    again = world.reconcile()
    assert _counts(again) == {"listed": 1, "referenced": 1}
    assert (world.bucket(), world.rows()) == ([before[0][0]], [before[0][0]])


def test_a_row_whose_orphan_object_is_gone_is_forgotten_after_the_grace(world: World) -> None:
    # the crash between deleting an orphan's object and its row, finished by the next run
    key = world.flush("00", epoch=4)
    run(world.objects.delete(key))
    report = world.reconcile()
    assert _counts(report) == {"rows_forgotten": 1}
    assert world.rows() == []


def test_missing_objects_are_reported_with_their_offsets(world: World) -> None:
    world.flush("00")
    gone = world.flush("01", tps=(TP1,), records=4)
    world.flush("02")
    run(world.objects.delete(gone))
    report = world.reconcile()
    assert _counts(report) == {"listed": 2, "referenced": 2, "missing": 1}
    assert report.damage_found
    [found] = report.damaged
    assert (found.key, found.damage) == (gone, Damage.MISSING)
    assert found.ranges == (OffsetRange(TOPIC, 1, 3, 6),)
    assert gone in world.rows() and len(world.rows()) == 3  # reported, never deleted
    assert [d.key for d in world.damaged.listed()] == [gone]


def test_a_size_that_differs_from_the_row_is_corrupt(world: World) -> None:
    key = world.flush("00")
    data = run(world.objects.get(key))
    world.put(key, data[:-3], HOUR_AGO_MS)
    report = world.reconcile()
    assert _counts(report) == {"listed": 1, "referenced": 1, "corrupt": 1}
    assert report.damaged[0].damage is Damage.CORRUPT
    assert "bytes" in report.damaged[0].detail
    assert report.damaged[0].ranges == (
        OffsetRange(TOPIC, 0, 0, 2),
        OffsetRange(TOPIC, 1, 0, 2),
    )


def test_verify_reads_blocks_and_finds_a_flipped_byte(world: World) -> None:
    world.flush("00")
    key = world.flush("01")
    data = bytearray(run(world.objects.get(key)))
    data[10] ^= 0xFF  # inside the first block: same size, bad checksum
    world.put(key, bytes(data), HOUR_AGO_MS)
    assert not world.reconcile().damage_found  # a listing cannot see it
    report = world.reconcile(verify=True)
    assert _counts(report) == {"listed": 2, "referenced": 2, "corrupt": 1, "blocks_verified": 2}
    assert report.damaged[0].key == key
    assert "checksum" in report.damaged[0].detail
    assert [d.key for d in world.damaged.listed()] == [key]


def test_reads_keep_their_corrupt_finds_until_a_verifying_run(world: World) -> None:
    key = world.flush("00")
    rows = run(world.metadata.object_segments(key))
    error = world.damaged.found_by_read(rows[0], ValueError("fails its checksum"))
    assert error.code == 2 and key in str(error) and "offsets 0..2 of t-0" in str(error)
    world.reconcile()
    assert [d.damage for d in world.damaged.listed()] == [Damage.CORRUPT]
    world.reconcile(verify=True)
    assert world.damaged.listed() == []


def test_a_failing_store_fails_the_run_and_deletes_nothing(world: World) -> None:
    broken = SimObjectStore(None, SeededRng(3), ObjectStoreFaults(unavailable_rate=1.0))
    reconciler = Reconciler(world.settings, world.clock, broken, world.metadata)
    with pytest.raises(ObjectStoreUnavailable):
        run(reconciler.run())
    assert (reconciler.stats.runs, reconciler.stats.runs_failed) == (0, 1)


class Claims(JobClaims):
    def __init__(self, granted: bool) -> None:
        self.granted = granted
        self.asked: list[tuple[str, str, int]] = []

    async def claim_job(self, name: str, agent: str, interval_ms: int) -> bool:
        self.asked.append((name, agent, interval_ms))
        return self.granted


def test_the_loop_runs_when_claimed_and_survives_a_failing_store(world: World) -> None:
    world.put("orgs/o/objects/20231114/orphan.obj", b"a", 0)

    async def main() -> None:
        settings = world.settings.with_overrides(reconcile_interval_ms=1_000)
        claims = Claims(granted=False)
        loop = ReconcileLoop(settings, world.clock, world.reconciler(), claims, "agent-a")
        assert await loop.run_once() is None
        assert claims.asked == [(JOB_NAME, "agent-a", 1_000)]
        claims.granted = True
        failure = AgentFailure()
        healthy = loop.reconciler.objects
        loop.reconciler.objects = SimObjectStore(
            None, SeededRng(1), ObjectStoreFaults(unavailable_rate=1.0)
        )
        loop.start(failure)
        for _ in range(3):
            world.clock.advance_ms(1_000)
            await asyncio.sleep(0.05)
        assert loop.reconciler.stats.runs_failed >= 2 and not failure.failed
        loop.reconciler.objects = healthy
        world.clock.advance_ms(1_000)
        for _ in range(500):  # the healthy run's file and SQLite calls run in threads
            if loop.reconciler.stats.runs:
                break
            await asyncio.sleep(0.01)
        await loop.stop()
        assert not failure.failed
        assert loop.reconciler.stats.orphans_deleted == 1

    run(main())


def test_an_old_upload_committed_after_its_rows_were_read_is_kept(world: World) -> None:
    """A flush whose commit came more than the grace after its upload (a metadata store out
    for that long), between the reconciler's page of rows and its turn at the object."""
    key = world.flush("00")
    read_before = run(world.metadata.list_object_refs("", 1000))  # the store's answer then
    late = world.flush("01")

    async def rows_read_before(after_key: str = "", limit: int = 1000) -> list[ObjectRef]:
        return [ref for ref in read_before if ref.key > after_key][:limit]

    world.metadata.list_object_refs = rows_read_before  # type: ignore[method-assign]
    report = run(world.reconciler().run())
    assert _counts(report) == {"listed": 2, "referenced": 2}
    assert world.bucket() == [key, late]


def test_ages_are_judged_by_the_buckets_clock_not_the_agents(world: World) -> None:
    """An agent whose clock runs an hour ahead still keeps a young upload: the bucket's own
    time (the clock probe's last-modified time) tells the object's age."""
    young = "orgs/o/objects/20231114/agent-b-young.obj"
    world.put(young, b"an upload whose commit is coming", NOW_MS - 5)
    ahead = VirtualClock(start_wall_ms=NOW_MS + 2 * GRACE_MS)
    settings = world.settings
    report = run(Reconciler(settings, ahead, world.objects, world.metadata).run())
    assert (report.orphans_deleted, report.orphans_kept_in_grace) == (0, 1)
    assert young in world.bucket()
