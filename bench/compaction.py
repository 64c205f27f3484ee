"""Compaction benchmark: how fast one cleaning round rewrites a compacted partition.

One agent's log store on a local bucket directory and a SQLite file writes MB_TOTAL of one
compacted partition as many small flushes (as bench/merge.py does), each record's key drawn
from KEYS keys, so most records have a later one of their key. One unthrottled round then
cleans the partition; its throughput is raw MiB of batches read (the offset map's pass and
the rewrite's) per second, and records per second, with how much of the log it kept.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import tempfile
import time
from typing import Any

from bench.merge import CountingBucket, new_store
from streamhouse.config import MIB, Settings
from streamhouse.engine.compactor import CompactionConfig, Compactor
from streamhouse.engine.log_store import LogStore
from streamhouse.engine.rewrite import Rewriter
from streamhouse.io.sql.store import open_sql_metadata
from streamhouse.io.system_clock import SystemClock
from streamhouse.io.system_rng import SystemRng
from streamhouse.kafka.records import SimpleRecord, build_batch
from streamhouse.log.topic_configs import DAY_MS
from streamhouse.names import TopicPartition

MB_TOTAL = 32
FLUSH_BYTES = 64 * 1024
VALUE_BYTES = 100
KEYS = 10_000
TP = TopicPartition("bench-compaction", 0)
SETTINGS = Settings(tail_bytes_max=0, compaction_bytes_per_s_max=1 << 40)
EVERY_ROUND = CompactionConfig(DAY_MS, 0, 1 << 62, 0.0)


async def _write(store: LogStore) -> int:
    """MB_TOTAL of keyed records in batches of FLUSH_BYTES, each flushed alone; returns the
    record count."""
    rng = random.Random(11)
    per_batch = FLUSH_BYTES // VALUE_BYTES
    written = 0
    while written * VALUE_BYTES < MB_TOTAL * MIB:
        records = [
            SimpleRecord(b"key-%05d" % rng.randrange(KEYS), rng.randbytes(VALUE_BYTES), (), 1)
            for _ in range(per_batch)
        ]
        result = await store.append(TP, build_batch(records), durable=False)
        await result.synced
        await store.flusher.flush_once()
        written += per_batch
    return written


async def _bench(root: str) -> dict[str, Any]:
    bucket = CountingBucket(os.path.join(root, "objects"))
    metadata = open_sql_metadata(f"sqlite:///{os.path.join(root, 'meta.db')}")
    try:
        await metadata.create_topic(TP.topic, 1, {"cleanup.policy": "compact"}, 0)
        store = new_store(root, bucket, metadata, SETTINGS)
        await store.open(run_background=False)
        await store.partition(TP)
        records = await _write(store)
        rewriter = Rewriter(SETTINGS, SystemClock(), SystemRng(), bucket, metadata, "bench")
        compactor = Compactor(
            SETTINGS, SystemClock(), store, metadata, metadata, metadata, bucket, rewriter
        )
        started = time.perf_counter()
        outcome = await compactor.compact(TP, EVERY_ROUND)
        seconds = time.perf_counter() - started
        await store.close()
    finally:
        await metadata.close()
    stats = compactor.stats
    return {
        "mib_written": MB_TOTAL,
        "records": records,
        "keys": KEYS,
        "round": {
            "seconds": round(seconds, 2),
            "runs_swapped": outcome.runs_swapped,
            "mib_read": round(stats.bytes_read / MIB, 1),
            "mib_read_per_s": round(stats.bytes_read / MIB / seconds, 1),
            "records_per_s": round(outcome.records_read / seconds),
            "records_kept": outcome.records_kept,
            "mib_written": round(stats.bytes_written / MIB, 1),
        },
    }


def run() -> dict[str, Any]:
    root = tempfile.mkdtemp(prefix="bench-compaction-")
    try:
        return asyncio.run(_bench(root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
