"""Small file helpers shared by the local adapters (disk, object directory)."""

from __future__ import annotations

import os


def fsync_directory(directory: str) -> None:
    """Make the directory's entries (created, renamed, removed files) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_range(path: str, start: int, length: int | None) -> bytes:
    """`length` bytes from `start` (to the end when None); fewer if the file ends first."""
    with open(path, "rb") as file:
        file.seek(start)
        return file.read() if length is None else file.read(length)
