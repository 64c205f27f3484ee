"""A partition led by this agent: its offsets, in-memory tail and the waiters on them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from streamhouse.errors import StreamHouseError
from streamhouse.log.partition import PartitionState
from streamhouse.log.tail import Tail, TailBatch


@dataclass
class PartitionLog:
    """Runtime of one led partition. Mutated only by the log store and the flusher."""

    state: PartitionState
    tail: Tail
    durable_waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    truncate_marker_offset: int | None = None  # a void range awaits its WAL marker
    fenced: bool = False
    high_watermark_moved: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def opened(cls, state: PartitionState) -> PartitionLog:
        return cls(state, Tail(state.durable_end_offset))

    def append(self, batch: TailBatch) -> None:
        self.tail.append(batch)

    def synced(self, end_offset: int) -> None:
        self.state.synced(end_offset)
        self.high_watermark_moved.set()

    def made_durable(self, end_offset: int, tail_bytes_max: int) -> None:
        self.state.made_durable(end_offset)
        ready = [w for w in self.durable_waiters if w[0] <= end_offset]
        self.durable_waiters = [w for w in self.durable_waiters if w[0] > end_offset]
        for _, waiter in ready:
            if not waiter.done():
                waiter.set_result(None)
        self.tail.evict(end_offset, tail_bytes_max)

    def wait_durable(self, end_offset: int) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if end_offset <= self.state.durable_end_offset:
            waiter.set_result(None)
        else:
            self.durable_waiters.append((end_offset, waiter))
        return waiter

    def roll_back_unsynced(self, error: StreamHouseError) -> None:
        """A WAL write failed: void everything above the high watermark."""
        new_end = self.state.roll_back_unsynced()
        self.tail.truncate_from(new_end)
        self.truncate_marker_offset = new_end
        self._fail_waiters_above(new_end, error)

    def fence(self, error: StreamHouseError) -> None:
        """The lease moved on: this agent no longer leads the partition."""
        self.fenced = True
        self._fail_waiters_above(-1, error)
        self.high_watermark_moved.set()

    def _fail_waiters_above(self, offset: int, error: StreamHouseError) -> None:
        keep = []
        for end_offset, waiter in self.durable_waiters:
            if end_offset > offset:
                if not waiter.done():
                    waiter.set_exception(error)
                    waiter.exception()
            else:
                keep.append((end_offset, waiter))
        self.durable_waiters = keep
