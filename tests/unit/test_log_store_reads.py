"""Reads beyond the basics: long-polling, DeleteRecords, the bounded block cache."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sim.disk import SimDisk
from sim.object_store import ObjectStoreFaults
from streamhouse.config import Settings
from streamhouse.engine.damaged_objects import Damage
from streamhouse.engine.log_store import LogStore
from streamhouse.engine.reads import SEGMENT_ROWS_PER_READ
from streamhouse.errors import DamagedData, ErrorCode, ObjectStoreUnavailable, OffsetOutOfRange
from streamhouse.kafka.records import SimpleRecord, build_batch, decode_records
from streamhouse.names import TopicPartition
from tests.unit.log_world import LogWorld

TP = TopicPartition("t", 0)
OTHER = TopicPartition("t", 1)


SEED = 11


def _world(settings: Settings) -> LogWorld:
    return LogWorld(settings, SEED)


async def _open(world: LogWorld) -> LogStore:
    """Agent "a"'s log over topic "t" (two partitions)."""
    return await world.open(TP.topic, 2)


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def _append(store: LogStore, tp: TopicPartition, value: bytes) -> int:
    result = await store.append(tp, build_batch([SimpleRecord(None, value, (), 5)]), durable=False)
    await result.synced
    return result.base_offset


def test_long_poll_wakes_on_new_data_and_times_out_otherwise() -> None:
    async def main() -> None:
        world = _world(Settings())
        store = await _open(world)
        await store.partition(TP)
        await store.partition(OTHER)
        waiting = asyncio.ensure_future(store.reads.wait_for_data({TP: 0, OTHER: 0}, 500))
        await _settle()
        assert not waiting.done()
        await _append(store, OTHER, b"hello")
        assert await waiting is True
        assert world.clock.monotonic_ms() == 0  # woken by data, not by time

        timing_out = asyncio.ensure_future(store.reads.wait_for_data({TP: 0, OTHER: 1}, 500))
        await _settle()
        world.clock.advance_ms(499)
        await _settle()
        assert not timing_out.done()
        world.clock.advance_ms(1)
        assert await timing_out is False

        assert await store.reads.wait_for_data({OTHER: 0}, 500) is True  # data already there

    asyncio.run(main())


def test_delete_records_moves_log_start_and_survives_restart() -> None:
    async def main() -> None:
        world = _world(Settings())
        store = await _open(world)
        for index in range(5):
            await _append(store, TP, b"v%d" % index)
        assert await store.delete_records(TP, 2) == 2
        assert await store.delete_records(TP, 1) == 2  # never moves back
        for beyond in (6, -2):
            with pytest.raises(OffsetOutOfRange):
                await store.delete_records(TP, beyond)
        with pytest.raises(OffsetOutOfRange):
            await store.reads.read(TP, 1, 1 << 20)
        assert (await store.reads.read(TP, 2, 1 << 20)).log_start_offset == 2
        await store.close()
        store = await _open(world)
        result = await store.reads.read(TP, 2, 1 << 20)
        assert result.log_start_offset == 2 and result.high_watermark == 5
        assert await store.delete_records(TP, -1) == 5

    asyncio.run(main())


def test_block_cache_serves_repeated_cold_reads_within_its_bound() -> None:
    async def main() -> None:
        world = _world(Settings(block_cache_bytes_max=100_000, tail_bytes_max=0))
        store = await _open(world)
        for index in range(3):
            await _append(store, TP, b"x" * 1000 + bytes([index]))
            await store.flusher.flush_once()
        await store.close()
        store = await _open(world)
        for _ in range(3):
            assert len((await store.reads.read(TP, 0, 1 << 20)).batches) >= 1
        assert store.reads.objects.block_reads == 3  # one block in each of the three objects
        assert store.reads.objects.block_cache_hits == 6

        small = _world(Settings(block_cache_bytes_max=1000, tail_bytes_max=0))
        small.disk, small.objects, small.metadata = world.disk, world.objects, world.metadata
        store = await _open(small)
        for _ in range(3):
            await store.reads.read(TP, 0, 1 << 20)
        assert store.reads.objects.block_cache_hits == 0, (
            "blocks over a quarter of the bound skip it"
        )

    asyncio.run(main())


