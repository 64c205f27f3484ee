"""No-op storage for benchmarks (`--storage null`): writes vanish, syncs return at once.

The agent's code path stays the same; only the disk and the object store stop
costing anything, so comparing a run against this baseline shows what storage
costs. Never for real data: nothing written can be read back from it.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence

from streamhouse.errors import ObjectNotFound
from streamhouse.ports.disk import Disk, DiskFile
from streamhouse.ports.object_store import ObjectInfo, ObjectStore

NULL_DISK_FREE_BYTES = 1 << 50


class NullDiskFile(DiskFile):
    """Counts what is written and keeps none of it."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._size = 0

    @property
    def path(self) -> str:
        return self._path

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        self._size += len(data)

    async def fsync(self) -> None:
        return None

    async def append_durably(self, parts: Sequence[bytes]) -> None:
        self._size += sum(len(part) for part in parts)

    def close(self) -> None:
        return None


class NullDisk(Disk):
    """Files that never hold data; only small atomic files (the agent id) are kept."""

    def __init__(self) -> None:
        self._small_files: dict[str, bytes] = {}

    def open_append(self, path: str) -> DiskFile:
        return NullDiskFile(path)

    def read(self, path: str, start: int = 0, length: int | None = None) -> bytes:
        data = self._small_files.get(path)
        if data is None:
            raise FileNotFoundError(path)
        return data[start:] if length is None else data[start : start + length]

    def size(self, path: str) -> int:
        return len(self.read(path))

    def exists(self, path: str) -> bool:
        return path in self._small_files

    def list_dir(self, path: str) -> list[str]:
        return []

    def truncate(self, path: str, size: int) -> None:
        return None

    def remove(self, path: str) -> None:
        self._small_files.pop(path, None)

    async def write_atomic(self, path: str, data: bytes) -> None:
        self._small_files[path] = data

    def free_bytes(self) -> int:
        return NULL_DISK_FREE_BYTES


class NullObjectStore(ObjectStore):
    """Accepts every put and keeps nothing."""

    def __init__(self) -> None:
        self.puts = 0

    async def put(self, key: str, data: bytes) -> None:
        self.puts += 1

    async def get(self, key: str) -> bytes:
        raise ObjectNotFound(f"{key}: the null object store keeps nothing")

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        return await self.get(key)

    async def get_suffix(self, key: str, length: int) -> tuple[bytes, int]:
        return await self.get(key), 0

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        return []

    async def list_page(
        self, prefix: str, start_after: str = "", limit: int = 1000
    ) -> builtins.list[ObjectInfo]:
        return []

    async def delete(self, key: str) -> None:
        return None
