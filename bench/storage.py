"""Storage benchmarks: WAL group commit against raw write+fsync, object encode/decode."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import tempfile
import time
from typing import Any

from streamhouse.config import KIB, MIB, Settings
from streamhouse.engine.wal import Wal
from streamhouse.io.local_disk import LocalDisk
from streamhouse.io.system_clock import SystemClock
from streamhouse.kafka.records import SimpleRecord, build_batch
from streamhouse.log.object_format import BlockSpec, decode_object, encode_object
from streamhouse.log.wal_format import EntryKind

ENTRIES_PER_REQUEST = 8


def raw_fsync_rate(directory: str, chunk_bytes: int, total_bytes: int) -> dict[str, float]:
    """os.write of `chunk_bytes` then fsync, repeated: the disk's ceiling for the WAL."""
    path = os.path.join(directory, "raw.bin")
    chunk = os.urandom(chunk_bytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    chunks = total_bytes // chunk_bytes
    start = time.perf_counter()
    for _ in range(chunks):
        os.write(fd, chunk)
        os.fsync(fd)
    elapsed = time.perf_counter() - start
    os.close(fd)
    os.remove(path)
    return {"mb_per_s": chunks * chunk_bytes / MIB / elapsed, "fsyncs_per_s": chunks / elapsed}


async def _wal_run(directory: str, entry_bytes: int, total_bytes: int, group_bytes: int) -> Any:
    settings = Settings(
        wal_group_bytes_max=group_bytes,
        wal_queue_bytes_max=4 * group_bytes,
        wal_group_wait_ms=0,
        wal_segment_bytes_max=256 * MIB,
    )
    wal = Wal(LocalDisk(directory), SystemClock(), settings)
    await wal.recover()
    wal.start()
    payload = os.urandom(entry_bytes)
    entries = total_bytes // entry_bytes
    start = time.perf_counter()
    last = None
    for index in range(entries):
        if not wal.has_room(entry_bytes):
            await wal.wait_for_room()
        elif index % ENTRIES_PER_REQUEST == 0:
            await asyncio.sleep(0)  # one produce request's worth, then the loop runs others
        last = wal.append(EntryKind.BATCH, payload)
    assert last is not None
    await last.synced
    elapsed = time.perf_counter() - start
    await wal.close()
    return entries, elapsed, wal.stats.group_commits


def wal_rate(
    directory: str, entry_bytes: int, total_bytes: int, group_bytes: int
) -> dict[str, Any]:
    """The real WAL on the real disk: appends as fast as the group commit takes them."""
    entries, elapsed, groups = asyncio.run(
        _wal_run(directory, entry_bytes, total_bytes, group_bytes)
    )
    return {
        "entry_bytes": entry_bytes,
        "group_bytes_max": group_bytes,
        "mb_per_s": entries * entry_bytes / MIB / elapsed,
        "entries_per_s": entries / elapsed,
        "group_commits": groups,
        "mean_group_bytes": entries * entry_bytes / max(groups, 1),
    }


def _sample_blocks(partitions: int, batch_count: int, seed: int) -> list[BlockSpec]:
    """Realistic record batches: 100-byte values, half random, half repetitive JSON-ish text."""
    rng = random.Random(seed)
    blocks = []
    for partition in range(partitions):
        batches = []
        offset = 0
        for _ in range(batch_count):
            records = [
                SimpleRecord(
                    b"user-%d" % rng.randrange(10_000),
                    (b'{"event":"click","page":%d,"r":"' % rng.randrange(100))
                    + rng.randbytes(30).hex().encode()[:50]
                    + b'"}',
                    (),
                    1_700_000_000_000 + offset,
                )
                for _ in range(100)
            ]
            batches.append(build_batch(records, base_offset=offset))
            offset += len(records)
        blocks.append(
            BlockSpec("bench", partition, 1, 0, offset - 1, 1_700_000_000_000, b"".join(batches))
        )
    return blocks


def object_codec_rate(
    partitions: int = 8, batch_count: int = 100, rounds: int = 5
) -> dict[str, float]:
    """encode_object / decode_object throughput over raw (uncompressed) batch bytes."""
    blocks = _sample_blocks(partitions, batch_count, seed=1)
    raw_bytes = sum(len(block.data) for block in blocks)
    start = time.perf_counter()
    for _ in range(rounds):
        data, _ = encode_object(blocks, "bench", "agent", 1)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(rounds):
        decode_object(data)
    decode_s = time.perf_counter() - start
    return {
        "raw_mb": raw_bytes / MIB,
        "compression_ratio": raw_bytes / len(data),
        "encode_mb_per_s": rounds * raw_bytes / MIB / encode_s,
        "decode_mb_per_s": rounds * raw_bytes / MIB / decode_s,
    }


def _median_run(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    ordered = sorted(rows, key=lambda row: float(row[key]))
    return ordered[len(ordered) // 2]


def _wal_against_raw(scratch: str, entry_bytes: int, total_bytes: int, rounds: int) -> Any:
    """Raw and WAL runs alternate, `rounds` times, so both see the same disk weather."""
    raws, wals = [], []
    for index in range(rounds):
        raws.append(raw_fsync_rate(scratch, MIB, total_bytes))
        wal_dir = os.path.join(scratch, f"wal-{entry_bytes}-{index}")
        wals.append(wal_rate(wal_dir, entry_bytes, total_bytes, MIB))
        shutil.rmtree(wal_dir)
    raw, wal = _median_run(raws, "mb_per_s"), _median_run(wals, "mb_per_s")
    return {"raw": raw, "wal": wal, "wal_vs_raw_ratio": wal["mb_per_s"] / raw["mb_per_s"]}


def run(total_mb: int, directory: str | None, rounds: int) -> dict[str, Any]:
    """Every storage benchmark on one scratch directory of the chosen disk (medians)."""
    scratch = tempfile.mkdtemp(prefix="streamhouse-bench-", dir=directory)
    try:
        total_bytes = total_mb * MIB
        return {
            "disk_dir": scratch,
            "rounds": rounds,
            "wal_1mib_groups_16kib_entries": _wal_against_raw(
                scratch, 16 * KIB, total_bytes, rounds
            ),
            "wal_1mib_groups_256kib_entries": _wal_against_raw(
                scratch, 256 * KIB, total_bytes, rounds
            ),
            "wal_small_entries": wal_rate(
                os.path.join(scratch, "small"), KIB, total_bytes // 4, MIB
            ),
            "object_codec": object_codec_rate(),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
