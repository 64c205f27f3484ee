"""Object store port: immutable objects under string keys, with range reads.

Keys are never reused (DESIGN §2), so the port needs no overwrite semantics
beyond "put of an existing key replaces it".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object."""

    key: str
    size_bytes: int


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
    async def delete(self, key: str) -> None:
        """Remove the object; no error if it is already gone."""
