"""Merger benchmark: the cost of a cold read of one partition before and after merging.

One agent's log store on a local bucket directory and a SQLite file writes MB_TOTAL of one
partition as many small flushes (FLUSH_BYTES each: one small object per flush, as a busy
agent with many partitions writes them). A fresh log store (nothing cached, no tail) then
reads the partition from the start, counting the bucket's GETs per MiB consumed; the merger
runs one unthrottled cycle over it (its throughput in MiB/s of raw bytes rewritten); and a
fresh store reads it cold again.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import tempfile
import time
from typing import Any

from streamhouse.config import MIB, Settings
from streamhouse.engine.log_store import LogStore
from streamhouse.engine.merger import Merger
from streamhouse.engine.rewrite import Rewriter
from streamhouse.io.local_disk import LocalDisk
from streamhouse.io.local_object_store import LocalObjectStore
from streamhouse.io.sql.store import SqlMetadataStore, open_sql_metadata
from streamhouse.io.system_clock import SystemClock
from streamhouse.io.system_rng import SystemRng
from streamhouse.kafka.batch_header import parse_header
from streamhouse.kafka.records import SimpleRecord, build_batch
from streamhouse.names import TopicPartition

MB_TOTAL = 64
FLUSH_BYTES = 64 * 1024  # one batch per flush
VALUE_BYTES = 100
FETCH_BYTES_MAX = 1 * MIB
TP = TopicPartition("bench-merge", 0)
SETTINGS = Settings(
    tail_bytes_max=0,  # a store opened again reads everything from the objects
    merge_bytes_per_s_max=1 << 40,
    merge_cycle_bytes_max=1 << 40,
)


class CountingBucket(LocalObjectStore):
    """A local bucket that counts the requests reads make (footers, blocks, whole objects)."""

    gets = 0

    async def get(self, key: str) -> bytes:
        self.gets += 1
        return await super().get(key)

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        self.gets += 1
        return await super().get_range(key, start, length)

    async def get_suffix(self, key: str, length: int) -> tuple[bytes, int]:
        self.gets += 1
        return await super().get_suffix(key, length)


def new_store(
    root: str, bucket: CountingBucket, metadata: SqlMetadataStore, settings: Settings = SETTINGS
) -> LogStore:
    """A log store of agent `bench` over the bucket and the metadata store."""
    return LogStore(
        settings,
        SystemClock(),
        SystemRng(),
        LocalDisk(os.path.join(root, "wal")),
        bucket,
        "bench",
        topics=metadata,
        leases=metadata,
        producers=metadata,
    )


async def _write(store: LogStore) -> int:
    """MB_TOTAL of batches of FLUSH_BYTES, each flushed alone; returns the flush count."""
    rng = random.Random(7)
    per_batch = FLUSH_BYTES // VALUE_BYTES
    flushes = 0
    while flushes * FLUSH_BYTES < MB_TOTAL * MIB:
        words = [rng.randbytes(8).hex().encode() for _ in range(32)]  # compressible, not trivially
        records = [
            SimpleRecord(
                None, b"".join(rng.choices(words, k=VALUE_BYTES // 16))[:VALUE_BYTES], (), 1
            )
            for _ in range(per_batch)
        ]
        result = await store.append(TP, build_batch(records), durable=False)
        await result.synced
        await store.flusher.flush_once()
        flushes += 1
    return flushes


async def _cold_read(
    root: str, bucket: CountingBucket, metadata: SqlMetadataStore
) -> dict[str, Any]:
    """Read the whole partition with a fresh store; GETs per MiB of batches consumed."""
    store = new_store(root, bucket, metadata)
    await store.open(run_background=False)
    gets_before = bucket.gets
    started = time.perf_counter()
    consumed = 0
    offset = 0
    while True:
        result = await store.reads.read(TP, offset, FETCH_BYTES_MAX)
        if offset >= result.high_watermark:
            break
        for view in result.batches:
            consumed += len(view)
            offset = parse_header(view).last_offset + 1
    elapsed = time.perf_counter() - started
    gets = bucket.gets - gets_before
    rows = await metadata.list_segments(TP, 0, 1 << 30)
    await store.close(flush=False)
    return {
        "mib_consumed": round(consumed / MIB, 1),
        "gets": gets,
        "gets_per_mib": round(gets / (consumed / MIB), 2),
        "segment_rows": len(rows),
        "objects": len({row.object_key for row in rows}),
        "mib_stored": round(sum(row.length for row in rows) / MIB, 1),
        "read_mib_per_s": round(consumed / MIB / elapsed, 1),
    }


async def _bench(root: str) -> dict[str, Any]:
    bucket = CountingBucket(os.path.join(root, "objects"))
    metadata = open_sql_metadata(f"sqlite:///{os.path.join(root, 'meta.db')}")
    try:
        await metadata.create_topic(TP.topic, 1, {}, 0)
        store = new_store(root, bucket, metadata)
        await store.open(run_background=False)
        await store.partition(TP)
        flushes = await _write(store)
        await store.close()
        before = await _cold_read(root, bucket, metadata)
        store = new_store(root, bucket, metadata)
        await store.open(run_background=False)
        await store.partition(TP)
        rewriter = Rewriter(SETTINGS, SystemClock(), SystemRng(), bucket, metadata, "bench")
        merger = Merger(SETTINGS, SystemClock(), store, metadata, rewriter)
        started = time.perf_counter()
        cycle = await merger.run_once()
        merge_s = time.perf_counter() - started
        await store.close()
        after = await _cold_read(root, bucket, metadata)
    finally:
        await metadata.close()
    stats = merger.stats
    return {
        "mib_written": MB_TOTAL,
        "flushes": flushes,
        "flush_bytes": FLUSH_BYTES,
        "cold_read_before_merge": before,
        "cold_read_after_merge": after,
        "merge": {
            "swaps": stats.swaps,
            "objects_written": stats.objects_written,
            "mib_rewritten": round(stats.bytes_rewritten / MIB, 1),
            "seconds": round(merge_s, 2),
            "mib_per_s": round(cycle.raw_bytes / MIB / merge_s, 1),
            "settings": {
                "merge_small_block_bytes": SETTINGS.merge_small_block_bytes,
                "merge_target_bytes": SETTINGS.merge_target_bytes,
                "merge_block_bytes_max": SETTINGS.merge_block_bytes_max,
            },
        },
    }


def run() -> dict[str, Any]:
    root = tempfile.mkdtemp(prefix="bench-merge-")
    try:
        return asyncio.run(_bench(root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