def test_offset_for_timestamp_across_objects_and_tail_and_codecs() -> None:
    from streamhouse.kafka.batch_header import Compression
    from streamhouse.kafka.compression import compress

    async def main() -> None:
        world = _world(Settings(tail_bytes_max=0))
        store = await _open(world)
        codecs = [Compression.NONE, Compression.GZIP, Compression.SNAPPY, Compression.LZ4]
        for index, codec in enumerate([*codecs, Compression.ZSTD]):
            records = [SimpleRecord(None, b"r", (), 1000 * index + 10 * r) for r in range(3)]
            batch = build_batch(
                records,
                compression=codec,
                compressor=(lambda data, c=codec: compress(c, data)) if codec else None,
            )
            result = await store.append(TP, batch, durable=False)
            await result.synced
            if index < len(codecs):  # the last batch stays in the tail only
                await store.flusher.flush_once()
        assert await store.reads.offset_for_timestamp(TP, 0) == (0, 0)
        assert await store.reads.offset_for_timestamp(TP, 15) == (2, 20)  # inside the first batch
        assert await store.reads.offset_for_timestamp(TP, 2001) == (
            7,
            2010,
        )  # snappy, from an object
        assert await store.reads.offset_for_timestamp(TP, 4005) == (13, 4010)  # zstd, in the tail
        assert await store.reads.offset_for_timestamp(TP, 9999) is None
        await store.delete_records(TP, 4)
        assert await store.reads.offset_for_timestamp(TP, 0) == (4, 1010)  # never below log start

    asyncio.run(main())


def test_a_wiped_disk_moves_its_partitions_to_a_new_epoch() -> None:
    """acks=1 records die with a wiped disk; what is written next must carry a new leader
    epoch so clients can tell (a restart on the same disk keeps the epoch and the records)."""

    async def main() -> None:
        world = _world(Settings())
        store = await _open(world)
        assert await _append(store, TP, b"kept") == 0
        first_epoch = (await store.partition(TP)).state.leader_epoch
        await store.close(flush=False)
        store = await _open(world)  # same disk: the WAL replays, same epoch
        assert (await store.partition(TP)).state.leader_epoch == first_epoch
        assert store.recovery.replayed_batches == 1
        assert await _append(store, TP, b"acked, then lost") == 1
        await store.close(flush=False)

        world.disk = SimDisk(world.rng.fork("replacement disk"))
        store = await _open(world)
        assert store.recovery.leases_fenced == 1  # the one partition the agent held
        state = (await store.partition(TP)).state
        assert state.leader_epoch == first_epoch + 1
        assert await _append(store, TP, b"new") == 0  # nothing was flushed: offsets reused
        await store.close(flush=False)

    asyncio.run(main())


def test_cold_reads_at_any_size_are_contiguous_and_reuse_the_segment_listing() -> None:
    """Every batch exactly once, in order, whatever the size limit cuts (a block left part
    way must not be followed by the next one), and a listing of segment rows serves the
    reads that follow it instead of a metadata query each."""

    async def main() -> None:
        world = _world(Settings(tail_bytes_max=0))
        store = await _open(world)
        for index in range(40):
            await _append(store, TP, b"%d" % index * (1 + index % 7 * 40))
            if index % 4 == 3:
                await store.flusher.flush_once()
        await store.flusher.flush_once()
        await store.close()
        for limit in (1, 150, 333, 1000, 1 << 20):
            store = await _open(world)
            listings = _count_listings(world)
            offset, values = 0, []
            while True:
                result = await store.reads.read(TP, offset, limit)
                if not result.batches:
                    break
                for batch in result.batches:
                    (record,) = decode_records(batch)
                    assert int.from_bytes(batch[:8], "big") == offset
                    values.append(record.value)
                    offset += 1
            assert values == [b"%d" % i * (1 + i % 7 * 40) for i in range(40)], limit
            assert len(listings) <= 1 + 40 // SEGMENT_ROWS_PER_READ, (limit, listings)

    asyncio.run(main())


