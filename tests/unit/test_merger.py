"""The rewrite-and-swap step and the merger over real components: a SQLite metadata store, a
local bucket directory stamped with virtual time, the agent's log store on a virtual clock;
everything read back through the normal read path."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streamhouse.config import MIB, Settings
from streamhouse.engine.log_store import LogStore
from streamhouse.engine.merger import Merger
from streamhouse.engine.reconciler import Reconciler
from streamhouse.engine.rewrite import Rewriter, Swapped
from streamhouse.io.sql.store import SqlMetadataStore, open_sql_metadata
from streamhouse.io.sql.store_clock import host_clock
from streamhouse.kafka.batch_header import parse_header
from streamhouse.kafka.records import SimpleRecord, build_batch
from streamhouse.log.rewrite_blocks import StoredBatch
from streamhouse.names import TopicPartition
from streamhouse.ports.buggify import REWRITE_GIVE_UP_AFTER_UPLOAD, Buggify
from streamhouse.ports.leases import SegmentRecord
from tests.unit.log_world import LogWorld
from tests.unit.test_reconciler import VirtualTimeBucket

TP = TopicPartition("t", 0)
OTHER = TopicPartition("t", 1)
SEED = 5
GRACE_MS = 60_000
SETTINGS = Settings(
    tail_bytes_max=0,  # reads after a restart come from the objects
    reconcile_grace_ms=GRACE_MS,
    merge_small_block_bytes=64 * 1024,
    merge_target_bytes=1 * MIB,
    merge_run_rows_min=4,
    merge_block_bytes_max=600,  # a few batches a block: merged objects hold several
    merge_bytes_per_s_max=1 << 40,  # no pacing sleep on the virtual clock
)


class FiresAt(Buggify):
    """Fires at one site, every time."""

    def __init__(self, site: str) -> None:
        self.site = site

    def fires(self, site: str) -> bool:
        return site == self.site


class World(LogWorld):
    """A log world whose bucket is a local directory and whose store is a SQLite file."""

    def __init__(self, root: Path, settings: Settings = SETTINGS) -> None:
        super().__init__(settings, SEED)
        self.bucket = VirtualTimeBucket(str(root / "objects"), self.clock)
        self.sql: SqlMetadataStore = open_sql_metadata(
            f"sqlite:///{root / 'meta.db'}", store_clock=host_clock(self.store_clock.now_ms)
        )
        self.objects = self.bucket  # type: ignore[assignment]
        self.metadata = self.sql  # type: ignore[assignment]

    def rewriter(self, agent_id: str = "a", buggify: Buggify | None = None) -> Rewriter:
        return Rewriter(
            self.settings, self.clock, self.rng, self.bucket, self.sql, agent_id, buggify
        )

    def merger(self, store: LogStore, rewriter: Rewriter) -> Merger:
        return Merger(self.settings, self.clock, store, self.sql, rewriter)

    def reconciler(self) -> Reconciler:
        return Reconciler(self.settings, self.clock, self.bucket, self.sql)


async def _flushed(store: LogStore, tp: TopicPartition, values: list[bytes]) -> None:
    """Each value its own batch, its own flush: one small object each."""
    for value in values:
        batch = build_batch([SimpleRecord(b"k", value, (), 7)])
        result = await store.append(tp, batch, durable=False)
        await result.synced
        await store.flusher.flush_once()


async def _read_all(store: LogStore, tp: TopicPartition) -> list[tuple[int, int, bytes]]:
    """(offset, leader epoch, batch bytes) of every batch, through the normal read path."""
    found: list[tuple[int, int, bytes]] = []
    offset = 0
    while True:
        result = await store.reads.read(tp, offset, 1000)
        if offset >= result.high_watermark:
            return found
        for view in result.batches:
            header = parse_header(view)
            found.append((header.base_offset, header.partition_leader_epoch, bytes(view)))
            offset = header.last_offset + 1


async def _rows(world: World, tp: TopicPartition = TP) -> list[SegmentRecord]:
    return await world.sql.list_segments(tp)


async def _two_epochs(world: World) -> LogStore:
    """Agent a writes six small objects of TP (and some of OTHER), hands TP over; agent b
    takes it at the next epoch and writes six more. Returns b's store, which leads TP."""
    first = await world.open(TP.topic, 2, "a")
    await _flushed(first, TP, [b"a%d" % i for i in range(6)])
    await _flushed(first, OTHER, [b"o%d" % i for i in range(3)])
    await first.close()
    world.advance_ms(SETTINGS.lease_ttl_ms + 1)
    second = await world.open(TP.topic, 2, "b")
    await second.partition(TP)
    await _flushed(second, TP, [b"b%d" % i for i in range(6)])
    return second


