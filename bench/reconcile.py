"""Reconciler benchmark: one pass over a bucket of 100 000 small objects (a local object store
directory) against a SQLite store whose rows point into most of them, timed, and its peak
Python memory (tracemalloc) against the page size, which is what bounds it."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import tracemalloc
from typing import Any

from sqlalchemy import insert

from streamhouse.config import Settings
from streamhouse.engine.reconciler import Reconciler, ReconcileReport
from streamhouse.io.local_object_store import LocalObjectStore
from streamhouse.io.sql.schema import objects, segments
from streamhouse.io.sql.store import SqlMetadataStore, open_sql_metadata
from streamhouse.io.system_clock import SystemClock

KEYS = 100_000
DAYS = 10  # objects spread over this many day directories, as flushes over ten days
ORPHAN_EVERY = 10  # every tenth object has no row: 10 000 orphans
MISSING_ROWS = 100  # rows whose object is not in the bucket
OBJECT_BYTES = 64
TOPIC = "bench"
INSERT_CHUNK_ROWS = 10_000


def _key(index: int) -> str:
    return f"orgs/bench/objects/202601{index % DAYS + 1:02}/agent-bench-{index:08}.obj"


def _write_bucket(root: str) -> None:
    payload = b"o" * OBJECT_BYTES
    for day in range(DAYS):
        os.makedirs(os.path.join(root, os.path.dirname(_key(day))), exist_ok=True)
    for index in range(KEYS):
        with open(os.path.join(root, _key(index)), "wb") as file:
            file.write(payload)


async def _write_rows(store: SqlMetadataStore) -> None:
    """Rows for every object but the orphans, plus rows of missing objects, in bulk."""
    await store.create_topic(TOPIC, 1, {}, 0)
    referenced = [i for i in range(KEYS) if i % ORPHAN_EVERY]
    keys = [_key(i) for i in referenced] + [
        f"orgs/bench/objects/20260101/missing-{i:04}.obj" for i in range(MISSING_ROWS)
    ]
    object_rows = [
        {"key": key, "agent": "bench", "org": "bench", "size_bytes": OBJECT_BYTES, "created_ms": 0}
        for key in keys
    ]
    segment_rows = [
        {
            "topic": TOPIC,
            "partition": 0,
            "base_offset": offset,
            "last_offset": offset,
            "leader_epoch": 1,
            "max_timestamp_ms": 0,
            "object_key": key,
            "position": 8,
            "length": 16,
        }
        for offset, key in enumerate(keys)
    ]
    with store.engine.begin() as conn:
        for start in range(0, len(keys), INSERT_CHUNK_ROWS):
            conn.execute(insert(objects), object_rows[start : start + INSERT_CHUNK_ROWS])
            conn.execute(insert(segments), segment_rows[start : start + INSERT_CHUNK_ROWS])


async def _pass(reconciler: Reconciler, dry_run: bool, traced: bool) -> dict[str, Any]:
    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    report: ReconcileReport = await reconciler.run(dry_run=dry_run)
    elapsed_s = time.perf_counter() - started
    figures: dict[str, Any] = {
        "seconds": round(elapsed_s, 2),
        "keys_per_s": round(report.listed / elapsed_s),
        "listed": report.listed,
        "orphans_deleted": report.orphans_deleted,
        "missing": report.missing,
    }
    if traced:
        figures["python_peak_mib"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 2)
        tracemalloc.stop()
    return figures


async def _run(directory: str) -> dict[str, Any]:
    root = os.path.join(directory, "objects")
    started = time.perf_counter()
    _write_bucket(root)
    store = open_sql_metadata(f"sqlite:///{os.path.join(directory, 'metadata.db')}")
    try:
        await _write_rows(store)
        fixture_s = time.perf_counter() - started
        # grace 0: every orphan is old enough (the files were written a moment ago)
        settings = Settings(reconcile_grace_ms=0)
        reconciler = Reconciler(settings, SystemClock(), LocalObjectStore(root), store)
        dry = await _pass(reconciler, dry_run=True, traced=False)
        traced = await _pass(reconciler, dry_run=True, traced=True)
        real = await _pass(reconciler, dry_run=False, traced=False)
        again = await _pass(reconciler, dry_run=False, traced=False)
    finally:
        await store.close()
    return {
        "keys": KEYS,
        "page_keys": settings.reconcile_page_keys_max,
        "fixture_seconds": round(fixture_s, 1),
        "dry_run": dry,
        "dry_run_traced": traced,
        "deleting_run": real,
        "second_run": again,
    }


def run() -> dict[str, Any]:
    directory = tempfile.mkdtemp(prefix="bench-reconcile-")
    try:
        return asyncio.run(_run(directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
