"""Objects per org: a flush of several orgs' partitions writes one object under each org's
prefix, a rewrite keeps its partition's org, a rebuild restores every org's topics from its own
objects, and a flush that fails after one org committed loses and repeats nothing.

The happy paths run on real adapters (a local bucket directory and SQLite, as in
test_merger.py); the failure cases on the simulated adapters with one org's put or commit
made to fail, then an agent restart on the same WAL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from sim.metadata import SimMetadataStore
from sim.object_store import SimObjectStore
from streamhouse.config import Settings
from streamhouse.engine.log_store import LogStore
from streamhouse.engine.object_reader import ObjectReader
from streamhouse.engine.rebuild import Rebuilder
from streamhouse.errors import (
    MetadataUnavailable,
    MetadataUnknownOutcome,
    ObjectStoreUnavailable,
    StorageError,
)
from streamhouse.io.sql.store import open_sql_metadata
from streamhouse.io.sql.store_clock import host_clock
from streamhouse.kafka.records import SimpleRecord, build_batch, decode_records
from streamhouse.log.ids import OBJECTS_PREFIX
from streamhouse.names import TopicPartition
from streamhouse.ports.leases import FlushCommit, FlushOutcome
from streamhouse.tenancy.names import DEFAULT_ORG, org_of
from tests.unit.log_world import LogWorld
from tests.unit.test_merger import SETTINGS, World

T = TypeVar("T")
DEFAULT_TOPIC = "orders"  # the default org's topic `orders`
ACME = "acme"
ACME_TOPIC = "acme:orders"  # org acme's topic `orders`
PARTITIONS = 2
PLACES = [TopicPartition(t, p) for p in range(PARTITIONS) for t in (DEFAULT_TOPIC, ACME_TOPIC)]
SEED = 17
READ_BYTES_MAX = 1 << 20
ACME_PREFIX = f"{OBJECTS_PREFIX}{ACME}/"


async def _open_both(world: LogWorld, agent_id: str = "a") -> LogStore:
    """Agent `agent_id`'s log over both orgs' topics (created first if missing)."""
    if await world.metadata.get_topic(ACME_TOPIC) is None:
        await world.metadata.create_topic(ACME_TOPIC, PARTITIONS, {}, world.clock.now_ms())
    return await world.open(DEFAULT_TOPIC, PARTITIONS, agent_id)


async def _append_round(store: LogStore, label: str) -> dict[TopicPartition, list[bytes]]:
    """One synced batch per partition, the orgs interleaved; the values, by partition."""
    written: dict[TopicPartition, list[bytes]] = {}
    for tp in PLACES:
        value = f"{label}-{tp.topic}-{tp.partition}".encode()
        await _append(store, tp, value)
        written[tp] = [value]
    return written


def _batch(value: bytes) -> bytes:
    return build_batch([SimpleRecord(None, value, (), 9)])


async def _append(store: LogStore, tp: TopicPartition, value: bytes) -> None:
    await (await store.append(tp, _batch(value), durable=False)).synced


async def _values(store: LogStore, tp: TopicPartition) -> list[bytes]:
    """Every value of the partition through the normal read path, from offset 0."""
    values: list[bytes] = []
    offset = 0
    while True:
        result = await store.reads.read(tp, offset, READ_BYTES_MAX)
        if offset >= result.high_watermark:
            return values
        for view in result.batches:
            base = int.from_bytes(view[:8], "big")
            for record in decode_records(bytes(view)):
                if base + record.offset_delta >= offset:
                    assert base + record.offset_delta == offset, "an offset read twice"
                    assert record.value is not None
                    values.append(record.value)
                    offset += 1


async def _assert_objects_are_per_org(world: LogWorld) -> None:
    """Every committed object's key, footer and row name one org, its blocks' topics'."""
    reader = ObjectReader(world.objects)
    for obj in await world.metadata.list_objects():
        footer = await reader.footer(obj.key)
        assert obj.key.startswith(f"{OBJECTS_PREFIX}{obj.org}/objects/"), obj
        assert footer.org == obj.org, (footer.org, obj)
        assert {org_of(block.topic) for block in footer.blocks} == {obj.org}, obj.key


