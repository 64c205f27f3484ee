"""`python -m bench --only rebuild`: how long a lost metadata store takes to come back.

A bucket (a local directory) of OBJECTS objects, as flushes write them: each holds a block of
every one of PARTITIONS partitions, one idempotent producer's batch of RECORDS_PER_BLOCK
records each, offsets following on from the object before. Two rebuilds into a blank SQLite
store: from the footers alone (no snapshot: every footer and every block is read, the blocks
for the producer states they hold), and from a snapshot covering all but the newest
AFTER_SNAPSHOT objects plus their footers (what a rebuild meets when snapshots are on).
Reported: seconds, objects per second, and the process's peak RSS growth.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from pathlib import Path
from typing import Any

from bench.agents import figure, print_table, scratch_dir
from streamhouse.engine.rebuild import Rebuilder, RebuildReport
from streamhouse.io.local_object_store import LocalObjectStore
from streamhouse.io.sql.store import SqlMetadataStore, open_sql_metadata
from streamhouse.io.system_clock import SystemClock
from streamhouse.kafka.records import SimpleRecord, build_batch
from streamhouse.log.ids import object_key
from streamhouse.log.object_format import BlockSpec, encode_object
from streamhouse.log.snapshot_format import Snapshot, encode_snapshot, snapshot_key

OBJECTS = 10_000
AFTER_SNAPSHOT = 1_000
PARTITIONS = 8
RECORDS_PER_BLOCK = 10
TOPIC = "rebuilt"
PRODUCER_ID = 7
T0_MS = 1_790_000_000_000


def _write_bucket(root: Path, count: int, first_index: int = 0) -> None:
    """Objects first_index .. first_index + count - 1 of the bucket."""
    store = LocalObjectStore(str(root))
    records = [SimpleRecord(b"k", b"v" * 100, (), T0_MS) for _ in range(RECORDS_PER_BLOCK)]

    async def write() -> None:
        for index in range(first_index, first_index + count):
            base = index * RECORDS_PER_BLOCK
            blocks = [
                BlockSpec(
                    TOPIC,
                    partition,
                    0,
                    base,
                    base + RECORDS_PER_BLOCK - 1,
                    T0_MS,
                    build_batch(
                        records,
                        base_offset=base,
                        producer_id=PRODUCER_ID,
                        producer_epoch=0,
                        base_sequence=base,
                    ),
                )
                for partition in range(PARTITIONS)
            ]
            now_ms = T0_MS + index
            data, _ = encode_object(blocks, "default", "bench", now_ms)
            await store.put(object_key("default", "bench", now_ms, index.to_bytes(10, "big")), data)

    asyncio.run(write())


def _rebuild(root: Path, database: Path) -> tuple[RebuildReport, float, float]:
    """Rebuild into a blank SQLite store: (report, seconds, peak RSS growth in MiB)."""
    store = open_sql_metadata(f"sqlite:///{database}")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()

    async def rebuild() -> RebuildReport:
        rebuilder = Rebuilder(
            SystemClock(),
            LocalObjectStore(str(root)),
            "bench",
            snapshots=store,
            topics=store,
            leases=store,
            producers=store,
        )
        try:
            return await rebuilder.rebuild()
        finally:
            await store.close()

    report = asyncio.run(rebuild())
    seconds = time.perf_counter() - started
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    return report, seconds, grown_mib


def _snapshot_of(database: Path, root: Path) -> None:
    """Put a snapshot of the store at `database` into the bucket."""
    store: SqlMetadataStore = open_sql_metadata(f"sqlite:///{database}")

    async def snapshot() -> None:
        try:
            dump = await store.dump_metadata()
        finally:
            await store.close()
        data = encode_snapshot(Snapshot(0, "bench", T0_MS, dump))
        await LocalObjectStore(str(root)).put(snapshot_key(0), data)

    asyncio.run(snapshot())


def _row(name: str, report: RebuildReport, seconds: float, grown_mib: float) -> dict[str, Any]:
    assert report.completed_here, name
    return {
        "case": name,
        "objects_in_bucket": report.objects_listed,
        "objects_read": report.objects_new,
        "segments_added": report.segments_added,
        "seconds": round(seconds, 2),
        "objects_per_second": round(report.objects_listed / seconds),
        "peak_rss_growth_mib": round(grown_mib, 1),
    }


def run() -> dict[str, Any]:
    with scratch_dir("bench-rebuild-") as scratch:
        bucket = scratch / "bucket"
        _write_bucket(bucket, OBJECTS - AFTER_SNAPSHOT)
        report, seconds, grown = _rebuild(bucket, scratch / "footers-only-before.db")
        # the snapshot an agent would have written before the last AFTER_SNAPSHOT objects
        _snapshot_of(scratch / "footers-only-before.db", bucket)
        _write_bucket(bucket, AFTER_SNAPSHOT, first_index=OBJECTS - AFTER_SNAPSHOT)
        os.rename(bucket / "metadata", scratch / "snapshots-aside")
        footers = _row("footers alone", *_rebuild(bucket, scratch / "footers-only.db"))
        os.rename(scratch / "snapshots-aside", bucket / "metadata")
        with_snapshot = _row(
            f"snapshot + {AFTER_SNAPSHOT} newer", *_rebuild(bucket, scratch / "snapshot.db")
        )
        del report, seconds, grown
    rows = [footers, with_snapshot]
    print_table(
        f"rebuild from the bucket: {OBJECTS} objects of {PARTITIONS} partitions (local dir)",
        ["case", "seconds", "objects/s", "objects read", "peak RSS growth MiB"],
        [
            [
                row["case"],
                figure(row["seconds"]),
                figure(row["objects_per_second"]),
                str(row["objects_read"]),
                figure(row["peak_rss_growth_mib"]),
            ]
            for row in rows
        ],
    )
    return {"objects": OBJECTS, "partitions": PARTITIONS, "rows": rows}