def test_a_merge_keeps_every_offset_its_bytes_and_its_epoch(tmp_path: Path) -> None:
    async def main() -> None:
        world = World(tmp_path)
        store = await _two_epochs(world)
        before = await _read_all(store, TP)
        rows_before = await _rows(world)
        assert len(rows_before) == 12 and {r.leader_epoch for r in rows_before} == {1, 2}
        rewriter = world.rewriter("b")
        swaps: list[int] = []
        rewriter.on_swapped.append(lambda _: swaps.append(1))
        cycle = await world.merger(store, rewriter).run_once()
        assert [run.swapped for run in cycle.runs] == [Swapped.SWAPPED]
        assert swaps == [1], "the snapshot writer is told of the swap"
        rows_after = await _rows(world)
        assert len({row.object_key for row in rows_after}) == 1
        assert len(rows_after) < len(rows_before)
        epoch_of = {
            o: r.leader_epoch for r in rows_before for o in range(r.base_offset, r.last_offset + 1)
        }
        for row in rows_after:
            assert all(
                epoch_of[o] == row.leader_epoch for o in range(row.base_offset, row.last_offset + 1)
            )
        assert (rows_after[0].base_offset, rows_after[-1].last_offset) == (0, 11)
        await store.close()
        cold = await world.open(TP.topic, 2, "b")  # a fresh reader: nothing cached
        assert await _read_all(cold, TP) == before
        assert [(o, e) for o, e, _ in before] == [(i, 1) for i in range(6)] + [
            (i, 2) for i in range(6, 12)
        ]
        assert await world.merger(cold, world.rewriter("b")).run_once() == type(cycle)()
        assert await _rows(world) == rows_after, "what was merged is not merged again alone"
        assert len(await _rows(world, OTHER)) == 3, "a partition not led is left alone"
        await cold.close()

    asyncio.run(main())


def test_a_refused_swap_changes_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        world = World(tmp_path)
        store = await _two_epochs(world)
        rows = await _rows(world)
        rewriter = world.rewriter("b")
        stale = await rewriter.rewrite(TP, 1, rows)  # the epoch agent a held
        assert stale.swapped is Swapped.REFUSED
        assert await _rows(world) == rows
        assert stale.key not in {o.key for o in await world.sql.list_objects()}
        merged = await rewriter.rewrite(TP, 2, rows[6:])
        assert merged.swapped is Swapped.SWAPPED
        after = await _rows(world)
        changed = await rewriter.rewrite(TP, 2, rows[4:8])  # rows 6 and 7 were swapped since
        assert changed.swapped is Swapped.REFUSED
        assert await _rows(world) == after
        await store.close()

    asyncio.run(main())