async def _rows_per_partition(world: LogWorld) -> dict[TopicPartition, list[tuple[int, int]]]:
    return {
        tp: [(s.base_offset, s.last_offset) for s in await world.metadata.list_segments(tp)]
        for tp in PLACES
    }


def test_one_flush_writes_an_object_per_org_and_both_read_back(tmp_path: Path) -> None:
    async def main() -> None:
        world = World(tmp_path)
        store = await _open_both(world)
        written = await _append_round(store, "one")
        reports = await store.flusher.flush_once()
        assert [r.key.split("/")[1] for r in reports] == [DEFAULT_ORG, ACME]
        assert all(r.batch_count == PARTITIONS for r in reports)
        assert store.flusher.stats.objects_put == 2
        await _assert_objects_are_per_org(world)
        for tp in PLACES:
            rows = await world.sql.list_segments(tp)
            assert [row.object_key.split("/")[1] for row in rows] == [org_of(tp.topic)]
        await store.close()
        cold = await _open_both(world, "b")  # no tail (tail_bytes_max=0): reads the objects
        for tp in PLACES:
            assert await _values(cold, tp) == written[tp]
        assert cold.reads.objects.block_reads > 0  # from the objects, not a tail
        await cold.close()

    asyncio.run(main())


def test_one_org_alone_is_one_object_as_before(tmp_path: Path) -> None:
    async def main() -> None:
        world = World(tmp_path)
        store = await _open_both(world)
        for tp in (TopicPartition(ACME_TOPIC, 0), TopicPartition(ACME_TOPIC, 1)):
            await _append(store, tp, b"v")
        reports = await store.flusher.flush_once()
        assert len(reports) == 1 and reports[0].key.startswith(ACME_PREFIX)
        assert await store.flusher.flush_once() == []  # nothing pending: nothing written
        await store.close()

    asyncio.run(main())


def test_a_rewrite_writes_under_its_partitions_org(tmp_path: Path) -> None:
    async def main() -> None:
        world = World(tmp_path)
        store = await _open_both(world)
        tp = TopicPartition(ACME_TOPIC, 0)
        for index in range(SETTINGS.merge_run_rows_min):
            await _append(store, tp, b"%d" % index)
            await store.flusher.flush_once()
        rows = await world.sql.list_segments(tp)
        plog = store.led_partition(tp)
        assert plog is not None
        outcome = await world.rewriter().rewrite(tp, plog.state.leader_epoch, rows)
        assert outcome.key.startswith(ACME_PREFIX)
        await _assert_objects_are_per_org(world)
        assert await _values(store, tp) == [b"%d" % i for i in range(SETTINGS.merge_run_rows_min)]
        await store.close()

    asyncio.run(main())


def test_a_rebuild_restores_each_orgs_topics_from_its_own_objects(tmp_path: Path) -> None:
    async def main() -> None:
        world = World(tmp_path)
        store = await _open_both(world)
        written = await _append_round(store, "one")
        await store.flusher.flush_once()
        for tp, values in (await _append_round(store, "two")).items():
            written[tp] += values
        await store.close()
        blank = open_sql_metadata(
            f"sqlite:///{tmp_path / 'blank.db'}", store_clock=host_clock(world.store_clock.now_ms)
        )
        rebuilder = Rebuilder(
            world.clock,
            world.bucket,
            "b",
            snapshots=blank,
            topics=blank,
            leases=blank,
            producers=blank,
        )
        report = await rebuilder.rebuild_if_needed()
        assert report is not None and sorted(report.topics_created) == [ACME_TOPIC, DEFAULT_TOPIC]
        assert report.objects_added == 4  # two flushes of two orgs
        world.metadata = world.sql = blank  # type: ignore[assignment]
        await _assert_objects_are_per_org(world)
        rebuilt = await world.open(DEFAULT_TOPIC, PARTITIONS, "b")
        for tp in PLACES:
            assert await _values(rebuilt, tp) == written[tp]
        await rebuilt.close()

    asyncio.run(main())


