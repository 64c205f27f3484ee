"""Disk port: a directory of files with append, fsync, truncate and atomic replace.

Paths are relative, '/'-separated, below the disk's root. Writes go to a buffer
that only `fsync` makes durable: a crash may drop or tear anything written
since the last fsync of that file (the sim disk does exactly that).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence


class DiskFile(ABC):
    """A file opened for appending."""

    @property
    @abstractmethod
    def path(self) -> str:
        """The file's path below the disk root."""

    @property
    @abstractmethod
    def size(self) -> int:
        """Bytes in the file, including bytes written but not yet fsynced."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Append `data`. Raises DiskFull or DiskIOError; on error nothing is appended."""

    @abstractmethod
    async def fsync(self) -> None:
        """Make every byte written so far durable. Raises DiskIOError on failure."""

    async def append_durably(self, parts: Sequence[bytes]) -> None:
        """`write` the concatenated `parts` then `fsync`, as one step (adapters may gather
        the parts and do both off the event loop)."""
        self.write(b"".join(parts))
        await self.fsync()

    @abstractmethod
    def close(self) -> None:
        """Release the handle; unsynced bytes keep their unsynced fate."""


class Disk(ABC):
    """A local directory of files."""

    @abstractmethod
    def open_append(self, path: str) -> DiskFile:
        """Open `path` for appending, creating it (and its parent directories) if missing."""

    @abstractmethod
    def read(self, path: str, start: int = 0, length: int | None = None) -> bytes:
        """Read `length` bytes (to the end when None) from `start`. FileNotFoundError if absent."""

    @abstractmethod
    def size(self, path: str) -> int:
        """Size of the file in bytes. FileNotFoundError if absent."""

    @abstractmethod
    def exists(self, path: str) -> bool:
        """Whether a file exists at `path`."""

    @abstractmethod
    def list_dir(self, path: str) -> list[str]:
        """Names (not paths) of the files directly in directory `path`, sorted; [] if absent."""

    @abstractmethod
    def truncate(self, path: str, size: int) -> None:
        """Cut the file to `size` bytes (durable once the file is next fsynced)."""

    @abstractmethod
    def remove(self, path: str) -> None:
        """Delete the file; no error if it is already gone."""

    @abstractmethod
    async def write_atomic(self, path: str, data: bytes) -> None:
        """Durably replace the whole file: after a crash it holds either the old or new bytes."""

    @abstractmethod
    def free_bytes(self) -> int:
        """Bytes still free on the disk."""
