"""The real disk: files under a root directory, real fsync, atomic rename."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from streamhouse.errors import DiskFull, DiskIOError
from streamhouse.io.files import fsync_directory, read_range
from streamhouse.ports.disk import Disk, DiskFile

IOV_PARTS_MAX = min(os.sysconf("SC_IOV_MAX"), 1024)


def _storage_error(exc: OSError, path: str) -> DiskFull | DiskIOError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"disk full writing {path}: free space on the data directory")
    return DiskIOError(f"disk error on {path}: {exc.strerror or exc}")


class LocalDiskFile(DiskFile):
    """An append-only file descriptor."""

    def __init__(self, path: str, full_path: str) -> None:
        self._path = path
        self._fd = os.open(full_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        # One worker per file runs its syncs and gathered writes in submission order, so a
        # caller may hand over the next group while the previous one is still syncing.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"disk:{path}")
        self._size = os.fstat(self._fd).st_size
        self._new_file_dir: str | None = None

    @property
    def path(self) -> str:
        return self._path

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        written_bytes = 0
        try:
            while written_bytes < len(view):
                written_bytes += os.write(self._fd, view[written_bytes:])
        except OSError as exc:
            # A partial append would leave a torn entry in the middle of the file.
            os.ftruncate(self._fd, self._size)
            raise _storage_error(exc, self._path) from exc
        self._size += len(view)

    async def fsync(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._worker, self._sync_blocking)

    async def append_durably(self, parts: Sequence[bytes]) -> None:
        # One trip to the file's worker for the gathered write and the sync, so the event
        # loop neither copies the parts together nor waits on the disk.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._worker, self._append_durably_blocking, parts)

    def _append_durably_blocking(self, parts: Sequence[bytes]) -> None:
        self._write_gathered(parts)
        self._sync_blocking()

    def _write_gathered(self, parts: Sequence[bytes]) -> None:
        total_bytes = sum(len(part) for part in parts)
        try:
            for start in range(0, len(parts), IOV_PARTS_MAX):
                chunk = parts[start : start + IOV_PARTS_MAX]
                written_bytes = os.writev(self._fd, chunk)
                chunk_bytes = sum(len(part) for part in chunk)
                if written_bytes < chunk_bytes:  # short write: finish it the plain way
                    rest = memoryview(b"".join(chunk))[written_bytes:]
                    while len(rest):
                        rest = rest[os.write(self._fd, rest) :]
        except OSError as exc:
            os.ftruncate(self._fd, self._size)  # never leave a torn group behind
            raise _storage_error(exc, self._path) from exc
        self._size += total_bytes

    def _sync_blocking(self) -> None:
        try:
            # fdatasync flushes the data and the size change needed to reach it, and skips
            # timestamps: all an append-only log requires.
            os.fdatasync(self._fd)
            if self._new_file_dir is not None:
                fsync_directory(self._new_file_dir)
                self._new_file_dir = None
        except OSError as exc:
            raise DiskIOError(f"fsync failed on {self._path}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        # Queued behind any write still in flight: the descriptor is never closed under it.
        self._worker.submit(os.close, self._fd)
        self._worker.shutdown(wait=False)

    def mark_new(self, directory: str) -> None:
        """The file was just created: its directory entry needs an fsync too."""
        self._new_file_dir = directory


class LocalDisk(Disk):
    """Files below `root`, created on demand."""

    def __init__(self, root: str) -> None:
        self._root = os.path.abspath(root)
        os.makedirs(self._root, exist_ok=True)

    def _full(self, path: str) -> str:
        full = os.path.normpath(os.path.join(self._root, path))
        if not full.startswith(self._root + os.sep):
            raise ValueError(f"path {path!r} escapes the disk root")
        return full

    def open_append(self, path: str) -> DiskFile:
        full = self._full(path)
        directory = os.path.dirname(full)
        os.makedirs(directory, exist_ok=True)
        is_new = not os.path.exists(full)
        handle = LocalDiskFile(path, full)
        if is_new:
            handle.mark_new(directory)
        return handle

    def read(self, path: str, start: int = 0, length: int | None = None) -> bytes:
        return read_range(self._full(path), start, length)

    def size(self, path: str) -> int:
        return os.stat(self._full(path)).st_size

    def exists(self, path: str) -> bool:
        return os.path.isfile(self._full(path))

    def list_dir(self, path: str) -> list[str]:
        full = self._full(path) if path else self._root
        if not os.path.isdir(full):
            return []
        return sorted(name for name in os.listdir(full) if os.path.isfile(os.path.join(full, name)))

    def truncate(self, path: str, size: int) -> None:
        os.truncate(self._full(path), size)

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._full(path))

    async def write_atomic(self, path: str, data: bytes) -> None:
        await asyncio.to_thread(self._write_atomic_blocking, path, data)

    def _write_atomic_blocking(self, path: str, data: bytes) -> None:
        full = self._full(path)
        directory = os.path.dirname(full)
        os.makedirs(directory, exist_ok=True)
        temp = full + ".tmp"
        try:
            with open(temp, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, full)
            fsync_directory(directory)
        except OSError as exc:
            raise _storage_error(exc, path) from exc

    def free_bytes(self) -> int:
        stats = os.statvfs(self._root)
        return stats.f_bavail * stats.f_frsize
