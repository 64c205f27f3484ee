"""Object store port: immutable objects under string keys, with range reads.

Keys are never reused (DESIGN §2), so the port needs no overwrite semantics
beyond "put of an existing key replaces it".
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object. `modified_ms`: when the store last wrote it, by the store's own
    clock (S3's LastModified, a file's mtime, the simulator's virtual time at the put), in ms
    since the Unix epoch."""

    key: str
    size_bytes: int
    modified_ms: int


class ObjectStore(ABC):
    """S3, a local directory, or the simulator's in-memory store."""

    @abstractmethod
    async def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`. Raises ObjectStoreUnavailable; the write may then
        have happened or not (callers must tolerate both)."""

    @abstractmethod
    async def get(self, key: str) -> bytes:
        """The whole object. Raises ObjectNotFound or ObjectStoreUnavailable."""

    @abstractmethod
    async def get_range(self, key: str, start: int, length: int) -> bytes:
        """`length` bytes from `start`, fewer if the object ends first."""

    @abstractmethod
    async def get_suffix(self, key: str, length: int) -> tuple[bytes, int]:
        """The last `length` bytes (all of it if smaller) and the object's total size."""

    @abstractmethod
    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with `prefix`, sorted by key."""

    @abstractmethod
    async def list_page(
        self, prefix: str, start_after: str = "", limit: int = 1000
    ) -> builtins.list[ObjectInfo]:
        """At most `limit` objects whose key starts with `prefix` and sorts after
        `start_after`, sorted by key: a page of a listing too large to hold at once (the
        next page starts after the last key of this one; a short page is the last)."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the object; no error if it is already gone."""
