"""What the metadata suites share: times, partitions, builders of the values they store, and
the store's clock as a test moves it (`StoreTime`).

SQLite and the simulator get a clock that stands still until the test moves it. PostgreSQL
keeps its real server clock (`server_clock`, the one production reads) plus an offset the
test moves: the SQL reading the server's time is then under test too, at the price of
assertions that allow for the milliseconds a test takes (`StoreTime.now_ms` before and
after a call bound what the call saw).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection

from sim.clock import VirtualClock
from streamhouse.io.sql.store import SqlMetadataStore
from streamhouse.io.sql.store_clock import server_clock
from streamhouse.log.producer_state import ProducerBatch, SequencedBatch
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import CommittedOffset
from streamhouse.ports.leases import FlushCommit, ObjectRecord, SegmentRecord
from streamhouse.ports.metadata import MetadataStore

T = TypeVar("T")

TTL_MS = 10_000
T0_MS = 1_000_000
TP0 = TopicPartition("orders", 0)
TP1 = TopicPartition("orders", 1)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def segment(
    tp: TopicPartition, base_offset: int, last_offset: int, key: str, epoch: int = 1
) -> SegmentRecord:
    return SegmentRecord(
        topic=tp.topic,
        partition=tp.partition,
        base_offset=base_offset,
        last_offset=last_offset,
        leader_epoch=epoch,
        max_timestamp_ms=T0_MS + last_offset,
        object_key=key,
        position=base_offset * 10,
        length=(last_offset - base_offset + 1) * 10,
    )


def flush(
    key: str,
    epochs: dict[TopicPartition, int],
    ranges: list[tuple[TopicPartition, int, int]],
) -> FlushCommit:
    obj = ObjectRecord(key=key, agent="agent-a", org="org-1", size_bytes=123, created_ms=T0_MS)
    rows = [segment(tp, base, last, key, epochs.get(tp, 0)) for tp, base, last in ranges]
    return FlushCommit(obj=obj, segments=rows, epochs=epochs)


def orders_led_by_a(store: MetadataStore) -> None:
    """Topic `orders` (2 partitions), both leased by agent-a at epoch 1."""
    run(store.create_topic("orders", 2, {}, T0_MS))
    for tp in (TP0, TP1):
        assert run(store.acquire_lease(tp, "agent-a", TTL_MS)) is not None


def committed(offset: int, commit_ms: int = T0_MS, metadata: str | None = None) -> CommittedOffset:
    return CommittedOffset(offset=offset, leader_epoch=3, metadata=metadata, commit_ms=commit_ms)


def produced(producer_id: int, epoch: int, first: int, base: int, count: int) -> ProducerBatch:
    batch = SequencedBatch(first, first + count - 1, base, base + count - 1)
    return ProducerBatch(producer_id, epoch, batch)


def all_at_once(calls: list[Callable[[], T]]) -> list[T]:
    """Run the calls on threads released together by a barrier."""
    barrier = threading.Barrier(len(calls))

    def start(call: Callable[[], T]) -> T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(start, calls))


class StoreTime:
    """The store's clock in a test: standing still (`virtual`), or the server's plus an
    offset."""

    def __init__(self, *, on_server: bool) -> None:
        self.virtual = None if on_server else VirtualClock(start_wall_ms=T0_MS)
        self._offset_ms = 0

    def __call__(self, conn: Connection) -> int:
        """The store clock the adapter reads."""
        if self.virtual is not None:
            return self.virtual.now_ms()
        return server_clock(conn) + self._offset_ms

    def advance_ms(self, delta_ms: int) -> None:
        if self.virtual is not None:
            self.virtual.advance_ms(delta_ms)
        self._offset_ms += delta_ms

    def now_ms(self, store: SqlMetadataStore) -> int:
        """The store's time now (a server's moves on by itself between two calls)."""
        with store.engine.connect() as conn:
            return self(conn)
