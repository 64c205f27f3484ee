"""Retention (engine/retention.py) over a real log store: SQLite metadata through the real SQL
adapter (the simulator's in-memory one, so its faults can fail it), a local bucket directory,
a virtual clock. Each flush here commits one row per partition, so rows are counted in
flushes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from sim.clock import VirtualClock
from sim.disk import SimDisk
from sim.metadata import MetadataFaults, SimMetadataStore
from sim.rng import SeededRng
from streamhouse.config import Settings
from streamhouse.engine import retention as retention_module
from streamhouse.engine.failure import AgentFailure
from streamhouse.engine.log_store import LogStore
from streamhouse.engine.reconciler import Reconciler
from streamhouse.engine.retention import Retention
from streamhouse.errors import MetadataUnavailable, OffsetOutOfRange
from streamhouse.io.local_object_store import LocalObjectStore
from streamhouse.kafka.batch_header import parse_header
from streamhouse.kafka.records import SimpleRecord, build_batch, decode_records
from streamhouse.log.retention import RetentionPolicy, retained_log_start
from streamhouse.names import TopicPartition
from tests.unit.log_world import one_store_log

DAY_MS = 24 * 3_600_000
HOUR_MS = 3_600_000
GRACE_MS = 60_000
TOPIC = "t"
TP0, TP1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


class World:
    """Agent "a"'s log store leading both partitions of topic `t` (created with `configs`),
    and a retention service over it."""

    def __init__(self, root: Path, interval_ms: int = 1_000) -> None:
        rng = SeededRng(5)
        self.clock = VirtualClock()
        self.settings = Settings(
            retention_check_interval_ms=interval_ms, reconcile_grace_ms=GRACE_MS
        )
        self.disk = SimDisk(rng.fork("disk"))
        self.bucket = root / "objects"
        self.objects = LocalObjectStore(str(self.bucket))
        self.metadata = SimMetadataStore(rng.fork("metadata"), clock=self.clock)
        self.log: LogStore = one_store_log(
            self.settings, self.clock, rng, self.disk, self.objects, self.metadata, "a"
        )
        self.retention = Retention(
            self.settings, self.clock, self.log, self.metadata, self.metadata
        )

    async def open(self, configs: dict[str, str], partitions: tuple[TopicPartition, ...]) -> None:
        await self.metadata.create_topic(TOPIC, 2, configs, self.clock.now_ms())
        await self.log.open(run_background=False)
        for tp in partitions:
            await self.log.partition(tp)

    async def flush(self, tp: TopicPartition, values: list[bytes], *ages_ms: int) -> None:
        """One batch of `values` stamped `ages_ms` ago (the last age for the rest), synced
        and flushed: one more row."""
        await self.append(tp, values, *ages_ms)
        await self.log.flusher.flush_once()

    async def append(self, tp: TopicPartition, values: list[bytes], *ages_ms: int) -> None:
        now_ms = self.clock.now_ms()
        records = [
            SimpleRecord(None, value, (), now_ms - ages_ms[min(index, len(ages_ms) - 1)])
            for index, value in enumerate(values)
        ]
        result = await self.log.append(tp, build_batch(records), durable=False)
        await result.synced

    async def values_from(self, tp: TopicPartition, offset: int) -> list[bytes]:
        read = await self.log.reads.read(tp, offset, 1 << 20)
        values = []
        for batch in read.batches:
            base_offset = parse_header(batch).base_offset
            for record in decode_records(bytes(batch)):
                if base_offset + record.offset_delta >= offset:
                    values.append(record.value or b"")
        return values

    async def row_starts(self, tp: TopicPartition) -> list[int]:
        return [row.base_offset for row in await self.metadata.list_segments(tp)]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_rows_older_than_retention_ms_go_and_reads_follow_the_log_start(world: World) -> None:
    async def main() -> None:
        await world.open({"retention.ms": str(DAY_MS)}, (TP0, TP1))
        for index in range(3):  # offsets 0-1, 2-3, 4-5: two days old
            await world.flush(TP0, [b"old%d" % (2 * index), b"old%d" % (2 * index + 1)], 2 * DAY_MS)
        await world.flush(
            TP0, [b"old6", b"new7"], 2 * DAY_MS, HOUR_MS
        )  # one recent record keeps it
        await world.flush(TP0, [b"new8"], HOUR_MS)
        await world.flush(TP1, [b"p1"], 2 * DAY_MS)
        await world.append(TP0, [b"old9"], 2 * DAY_MS)  # in the tail only: never judged
        report = await world.retention.run_pass()
        assert (report.partitions_checked, report.log_starts_moved, report.complete) == (2, 2, True)
        assert report.segments_deleted == 4  # three rows of partition 0, one of partition 1
        plog = world.log.led_partition(TP0)
        assert plog is not None and plog.state.log_start_offset == 6
        assert await world.row_starts(TP0) == [6, 8]
        with pytest.raises(OffsetOutOfRange):
            await world.log.reads.read(TP0, 5, 1 << 20)
        assert await world.values_from(TP0, 6) == [b"old6", b"new7", b"new8", b"old9"]
        # partition 1's only row went: its log start is its end, nothing was lost above it
        plog1 = world.log.led_partition(TP1)
        assert plog1 is not None and plog1.state.log_start_offset == 1
        assert (await world.metadata.get_partition(TP1)).log_start_offset == 1
        assert world.retention.stats.segments_deleted == 4
        assert world.retention.stats.bytes_deleted == report.bytes_deleted > 0
        again = await world.retention.run_pass()
        assert again.log_starts_moved == 0 and world.retention.stats.passes == 2

    asyncio.run(main())


def test_rows_go_while_the_partition_keeps_retention_bytes(world: World) -> None:
    async def main() -> None:
        await world.open({"retention.bytes": "0", "retention.ms": "-1"}, (TP0,))
        for index in range(4):
            await world.flush(TP0, [b"v%d" % index * 50], 0)
        rows = await world.metadata.list_segments(TP0)
        limit = rows[2].length + rows[3].length  # keeps the last two rows exactly
        await world.metadata.set_topic_configs(
            TOPIC, {"retention.bytes": str(limit)}, incremental=True
        )
        await world.retention.run_pass()
        assert await world.row_starts(TP0) == [2, 3]
        sizes = await world.metadata.partition_sizes(TOPIC)
        assert sizes[0] == limit
        assert await world.values_from(TP0, 2) == [b"v2" * 50, b"v3" * 50]
        expected = retained_log_start(rows, 0, world.clock.now_ms(), RetentionPolicy(-1, limit))
        assert expected == 2

    asyncio.run(main())


def test_only_delete_policies_and_only_partitions_led_here(world: World) -> None:
    async def main() -> None:
        await world.open({"retention.ms": "1000", "cleanup.policy": "compact"}, (TP0,))
        await world.flush(TP0, [b"old"], DAY_MS)
        await world.retention.run_pass()
        assert await world.row_starts(TP0) == [0]  # compact only: retention does not apply
        await world.metadata.set_topic_configs(
            TOPIC, {"cleanup.policy": "compact,delete"}, incremental=True
        )
        await world.retention.run_pass()
        assert await world.row_starts(TP0) == []
        assert world.log.led_partitions() == [TP0]  # partition 1 was never taken for retention
        assert (await world.metadata.get_partition(TP1)).leader_agent is None

    asyncio.run(main())


def test_a_pass_reads_a_bounded_number_of_rows_and_the_next_goes_on(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention_module, "RETENTION_ROWS_PER_PASS_MAX", 5)
    monkeypatch.setattr(retention_module, "RETENTION_FIRST_PAGE_ROWS", 1)

    async def main() -> None:
        await world.open({"retention.ms": "1000"}, (TP0, TP1))
        for index in range(6):
            for tp in (TP0, TP1):
                await world.flush(tp, [b"%d" % index], DAY_MS if index < 5 else 0)
        reports = [await world.retention.run_pass() for _ in range(5)]
        assert not reports[0].complete
        assert reports[0].segments_deleted < 5
        assert sum(report.segments_deleted for report in reports) == 10
        for tp in (TP0, TP1):
            assert await world.row_starts(tp) == [5]
        assert reports[-1].complete

    asyncio.run(main())


def test_delete_records_and_retention_move_one_log_start(world: World) -> None:
    async def main() -> None:
        await world.open({"retention.ms": "-1", "retention.bytes": "0"}, (TP0,))
        for index in range(3):
            await world.flush(TP0, [b"a%d" % index, b"b%d" % index], 0)
        assert await world.log.delete_records(TP0, 3) == 3  # inside the second row
        assert await world.row_starts(TP0) == [2, 4]
        rows = await world.metadata.list_segments(TP0)
        await world.metadata.set_topic_configs(
            TOPIC, {"retention.bytes": str(rows[1].length)}, incremental=True
        )
        report = await world.retention.run_pass()
        # the row holding the log start counts whole: dropping it leaves exactly the limit
        assert report.segments_deleted == 1 and await world.row_starts(TP0) == [4]
        assert await world.log.delete_records(TP0, 2) == 4  # never back

    asyncio.run(main())


def test_a_failing_store_fails_the_pass_and_the_loop_goes_on(tmp_path: Path) -> None:
    world = World(tmp_path, interval_ms=1_000)

    async def main() -> None:
        await world.open({"retention.ms": "1000"}, (TP0,))
        await world.flush(TP0, [b"old"], DAY_MS)
        world.metadata.faults = MetadataFaults(unavailable_rate=1.0)
        with pytest.raises(MetadataUnavailable):
            await world.retention.run_pass()
        assert world.retention.stats.passes_failed == 1
        failure = AgentFailure()
        world.retention.start(failure)
        await asyncio.sleep(0)  # the loop waits for its first interval
        for _ in range(3):
            world.clock.advance_ms(1_000)
            for _ in range(20):
                await asyncio.sleep(0)
        assert world.retention.stats.passes_failed == 4 and not failure.failed
        world.metadata.faults = MetadataFaults()
        world.clock.advance_ms(1_000)
        for _ in range(200):
            if world.retention.stats.segments_deleted:
                break
            await asyncio.sleep(0)
        await world.retention.stop()
        assert not failure.failed
        assert world.retention.stats.segments_deleted == 1
        assert await world.row_starts(TP0) == []

    asyncio.run(main())


def test_released_objects_leave_the_bucket_a_grace_after_retention(world: World) -> None:
    async def main() -> None:
        await world.open({"retention.ms": "1000"}, (TP0, TP1))
        await world.flush(TP0, [b"old"], DAY_MS)  # an object of partition 0 alone
        await world.append(TP0, [b"old too"], DAY_MS)
        await world.flush(TP1, [b"young"], 0)  # an object shared by both partitions
        keys = sorted(os.listdir(world.bucket / "orgs" / "default" / "objects" / _day(world)))
        assert len(keys) == 2
        await world.retention.run_pass()
        assert await world.row_starts(TP0) == [] and await world.row_starts(TP1) == [0]
        reconciler = Reconciler(world.settings, world.clock, world.objects, world.metadata)
        await reconciler.run()
        assert reconciler.stats.orphans_deleted == 0  # released now: within the grace
        world.clock.advance_ms(GRACE_MS + 1)
        _age_bucket(world.bucket, GRACE_MS + 1)
        await reconciler.run()
        left = sorted(os.listdir(world.bucket / "orgs" / "default" / "objects" / _day(world)))
        assert left == keys[1:]  # the shared object stays: partition 1 still reads it
        assert reconciler.stats.orphans_deleted == 1

    asyncio.run(main())


def _day(world: World) -> str:
    return next(iter(os.listdir(world.bucket / "orgs" / "default" / "objects")))


def _age_bucket(root: Path, age_ms: int) -> None:
    """Every object in the bucket `age_ms` older (the bucket's clock is the host's)."""
    for folder, _, files in os.walk(root / "orgs"):
        for name in files:
            path = os.path.join(folder, name)
            stamp_ns = os.stat(path).st_mtime_ns - age_ms * 1_000_000
            os.utime(path, ns=(stamp_ns, stamp_ns))


def test_the_check_interval_is_positive_or_off() -> None:
    for off in (0, -1):
        assert Settings(retention_check_interval_ms=off).retention_check_interval_ms == off
    with pytest.raises(ValueError, match="retention_check_interval_ms"):
        Settings(retention_check_interval_ms=-2)
