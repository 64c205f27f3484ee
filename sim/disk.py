"""Simulated disk: in-memory files where unsynced writes may vanish or tear on a crash.

Every file keeps the bytes as of its last fsync (`durable`) beside its current
bytes. `crash()` rolls each file back to its durable bytes plus a random
prefix of what was written since, sometimes with a torn (garbage) tail, and a
file never fsynced may vanish. fsync and writes fail, and the disk fills, at
rates and sizes drawn from the simulation's seed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from sim.rng import SeededRng
from streamhouse.errors import DiskFull, DiskIOError
from streamhouse.ports.disk import Disk, DiskFile

SYNC_DELAY_STEPS_MAX = 3


@dataclass(frozen=True)
class DiskFaults:
    """Fault knobs of the simulated disk; all off by default."""

    fsync_error_rate: float = 0.0
    write_error_rate: float = 0.0
    capacity_bytes: int = 1 << 40
    torn_tail_rate: float = 0.3
    lose_unsynced_file_rate: float = 0.5


@dataclass
class _SimFile:
    current: bytearray = field(default_factory=bytearray)
    durable: bytes = b""
    ever_synced: bool = False


class SimDiskFile(DiskFile):
    """A handle on a simulated file; dead after the disk crashes."""

    def __init__(self, disk: SimDisk, path: str) -> None:
        self._disk = disk
        self._path = path
        self._generation = disk.generation
        self._busy = 0  # append_durably calls under way; close waits for them, as a real fd
        self._close_requested = False

    @property
    def path(self) -> str:
        return self._path

    @property
    def size(self) -> int:
        return len(self._file().current)

    def _file(self) -> _SimFile:
        if self._generation != self._disk.generation:
            raise DiskIOError(f"handle on {self._path} died with the process")
        return self._disk.files.setdefault(self._path, _SimFile())

    def write(self, data: bytes) -> None:
        file = self._file()
        self._disk.check_write(self._path, len(data))
        file.current += data

    async def fsync(self) -> None:
        file = self._file()
        if self._disk.rng.chance(self._disk.faults.fsync_error_rate):
            raise DiskIOError(f"simulated fsync failure on {self._path}")
        file.durable = bytes(file.current)
        file.ever_synced = True
        self._disk.fsync_count += 1

    async def append_durably(self, parts: Sequence[bytes]) -> None:
        """Write now, then yield a seed-chosen number of times before syncing, so later
        groups get written while this one is still unsynced (as on a real disk)."""
        self._busy += 1
        try:
            self.write(b"".join(parts))
            for _ in range(self._disk.rng.randint(0, SYNC_DELAY_STEPS_MAX)):
                await asyncio.sleep(0)
            await self.fsync()
        finally:
            self._busy -= 1
            if self._close_requested and self._busy == 0:
                self._generation = -1

    def close(self) -> None:
        self._close_requested = True
        if self._busy == 0:
            self._generation = -1


class SimDisk(Disk):
    """An in-memory directory tree with crash semantics."""

    def __init__(self, rng: SeededRng, faults: DiskFaults | None = None) -> None:
        self.rng = rng
        self.faults = faults or DiskFaults()
        self.files: dict[str, _SimFile] = {}
        self.generation = 0
        self.fsync_count = 0

    def check_write(self, path: str, size: int) -> None:
        """Raise the fault this write hits, if any."""
        if self.used_bytes() + size > self.faults.capacity_bytes:
            raise DiskFull(f"simulated disk full writing {path}")
        if self.rng.chance(self.faults.write_error_rate):
            raise DiskIOError(f"simulated write failure on {path}")

    def used_bytes(self) -> int:
        return sum(len(file.current) for file in self.files.values())

    def open_append(self, path: str) -> DiskFile:
        self.files.setdefault(path, _SimFile())
        return SimDiskFile(self, path)

    def _get(self, path: str) -> _SimFile:
        file = self.files.get(path)
        if file is None:
            raise FileNotFoundError(path)
        return file

    def read(self, path: str, start: int = 0, length: int | None = None) -> bytes:
        data = self._get(path).current
        end = len(data) if length is None else start + length
        return bytes(data[start:end])

    def size(self, path: str) -> int:
        return len(self._get(path).current)

    def exists(self, path: str) -> bool:
        return path in self.files

    def list_dir(self, path: str) -> list[str]:
        prefix = f"{path}/" if path else ""
        names = [p[len(prefix) :] for p in self.files if p.startswith(prefix)]
        return sorted(name for name in names if "/" not in name)

    def truncate(self, path: str, size: int) -> None:
        del self._get(path).current[size:]

    def remove(self, path: str) -> None:
        self.files.pop(path, None)

    async def write_atomic(self, path: str, data: bytes) -> None:
        self.check_write(path, len(data))
        self.files[path] = _SimFile(bytearray(data), bytes(data), True)

    def free_bytes(self) -> int:
        return max(0, self.faults.capacity_bytes - self.used_bytes())

    def crash(self) -> None:
        """The process dies: unsynced bytes may vanish or tear; open handles die."""
        self.generation += 1
        for path in sorted(self.files):
            file = self.files[path]
            if not file.ever_synced and self.rng.chance(self.faults.lose_unsynced_file_rate):
                del self.files[path]
                continue
            file.current = bytearray(self._survivor(file))
            file.durable = bytes(file.current)

    def _survivor(self, file: _SimFile) -> bytes:
        current = bytes(file.current)
        if not current.startswith(file.durable):
            return current if self.rng.chance(0.5) else file.durable
        unsynced = current[len(file.durable) :]
        kept = unsynced[: self.rng.randint(0, len(unsynced))]
        if kept and self.rng.chance(self.faults.torn_tail_rate):
            torn_bytes = self.rng.randint(1, len(kept))
            kept = kept[:-torn_bytes] + self.rng.randbytes(torn_bytes)
        return file.durable + kept
