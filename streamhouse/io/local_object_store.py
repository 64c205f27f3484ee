"""Local-directory object store: the embedded default, one file per object under a root."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

from streamhouse.errors import ObjectNotFound, ObjectStoreUnavailable
from streamhouse.io.files import fsync_directory, read_range
from streamhouse.ports.object_store import ObjectInfo, ObjectStore

# Temp files live next to their final name until os.replace; list() must never report them.
_TEMP_PREFIX = "."
_TEMP_SUFFIX = ".sh-tmp"

# Errors that mean "there is no object under this key" (a missing file or a missing or
# wrong-kind directory on the way to it).
_NOT_FOUND_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR})

_P = ParamSpec("_P")
_T = TypeVar("_T")


class LocalObjectStore(ObjectStore):
    """Objects are files under `root`: key "a/b/c.obj" is the file root/a/b/c.obj.

    A put is atomic (temp file, fsync, rename, fsync of the directory), so readers see
    the old object or the new one, never a partial one. Blocking IO runs in threads.
    """

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        await asyncio.to_thread(_put_sync, key, path, bytes(data))

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        return await asyncio.to_thread(_guard, key, read_range, path, 0, None)

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        _check_range(start, length)
        path = self._path(key)
        return await asyncio.to_thread(_guard, key, read_range, path, start, length)

    async def get_suffix(self, key: str, length: int) -> tuple[bytes, int]:
        _check_range(0, length)
        path = self._path(key)
        return await asyncio.to_thread(_guard, key, _read_suffix, path, length)

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        start_dir = self._listing_dir(prefix)
        infos = await asyncio.to_thread(_guard, prefix, self._list_sync, start_dir, prefix)
        return sorted(infos, key=lambda info: info.key)

    async def list_page(
        self, prefix: str, start_after: str = "", limit: int = 1000
    ) -> builtins.list[ObjectInfo]:
        _check_limit(limit)
        start_dir = self._listing_dir(prefix)
        return await asyncio.to_thread(
            _guard, prefix, self._list_page_sync, start_dir, prefix, start_after, limit
        )

    async def delete(self, key: str) -> None:
        path = self._path(key)
        # Empty directories are left behind on purpose: removing them would race with a
        # concurrent put that has just created the directory and is about to write into it.
        await asyncio.to_thread(_guard, key, _unlink_if_present, path)

    def _path(self, key: str) -> str:
        """The file of `key`; ValueError for keys that are empty, escape root or name temp files."""
        parts = _key_parts(key)
        if _is_temp(parts[-1]):
            raise ValueError(f"object key {key!r} collides with the store's temp-file names")
        return os.path.join(self.root, *parts)

    def _listing_dir(self, prefix: str) -> str:
        """The deepest directory that holds every key starting with `prefix`."""
        dir_part = prefix.rpartition("/")[0]
        if not dir_part:
            if prefix.startswith("/"):
                raise ValueError(f"object key prefix {prefix!r} must be relative")
            return self.root
        return os.path.join(self.root, *_key_parts(dir_part))

    def _list_sync(self, start_dir: str, prefix: str) -> builtins.list[ObjectInfo]:
        infos: builtins.list[ObjectInfo] = []
        for path, size_bytes, modified_ms in _walk_files(start_dir):
            key = os.path.relpath(path, self.root).replace(os.sep, "/")
            if key.startswith(prefix):
                infos.append(ObjectInfo(key, size_bytes, modified_ms))
        return infos

    def _list_page_sync(
        self, start_dir: str, prefix: str, start_after: str, limit: int
    ) -> builtins.list[ObjectInfo]:
        """Walks the tree in key order, skipping whole directories before `start_after` or
        outside `prefix`, and stops after `limit` objects: memory is one directory's names
        and the page, however many objects the store holds."""
        page: builtins.list[ObjectInfo] = []
        if limit == 0:
            return page
        dir_key = os.path.relpath(start_dir, self.root).replace(os.sep, "/")
        dir_key = "" if dir_key == "." else dir_key + "/"
        for key, size_bytes, modified_ms in _walk_in_key_order(
            start_dir, dir_key, prefix, start_after
        ):
            page.append(ObjectInfo(key, size_bytes, modified_ms))
            if len(page) >= limit:
                break
        return page


def _key_parts(key: str) -> list[str]:
    """The path components of `key`; ValueError unless it is a plain relative path."""
    if not key or key.startswith("/") or "\\" in key or "\0" in key:
        raise ValueError(f"object key {key!r} must be a non-empty relative path with '/'")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"object key {key!r} has an empty, '.' or '..' component")
    return parts


def _check_range(start: int, length: int) -> None:
    if start < 0 or length < 0:
        raise ValueError(f"byte range needs start >= 0 and length >= 0, got {start}, {length}")


def _guard(key: str, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run a read, turning OS errors into the port's errors (a missing file: ObjectNotFound)."""
    try:
        return fn(*args, **kwargs)
    except OSError as exc:
        if exc.errno in _NOT_FOUND_ERRNOS:
            raise ObjectNotFound(f"no object under key {key!r} ({exc.strerror})") from exc
        raise _unavailable(key, exc) from exc