def test_an_upload_whose_swap_never_came_is_an_orphan_the_reconciler_deletes(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        world = World(tmp_path)
        store = await _two_epochs(world)
        rows = await _rows(world)
        before = await _read_all(store, TP)
        crashed = world.rewriter("b", FiresAt(REWRITE_GIVE_UP_AFTER_UPLOAD))
        outcome = await crashed.rewrite(TP, 2, rows)
        assert outcome.swapped is Swapped.ABANDONED
        assert await _rows(world) == rows
        listed = {info.key for info in await world.bucket.list("orgs/")}
        assert outcome.key in listed
        kept = await world.reconciler().run()
        assert kept.orphans_deleted == 0 and kept.orphans_kept_in_grace == 1
        world.advance_ms(GRACE_MS + 1)
        gone = await world.reconciler().run()
        assert gone.orphans_deleted == 1
        assert outcome.key not in {info.key for info in await world.bucket.list("orgs/")}
        await store.close()
        cold = await world.open(TP.topic, 2, "b")
        assert await _read_all(cold, TP) == before
        await cold.close()

    asyncio.run(main())


def test_replaced_objects_live_on_for_the_grace_and_a_stale_listing_reads_again(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        world = World(tmp_path, SETTINGS.with_overrides(block_cache_bytes_max=0))
        store = await _two_epochs(world)
        before = await _read_all(store, TP)  # the reader keeps the listing of the small rows
        old_keys = {row.object_key for row in await _rows(world)}
        assert (await world.rewriter("b").rewrite(TP, 2, await _rows(world))).swapped is (
            Swapped.SWAPPED
        )
        report = await world.reconciler().run()
        assert report.orphans_deleted == 0, "released objects are kept for the grace"
        assert await _read_all(store, TP) == before
        for key in sorted(old_keys):  # as the reconciler will, once the grace passed
            await world.bucket.delete(key)
        assert await _read_all(store, TP) == before, "the stale listing is read again"
        assert store.reads.damaged.count == 0
        await store.close()

    asyncio.run(main())


def test_a_transform_drops_batches_and_keeps_offsets(tmp_path: Path) -> None:
    async def main() -> None:
        world = World(tmp_path)
        store = await _two_epochs(world)
        rows = await _rows(world)
        before = await _read_all(store, TP)

        def odd_only(tp: TopicPartition, batches: list[StoredBatch]) -> list[StoredBatch]:
            return [batch for batch in batches if batch.base_offset % 2 == 1]

        outcome = await world.rewriter("b").rewrite(TP, 2, rows, odd_only)  # type: ignore[arg-type]
        assert outcome.swapped is Swapped.SWAPPED
        after = await _rows(world)
        assert (after[0].base_offset, after[-1].last_offset) == (0, 11)
        await store.close()
        cold = await world.open(TP.topic, 2, "b")
        assert await _read_all(cold, TP) == [b for b in before if b[0] % 2 == 1]
        await cold.close()

    asyncio.run(main())


def test_settings_bound_the_merger() -> None:
    with pytest.raises(ValueError, match="merge_run_rows_min"):
        Settings(merge_run_rows_min=1)
    with pytest.raises(ValueError, match="merge_bytes_per_s_max"):
        Settings(merge_bytes_per_s_max=0)


def test_a_cycle_stops_at_its_byte_bound_and_the_next_goes_on_from_there(tmp_path: Path) -> None:
    async def main() -> None:
        bounded = SETTINGS.with_overrides(
            merge_run_rows_min=2, merge_target_bytes=250, merge_cycle_bytes_max=1
        )
        world = World(tmp_path, bounded)
        store = await _two_epochs(world)
        before = await _read_all(store, TP)
        merger = world.merger(store, world.rewriter("b"))
        first = await merger.run_once()
        assert len(first.runs) == 1, "one run reaches the cycle's bound"
        merged_to = max(
            row.last_offset for row in await _rows(world) if row.object_key == first.runs[0].key
        )
        second = await merger.run_once()
        assert len(second.runs) == 1
        [row] = [r for r in await _rows(world) if r.object_key == second.runs[0].key][:1]
        assert row.base_offset == merged_to + 1, "the next cycle goes on where the last stopped"
        await store.close()
        cold = await world.open(TP.topic, 2, "b")
        assert await _read_all(cold, TP) == before
        await cold.close()

    asyncio.run(main())


def test_rewriting_is_paced_to_its_bytes_per_second(tmp_path: Path) -> None:
    async def main() -> None:
        world = World(tmp_path, SETTINGS.with_overrides(merge_bytes_per_s_max=100))
        store = await _two_epochs(world)
        cycle = asyncio.ensure_future(world.merger(store, world.rewriter("b")).run_once())
        for _ in range(200):
            await asyncio.sleep(0.01)  # the rewrite's store and bucket calls run in threads
            if world.clock.next_deadline_ms() is not None:
                break
        assert not cycle.done()
        due_ms = world.clock.next_deadline_ms()
        assert due_ms is not None
        wait_ms = due_ms - world.clock.monotonic_ms()
        assert wait_ms > 1_000, wait_ms  # some hundred bytes at 100 a second
        world.advance_ms(wait_ms)
        assert len((await cycle).runs) == 1
        await store.close()

    asyncio.run(main())
