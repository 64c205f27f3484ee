"""Simulated object store: an in-memory ObjectStore with seeded latency and S3-like faults."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass

from sim.rng import SeededRng
from streamhouse.errors import ObjectNotFound, ObjectStoreUnavailable
from streamhouse.ports.clock import Clock
from streamhouse.ports.object_store import ObjectInfo, ObjectStore


@dataclass(frozen=True)
class ObjectStoreFaults:
    """How badly the simulated store behaves. All zero (the default): a perfect store.

    Rates are probabilities per operation; latencies are drawn uniformly from 0..max.
    """

    latency_ms_max: int = 0
    list_latency_ms_max: int = 0  # extra latency of LIST, on top of latency_ms_max
    unavailable_rate: float = 0.0  # refused before doing anything, like a 503
    # The put raises ObjectStoreUnavailable but the write happened or not (50/50), like a
    # timeout whose request did or did not reach S3.
    put_unknown_outcome_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("unavailable_rate", "put_unknown_outcome_rate"):
            rate = getattr(self, name)
            assert 0.0 <= rate <= 1.0, f"{name} must be a probability, got {rate}"
        for name in ("latency_ms_max", "list_latency_ms_max"):
            latency_ms = getattr(self, name)
            assert latency_ms >= 0, f"{name} must not be negative, got {latency_ms}"


@dataclass(frozen=True)
class _Draw:
    """Every random choice of one operation, drawn up front so that the rng sequence
    depends only on the order in which operations start, not on when they wake."""

    latency_ms: int
    unavailable: bool
    unknown_outcome: bool
    unknown_outcome_stored: bool


class SimObjectStore(ObjectStore):
    """A dict of key -> bytes. Deterministic for a seed: nothing iterates in hash order.

    Counters `puts`, `gets` (ranged reads included), `lists` and `deletes` count every
    request, failed ones included, the way S3 request metrics would; `put_bytes` counts
    the bytes sent by every put, `get_bytes` the bytes returned.
    """

    def __init__(
        self,
        clock: Clock | None,
        rng: SeededRng,
        faults: ObjectStoreFaults | None = None,
    ) -> None:
        self._clock = clock
        self._rng = rng
        self.faults = faults or ObjectStoreFaults()
        self._objects: dict[str, bytes] = {}
        self._modified_ms: dict[str, int] = {}  # virtual wall time of each key's last put
        # told each key a delete removes and when it was last written, as it goes (the
        # simulator's checks of deletes)
        self.on_delete: Callable[[str, int], None] | None = None
        self.puts = 0
        self.gets = 0
        self.lists = 0
        self.deletes = 0
        self.put_bytes = 0
        self.get_bytes = 0

    async def put(self, key: str, data: bytes) -> None:
        _check_key(key)
        self.puts += 1
        data = bytes(data)
        self.put_bytes += len(data)
        draw = self._draw(self.faults.latency_ms_max, can_be_unknown=True)
        await self._enter(draw, "put", key)
        if draw.unknown_outcome:
            if draw.unknown_outcome_stored:
                self._store(key, data)
            raise ObjectStoreUnavailable(
                f"simulated timeout on put of {key!r}: the write may or may not have happened"
            )
        self._store(key, data)

    async def get(self, key: str) -> bytes:
        data = await self._read(key)
        self.get_bytes += len(data)
        return data

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        _check_range(start, length)
        chunk = (await self._read(key))[start : start + length]
        self.get_bytes += len(chunk)
        return chunk

    async def get_suffix(self, key: str, length: int) -> tuple[bytes, int]:
        _check_range(0, length)
        data = await self._read(key)
        chunk = data[max(0, len(data) - length) :] if length > 0 else b""
        self.get_bytes += len(chunk)
        return chunk, len(data)

    async def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        self.lists += 1
        latency_ms_max = self.faults.latency_ms_max + self.faults.list_latency_ms_max
        await self._enter(self._draw(latency_ms_max), "list", prefix)
        return [self._info(key) for key in sorted(self._objects) if key.startswith(prefix)]

    async def list_page(
        self, prefix: str, start_after: str = "", limit: int = 1000
    ) -> builtins.list[ObjectInfo]:
        if limit < 0:
            raise ValueError(f"a listing page holds at least 0 objects, got a limit of {limit}")
        self.lists += 1
        latency_ms_max = self.faults.latency_ms_max + self.faults.list_latency_ms_max
        await self._enter(self._draw(latency_ms_max), "list", prefix)
        keys = sorted(k for k in self._objects if k.startswith(prefix) and k > start_after)
        return [self._info(key) for key in keys[:limit]]

    async def delete(self, key: str) -> None:
        _check_key(key)
        self.deletes += 1
        await self._enter(self._draw(self.faults.latency_ms_max), "delete", key)
        modified_ms = self._modified_ms.pop(key, 0)
        if self._objects.pop(key, None) is not None and self.on_delete is not None:
            self.on_delete(key, modified_ms)

    def plant(self, key: str, data: bytes, modified_ms: int) -> None:
        """Store `data` under `key` as if written at `modified_ms`; for the simulator's
        nemeses (junk in the bucket), without latency, faults or counting."""
        self._objects[key] = bytes(data)
        self._modified_ms[key] = modified_ms

    def damage(self, key: str, corrupt_at: int | None) -> None:
        """The simulator's object nemesis: `key` vanishes (`corrupt_at` None) or has its byte
        at `corrupt_at` flipped (its size and last-modified time unchanged); not a delete of
        anybody's (`on_delete` is not told), without latency, faults or counting."""
        if corrupt_at is None:
            del self._objects[key]
            del self._modified_ms[key]
            return
        data = bytearray(self._objects[key])
        data[corrupt_at] ^= 0xFF
        self._objects[key] = bytes(data)

    def modified_ms(self, key: str) -> int | None:
        """When `key` was last written, if it is held; for tests, like `peek`."""
        return self._modified_ms.get(key)

    def stored_keys(self) -> builtins.list[str]:
        """Every key held, sorted; for tests, without latency, faults or counting."""
        return sorted(self._objects)

    def peek(self, key: str) -> bytes | None:
        """The stored bytes of `key`, if any; for tests, without latency, faults or counting."""
        return self._objects.get(key)

    async def _read(self, key: str) -> bytes:
        _check_key(key)
        self.gets += 1
        await self._enter(self._draw(self.faults.latency_ms_max), "get", key)
        data = self._objects.get(key)
        if data is None:
            raise ObjectNotFound(f"no object under key {key!r}")
        return data

    def _store(self, key: str, data: bytes) -> None:
        self._objects[key] = data
        self._modified_ms[key] = self._clock.now_ms() if self._clock is not None else 0

    def _info(self, key: str) -> ObjectInfo:
        return ObjectInfo(key, len(self._objects[key]), self._modified_ms[key])

    def _draw(self, latency_ms_max: int, can_be_unknown: bool = False) -> _Draw:
        latency_ms = self._rng.randint(0, latency_ms_max) if latency_ms_max > 0 else 0
        unavailable = self._rng.chance(self.faults.unavailable_rate)
        unknown = can_be_unknown and self._rng.chance(self.faults.put_unknown_outcome_rate)
        stored = unknown and self._rng.chance(0.5)
        return _Draw(latency_ms, unavailable, unknown, stored)

    async def _enter(self, draw: _Draw, op: str, key: str) -> None:
        """Wait out the latency, then fail the whole request if it is refused."""
        if self._clock is not None and draw.latency_ms > 0:
            await self._clock.sleep_ms(draw.latency_ms)
        if draw.unavailable:
            raise ObjectStoreUnavailable(f"simulated 503 on {op} of {key!r}")


def _check_key(key: str) -> None:
    if not key:
        raise ValueError("object key must not be empty")


def _check_range(start: int, length: int) -> None:
    if start < 0 or length < 0:
        raise ValueError(f"byte range needs start >= 0 and length >= 0, got {start}, {length}")