def _put_sync(key: str, path: str, data: bytes) -> None:
    """A put never reports ObjectNotFound: every OS error is a failed (retryable) write."""
    try:
        _write_atomically(path, data)
    except OSError as exc:
        raise _unavailable(key, exc) from exc


def _unavailable(key: str, exc: OSError) -> ObjectStoreUnavailable:
    return ObjectStoreUnavailable(
        f"local object store failed on key {key!r}: {exc.strerror or exc} "
        f"(path {exc.filename!r}); check free space, permissions, and that no key is "
        "both an object and a prefix of another key's directory"
    )


def _write_atomically(path: str, data: bytes) -> None:
    """Write via a temp file in the same directory so the rename is atomic."""
    directory, name = os.path.split(path)
    _make_dirs_durable(directory)
    fd, temp_path = tempfile.mkstemp(
        prefix=f"{_TEMP_PREFIX}{name}.", suffix=_TEMP_SUFFIX, dir=directory
    )
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_path, path)
    except BaseException:
        _unlink_if_present(temp_path)
        raise
    # The rename is durable only once the directory entry is on disk.
    fsync_directory(directory)


def _make_dirs_durable(directory: str) -> None:
    """Create `directory` and its missing parents, fsyncing each parent that gained an entry."""
    missing: list[str] = []
    current = directory
    while not os.path.isdir(current):
        missing.append(current)
        current = os.path.dirname(current)
    for new_dir in reversed(missing):
        # exist_ok: a concurrent put may create the same directory first.
        os.makedirs(new_dir, exist_ok=True)
        fsync_directory(os.path.dirname(new_dir))


def _read_suffix(path: str, length: int) -> tuple[bytes, int]:
    with open(path, "rb") as file:
        size_bytes = os.fstat(file.fileno()).st_size
        file.seek(max(0, size_bytes - length))
        return file.read(), size_bytes


def _unlink_if_present(path: str) -> None:
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        os.unlink(path)


def _is_temp(name: str) -> bool:
    return name.startswith(_TEMP_PREFIX) and name.endswith(_TEMP_SUFFIX)


def _check_limit(limit: int) -> None:
    if limit < 0:
        raise ValueError(f"a listing page holds at least 0 objects, got a limit of {limit}")


def _modified_ms(stat: os.stat_result) -> int:
    return stat.st_mtime_ns // 1_000_000


def _walk_in_key_order(
    directory: str, dir_key: str, prefix: str, start_after: str
) -> Iterator[tuple[str, int, int]]:
    """(key, size, modified ms) of the objects under `directory` (whose keys start with
    `dir_key`) that start with `prefix` and sort after `start_after`, in key order. A
    directory sorts as its name plus "/", so that "a-b" comes before everything in "a/"."""
    names: list[str] = []
    try:
        for entry in os.scandir(directory):
            if entry.is_dir(follow_symlinks=False):
                names.append(entry.name + "/")
            elif entry.is_file() and not _is_temp(entry.name):
                names.append(entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    names.sort()
    for name in names:
        key = dir_key + name
        if name.endswith("/"):
            if _subtree_wanted(key, prefix, start_after):
                path = os.path.join(directory, name[:-1])
                yield from _walk_in_key_order(path, key, prefix, start_after)
            continue
        if key <= start_after or not key.startswith(prefix):
            continue
        try:
            stat = os.stat(os.path.join(directory, name))
        except (FileNotFoundError, NotADirectoryError):
            continue  # deleted since the directory was read: not part of this listing
        yield key, stat.st_size, _modified_ms(stat)


def _subtree_wanted(dir_key: str, prefix: str, start_after: str) -> bool:
    """Whether a directory whose keys all start with `dir_key` may hold a key of the page:
    it shares `prefix`, and not all of its keys sort at or before `start_after` (they do
    when `dir_key` sorts before `start_after` without being its beginning)."""
    if not (dir_key.startswith(prefix) or prefix.startswith(dir_key)):
        return False
    return not (dir_key < start_after and not start_after.startswith(dir_key))


def _walk_files(directory: str) -> Iterator[tuple[str, int, int]]:
    """(path, size, modified ms) of every non-temp file under `directory`; files that vanish
    are skipped."""
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk_files(entry.path)
            elif entry.is_file() and not _is_temp(entry.name):
                stat = entry.stat()
                yield entry.path, stat.st_size, _modified_ms(stat)
        except FileNotFoundError:
            # Deleted between scandir and stat: it is simply not part of this listing.
            continue
