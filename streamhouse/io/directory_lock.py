"""One agent process per WAL directory: an exclusive lock on a file in it, held until released
or until the process exits (SIGKILL included: the kernel drops it)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from streamhouse.errors import ErrorCode, StreamHouseError

LOCK_FILE = "lock"
HOLDER_BYTES_MAX = 64


class DirectoryInUse(StreamHouseError):
    """Another live process holds the directory's lock."""

    code = ErrorCode.UNKNOWN_SERVER_ERROR


@contextlib.contextmanager
def locked_directory(path: str) -> Iterator[None]:
    """Hold `path`'s lock (the directory is created if missing) while the block runs. Raises
    DirectoryInUse, naming the holder's pid, when another process holds it."""
    os.makedirs(path, exist_ok=True)
    fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, HOLDER_BYTES_MAX).decode(errors="replace").strip() or "?"
            raise DirectoryInUse(
                f"{path} is in use by another agent process (pid {holder}): stop it, or "
                "give this one another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)
