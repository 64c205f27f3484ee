"""One conformance suite for every Disk adapter (local directory, simulated), plus sim crashes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.disk import DiskFaults, SimDisk
from sim.rng import SeededRng
from streamhouse.errors import DiskFull, DiskIOError
from streamhouse.io.local_disk import LocalDisk
from streamhouse.ports.disk import Disk


@pytest.fixture(params=["local", "sim"])
def disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Disk]:
    if request.param == "local":
        yield LocalDisk(str(tmp_path / "disk"))
    else:
        yield SimDisk(SeededRng(7))


def test_append_read_size(disk: Disk) -> None:
    handle = disk.open_append("wal/a.log")
    handle.write(b"hello ")
    handle.write(b"world")
    asyncio.run(handle.fsync())
    assert handle.size == 11
    assert disk.size("wal/a.log") == 11
    assert disk.read("wal/a.log") == b"hello world"
    assert disk.read("wal/a.log", 6) == b"world"
    assert disk.read("wal/a.log", 2, 3) == b"llo"
    handle.close()


def test_reopen_appends_at_end(disk: Disk) -> None:
    first = disk.open_append("f")
    first.write(b"abc")
    first.close()
    second = disk.open_append("f")
    assert second.size == 3
    second.write(b"def")
    second.close()
    assert disk.read("f") == b"abcdef"


def test_list_exists_remove_truncate(disk: Disk) -> None:
    for name in ["d/2.wal", "d/10.wal", "d/1.wal", "other/x"]:
        disk.open_append(name).close()
    assert disk.list_dir("d") == ["1.wal", "10.wal", "2.wal"]
    assert disk.list_dir("missing") == []
    assert disk.exists("d/1.wal") and not disk.exists("d/3.wal")
    disk.remove("d/1.wal")
    disk.remove("d/1.wal")
    assert disk.list_dir("d") == ["10.wal", "2.wal"]
    handle = disk.open_append("t")
    handle.write(b"0123456789")
    handle.close()
    disk.truncate("t", 4)
    assert disk.read("t") == b"0123"


def test_missing_file_raises(disk: Disk) -> None:
    with pytest.raises(FileNotFoundError):
        disk.read("nope")
    with pytest.raises(FileNotFoundError):
        disk.size("nope")


def test_write_atomic_replaces(disk: Disk) -> None:
    asyncio.run(disk.write_atomic("meta/id", b"one"))
    asyncio.run(disk.write_atomic("meta/id", b"two!"))
    assert disk.read("meta/id") == b"two!"
    assert disk.list_dir("meta") == ["id"]


def test_free_bytes_positive(disk: Disk) -> None:
    assert disk.free_bytes() > 0


def test_local_disk_rejects_escaping_paths(tmp_path: Path) -> None:
    disk = LocalDisk(str(tmp_path / "root"))
    with pytest.raises(ValueError):
        disk.open_append("../outside")


def test_sim_crash_keeps_synced_and_a_prefix_of_unsynced() -> None:
    for seed in range(50):
        disk = SimDisk(SeededRng(seed), DiskFaults(torn_tail_rate=0.0))
        handle = disk.open_append("f")
        handle.write(b"durable|")
        asyncio.run(handle.fsync())
        handle.write(b"maybe-lost")
        disk.crash()
        survived = disk.read("f")
        assert survived.startswith(b"durable|")
        assert (b"durable|" + b"maybe-lost").startswith(survived)


def test_sim_crash_may_tear_and_kills_handles() -> None:
    outcomes = set()
    for seed in range(60):
        disk = SimDisk(SeededRng(seed), DiskFaults(torn_tail_rate=1.0))
        handle = disk.open_append("f")
        handle.write(b"A" * 8)
        asyncio.run(handle.fsync())
        handle.write(b"B" * 8)
        disk.crash()
        survived = disk.read("f")
        assert survived[:8] == b"A" * 8
        outcomes.add(survived[8:] == b"B" * len(survived[8:]))
        with pytest.raises(DiskIOError):
            handle.write(b"after crash")
    assert outcomes == {True, False}, "tearing should happen for some seeds and not others"


def test_sim_never_synced_file_may_vanish() -> None:
    vanished = set()
    for seed in range(30):
        disk = SimDisk(SeededRng(seed))
        disk.open_append("new").write(b"x")
        disk.crash()
        vanished.add(disk.exists("new"))
    assert vanished == {True, False}


def test_sim_disk_full_and_fsync_failure() -> None:
    disk = SimDisk(SeededRng(1), DiskFaults(capacity_bytes=10, fsync_error_rate=1.0))
    handle = disk.open_append("f")
    handle.write(b"12345")
    with pytest.raises(DiskFull):
        handle.write(b"123456")
    assert disk.read("f") == b"12345"
    with pytest.raises(DiskIOError):
        asyncio.run(handle.fsync())


def test_sim_is_deterministic_per_seed() -> None:
    def run(seed: int) -> bytes:
        disk = SimDisk(SeededRng(seed))
        handle = disk.open_append("f")
        handle.write(b"s" * 4)
        asyncio.run(handle.fsync())
        handle.write(bytes(range(200)))
        disk.crash()
        return disk.read("f")

    assert run(42) == run(42)


def test_append_durably_gathers_many_parts(disk: Disk) -> None:
    parts = [bytes([index % 251]) * (index % 7) for index in range(3000)]  # > IOV_MAX parts
    handle = disk.open_append("wal/gathered")
    handle.write(b"head")
    asyncio.run(handle.append_durably(parts))
    assert handle.size == 4 + sum(len(part) for part in parts)
    assert disk.read("wal/gathered") == b"head" + b"".join(parts)
    handle.close()