class FailingOrgBucket(SimObjectStore):
    """Puts under one org's prefix fail while `failing`."""

    failing = False

    async def put(self, key: str, data: bytes) -> None:
        if self.failing and key.startswith(ACME_PREFIX):
            raise ObjectStoreUnavailable(f"injected: {key} refused")
        await super().put(key, data)


class FailingOrgStore(SimMetadataStore):
    """Commits of one org's objects fail while `failing`; `lose_answers` of them are applied
    and then answered with an unknown outcome."""

    failing = False
    lose_answers = 0

    async def commit_flush(self, commit: FlushCommit) -> FlushOutcome:
        if commit.obj.org != ACME:
            return await super().commit_flush(commit)
        if self.failing:
            raise MetadataUnavailable("injected: acme's commit refused")
        outcome = await super().commit_flush(commit)
        if self.lose_answers:
            self.lose_answers -= 1
            raise MetadataUnknownOutcome("injected: acme's commit answer lost")
        return outcome


def _failing_world() -> tuple[LogWorld, FailingOrgBucket, FailingOrgStore]:
    world = LogWorld(Settings(tail_bytes_max=0), SEED)
    bucket = FailingOrgBucket(None, world.rng.fork("failing-objects"))
    store = FailingOrgStore(world.rng.fork("failing-metadata"), clock=world.store_clock)
    world.objects, world.metadata = bucket, store
    return world, bucket, store


def _with_time(world: LogWorld, call: Awaitable[T]) -> Awaitable[T]:
    """`call`, the virtual clock moved on whenever everything waits on it (retry backoff)."""

    async def driven() -> T:
        task = asyncio.ensure_future(call)
        while not task.done():
            await asyncio.sleep(0)
            deadline = world.clock.next_deadline_ms()
            if deadline is not None and not task.done():
                world.advance_ms(deadline - world.clock.monotonic_ms())
        return task.result()

    return driven()


@pytest.mark.parametrize("failing", ["put", "commit"])
def test_a_flush_given_up_after_one_org_committed_loses_and_repeats_nothing(
    failing: str,
) -> None:
    async def main() -> None:
        world, bucket, store_ = _failing_world()
        store = await _open_both(world)
        written = await _append_round(store, "one")
        bucket.failing, store_.failing = failing == "put", failing == "commit"
        store.flusher.stop()  # as at shutdown: retries give up after a few attempts
        with pytest.raises(StorageError):
            await _with_time(world, store.flusher.flush_once())
        for tp in PLACES:  # the default org's object committed; acme's batches stay pending
            plog = store.led_partition(tp)
            assert plog is not None
            committed = org_of(tp.topic) == DEFAULT_ORG
            assert (plog.state.durable_end_offset == 1) is committed, tp
        acme_bytes = sum(len(_batch(v[0])) for tp, v in written.items() if tp.topic == ACME_TOPIC)
        assert store.flusher.pending_bytes == acme_bytes, "the default org's batches released"
        await store.close(flush=False)  # the agent stops; its WAL still holds acme's batches
        world.disk.crash()
        bucket.failing = store_.failing = False
        restarted = await _open_both(world)
        await restarted.flusher.flush_once()
        for tp in PLACES:
            assert await _values(restarted, tp) == written[tp]
        assert await _rows_per_partition(world) == {tp: [(0, 0)] for tp in PLACES}
        await _assert_objects_are_per_org(world)
        await restarted.close()

    asyncio.run(main())


def test_a_retried_commit_of_the_second_org_is_applied_once() -> None:
    async def main() -> None:
        world, _, store_ = _failing_world()
        store = await _open_both(world)
        written = await _append_round(store, "one")
        store_.lose_answers = 1  # acme's commit is applied, its answer lost: retried
        reports = await _with_time(world, store.flusher.flush_once())
        assert len(reports) == 2 and store.flusher.stats.commit_retries == 1
        assert store.flusher.pending_bytes == 0
        assert await _rows_per_partition(world) == {tp: [(0, 0)] for tp in PLACES}
        more = await _append_round(store, "two")  # pending starts clean after the split
        await store.flusher.flush_once()
        for tp in PLACES:
            assert await _values(store, tp) == written[tp] + more[tp]
        await store.close()

    asyncio.run(main())
