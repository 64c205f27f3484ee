"""The flusher's triggers on a virtual clock: bytes threshold at once, interval on time."""

from __future__ import annotations

import asyncio

from sim.clock import VirtualClock
from sim.disk import SimDisk
from sim.metadata import SimMetadataStore
from sim.object_store import SimObjectStore
from sim.rng import SeededRng
from streamhouse.config import Settings
from streamhouse.engine.log_store import LogStore
from streamhouse.kafka.records import SimpleRecord, build_batch
from streamhouse.names import TopicPartition

TP = TopicPartition("t", 0)
INTERVAL_MS = 200


def _log_store(
    settings: Settings,
    clock: VirtualClock,
    rng: SeededRng,
    disk: SimDisk,
    objects: SimObjectStore,
    metadata: SimMetadataStore,
) -> LogStore:
    """Agent "a"'s log over one simulated metadata store."""
    return LogStore(
        settings,
        clock,
        rng,
        disk,
        objects,
        "a",
        topics=metadata,
        leases=metadata,
        producers=metadata,
    )


async def _store(settings: Settings) -> tuple[LogStore, VirtualClock, SimObjectStore]:
    rng = SeededRng(3)
    clock = VirtualClock()
    objects = SimObjectStore(None, rng.fork("objects"))
    metadata = SimMetadataStore(rng.fork("metadata"))
    await metadata.create_topic("t", 1, {}, clock.now_ms())
    store = _log_store(settings, clock, rng, SimDisk(rng.fork("disk")), objects, metadata)
    await store.open()
    return store, clock, objects


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def _batch(size_bytes: int) -> bytes:
    return build_batch([SimpleRecord(None, b"x" * size_bytes, (), 1)])


def test_interval_trigger_waits_for_time_not_bytes() -> None:
    async def main() -> None:
        store, clock, objects = await _store(Settings(flush_interval_ms=INTERVAL_MS))
        result = await store.append(TP, _batch(100), durable=True)
        await result.synced
        await _settle()
        clock.advance_ms(INTERVAL_MS - 1)
        await _settle()
        assert objects.puts == 0 and result.durable is not None and not result.durable.done()
        clock.advance_ms(1)
        await result.durable
        assert objects.puts == 1

    asyncio.run(main())


def test_bytes_trigger_flushes_without_time_passing() -> None:
    async def main() -> None:
        settings = Settings(flush_interval_ms=INTERVAL_MS, flush_bytes_max=1000)
        store, clock, objects = await _store(settings)
        results = [await store.append(TP, _batch(400), durable=True) for _ in range(3)]
        for result in results:
            assert result.durable is not None
            await result.durable
        assert objects.puts == 1, "one object for everything pending"
        assert clock.monotonic_ms() == 0

    asyncio.run(main())


def test_one_object_per_flush_for_many_partitions() -> None:
    async def main() -> None:
        store, clock, objects = await _store(Settings(flush_interval_ms=INTERVAL_MS))
        await store._topics.create_topic("wide", 50, {}, clock.now_ms())
        results = [
            await store.append(TopicPartition("wide", p), _batch(50), durable=True)
            for p in range(50)
        ]
        await _settle()
        clock.advance_ms(INTERVAL_MS)
        await asyncio.gather(*(r.durable for r in results if r.durable is not None))
        assert objects.puts == 1
        segments = await store._leases.list_segments(TopicPartition("wide", 7))
        assert len(segments) == 1 and segments[0].base_offset == 0

    asyncio.run(main())


def test_a_dying_background_service_is_surfaced() -> None:
    class BrokenMetadata(SimMetadataStore):
        async def commit_flush(self, commit: object) -> object:  # type: ignore[override]
            raise RuntimeError("invariant broken in the metadata layer")

    async def main() -> None:
        rng = SeededRng(4)
        clock = VirtualClock()
        metadata = BrokenMetadata(rng.fork("metadata"))
        await metadata.create_topic("t", 1, {}, clock.now_ms())
        objects = SimObjectStore(None, rng.fork("objects"))
        store = _log_store(Settings(), clock, rng, SimDisk(rng.fork("d")), objects, metadata)
        await store.open()
        result = await store.append(TP, _batch(10), durable=False)
        await result.synced
        await _settle()  # virtual time moves only once every task is blocked
        clock.advance_ms(Settings().flush_interval_ms)
        error = await store.failure.wait()
        assert isinstance(error, RuntimeError) and "invariant broken" in str(error)

    asyncio.run(main())