def _count_listings(world: LogWorld) -> list[int]:
    """The offsets segment rows are listed from, from now on."""
    listed: list[int] = []
    original = world.metadata.list_segments

    async def counting(tp: TopicPartition, from_offset: int = 0, limit: int = 1000) -> Any:
        listed.append(from_offset)
        return await original(tp, from_offset, limit)

    setattr(world.metadata, "list_segments", counting)  # noqa: B010 (a method, replaced)
    return listed


def test_reads_of_a_missing_or_corrupt_object_answer_damaged_data() -> None:
    """A gone or corrupt object fails the reads of its offsets at once with CORRUPT_MESSAGE,
    naming the object and offsets, and is remembered; other partitions read on; a store that
    is only unavailable stays a retryable storage error, not damage."""

    async def main() -> None:
        world = _world(Settings(tail_bytes_max=0, block_cache_bytes_max=0))
        store = await _open(world)
        await _append(store, TP, b"first")
        await store.flusher.flush_once()
        await _append(store, OTHER, b"other")
        await store.flusher.flush_once()
        await store.close()
        [gone] = [row.object_key for row in await world.metadata.list_segments(TP)]
        [kept] = [row.object_key for row in await world.metadata.list_segments(OTHER)]
        assert gone != kept
        await world.objects.delete(gone)

        store = await _open(world)
        with pytest.raises(DamagedData) as missing:
            await store.reads.read(TP, 0, 1 << 20)
        assert missing.value.code == ErrorCode.CORRUPT_MESSAGE
        assert gone in str(missing.value) and "offsets 0..0 of t-0" in str(missing.value)
        assert len((await store.reads.read(OTHER, 0, 1 << 20)).batches) == 1
        [found] = store.reads.damaged.listed()
        assert (found.key, found.damage, found.found_by) == (gone, Damage.MISSING, "read")

        data = bytearray(world.objects.peek(kept) or b"")
        data[10] ^= 0xFF  # inside the block: its checksum fails
        await world.objects.put(kept, bytes(data))
        store = await _open(world)
        with pytest.raises(DamagedData, match="corrupt"):
            await store.reads.read(OTHER, 0, 1 << 20)
        assert store.reads.damaged.get(kept) is not None

        world.objects.faults = ObjectStoreFaults(unavailable_rate=1.0)
        store = await _open(world)
        with pytest.raises(ObjectStoreUnavailable):
            await store.reads.read(OTHER, 0, 1 << 20)
        assert store.reads.damaged.count == 0

    asyncio.run(main())


def test_a_read_across_a_damaged_object_serves_the_offsets_before_it() -> None:
    """A read from an offset before a missing object returns the records up to it (not the
    error: they are readable); the read from the missing object's first offset fails. Found
    by the simulator's object nemesis: consumers were refused offsets 0..7 for ever because
    the object of offset 8 was gone."""

    async def main() -> None:
        world = _world(Settings(tail_bytes_max=0, block_cache_bytes_max=0))
        store = await _open(world)
        for value in (b"zero", b"one", b"two"):
            await _append(store, TP, value)
            await store.flusher.flush_once()
        await store.close()
        rows = await world.metadata.list_segments(TP)
        assert [row.base_offset for row in rows] == [0, 1, 2]
        await world.objects.delete(rows[1].object_key)

        store = await _open(world)
        served = (await store.reads.read(TP, 0, 1 << 20)).batches
        assert [decode_records(batch)[0].value for batch in served] == [b"zero"]
        with pytest.raises(DamagedData, match=r"offsets 1\.\.1 of t-0"):
            await store.reads.read(TP, 1, 1 << 20)
        served = (await store.reads.read(TP, 2, 1 << 20)).batches
        assert [decode_records(batch)[0].value for batch in served] == [b"two"]

    asyncio.run(main())
