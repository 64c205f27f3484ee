"""A partition led by this agent: its offsets, in-memory tail, the waiters on them, and until
when its lease lets it lead (the local deadline of engine/leases.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from streamhouse.errors import StreamHouseError
from streamhouse.log.partition import PartitionState
from streamhouse.log.partition_txns import PartitionTxns
from streamhouse.log.producer_state import ProducerStates
from streamhouse.log.tail import Tail, TailBatch, TailBudget
from streamhouse.tenancy.names import org_of


@dataclass
class PartitionLog:
    """Runtime of one led partition. Mutated only by the log store and the flusher."""

    state: PartitionState
    tail: Tail
    producers: ProducerStates
    txns: PartitionTxns
    durable_waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    synced_waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    truncate_marker_offset: int | None = None  # a void range awaits its WAL marker
    fenced: bool = False
    handing_over: bool = False  # being flushed to release the lease: takes no appends
    lease_deadline_ms: int = 0  # monotonic; past it this agent must not act as leader
    # held while a batch that would open a transaction here is verified and appended
    txn_opening: asyncio.Lock = field(default_factory=asyncio.Lock)
    # held while the log start is judged and moved (DeleteRecords, retention): one at a time,
    # so retention's byte count is never read across another's move
    log_start_moving: asyncio.Lock = field(default_factory=asyncio.Lock)
    _watermark_moved: asyncio.Future[None] | None = None
    _lease_decided: asyncio.Future[None] | None = None
    org: str = field(init=False)  # the org its topic belongs to: its objects are under its prefix

    def __post_init__(self) -> None:
        self.org = org_of(self.state.tp.topic)

    @classmethod
    def opened(
        cls,
        state: PartitionState,
        producers: ProducerStates,
        lease_deadline_ms: int,
        tail_budget: TailBudget,
        txns: PartitionTxns | None = None,
    ) -> PartitionLog:
        tail = Tail(state.durable_end_offset, tail_budget)
        if txns is None:
            txns = PartitionTxns({}, state.durable_end_offset)
        return cls(state, tail, producers, txns, lease_deadline_ms=lease_deadline_ms)

    @property
    def last_stable_offset(self) -> int:
        """The first offset a read_committed consumer may not read yet."""
        return self.txns.last_stable_offset(self.state.high_watermark)

    def leading(self, now_ms: int) -> bool:
        """Whether this agent may act as the partition's leader at monotonic `now_ms`: its
        lease was not lost, and the local deadline of its last renewal has not passed."""
        return not self.fenced and now_ms < self.lease_deadline_ms

    def renewed(self, deadline_ms: int) -> None:
        """A renewal at this epoch succeeded: lead until `deadline_ms` (renewals may come
        back out of order, so the latest deadline stands)."""
        self.lease_deadline_ms = max(self.lease_deadline_ms, deadline_ms)
        _wake(self._lease_decided)
        self._lease_decided = None

    def watch_lease(self) -> asyncio.Future[None]:
        """A future resolved at the lease's next renewal or loss (shared by every watcher:
        requests that found the local deadline passed wait on it)."""
        if self._lease_decided is None:
            self._lease_decided = asyncio.get_running_loop().create_future()
        return self._lease_decided

    def append(self, batch: TailBatch) -> None:
        self.tail.append(batch)

    def synced(self, end_offset: int) -> None:
        self.state.synced(end_offset)
        self.txns.synced(self.state.high_watermark)
        self.synced_waiters = _release(self.synced_waiters, end_offset)
        self._wake_watchers()

    def watch_high_watermark(self) -> asyncio.Future[None]:
        """A future resolved the next time the high watermark moves (or the lease is lost);
        shared by every watcher, so long-polling fetches cost one future per partition."""
        if self._watermark_moved is None:
            self._watermark_moved = asyncio.get_running_loop().create_future()
        return self._watermark_moved

    def _wake_watchers(self) -> None:
        _wake(self._watermark_moved)
        self._watermark_moved = None

    def made_durable(self, end_offset: int) -> None:
        self.state.made_durable(end_offset)
        self.txns.made_durable(end_offset)
        self.durable_waiters = _release(self.durable_waiters, end_offset)
        self.tail.made_durable(end_offset)

    def wait_durable(self, end_offset: int) -> asyncio.Future[None]:
        """Resolves once offsets below `end_offset` are in a committed object."""
        return _waiter(self.durable_waiters, end_offset, self.state.durable_end_offset)

    def wait_synced(self, end_offset: int) -> asyncio.Future[None]:
        """Resolves once offsets below `end_offset` are fsynced (the high watermark passed)."""
        return _waiter(self.synced_waiters, end_offset, self.state.high_watermark)

    def roll_back_unsynced(self, error: StreamHouseError) -> None:
        """A WAL write failed: void everything above the high watermark."""
        new_end = self.state.roll_back_unsynced()
        self.tail.truncate_from(new_end)
        self.producers.truncate_from(new_end)
        self.txns.truncate_from(new_end)
        self.truncate_marker_offset = new_end
        self._fail_waiters_above(new_end, error)

    def fence(self, error: StreamHouseError) -> None:
        """The lease moved on: this agent no longer leads the partition."""
        self.fenced = True
        self.tail.detach()
        self._fail_waiters_above(-1, error)
        self._wake_watchers()
        _wake(self._lease_decided)
        self._lease_decided = None

    def _fail_waiters_above(self, offset: int, error: StreamHouseError) -> None:
        self.durable_waiters = _fail_above(self.durable_waiters, offset, error)
        self.synced_waiters = _fail_above(self.synced_waiters, offset, error)


Waiters = list[tuple[int, asyncio.Future[None]]]


def _wake(watched: asyncio.Future[None] | None) -> None:
    """Wake the watchers of a shared future (its owner then drops it: the next watcher
    gets a new one)."""
    if watched is not None and not watched.done():
        watched.set_result(None)


def _waiter(waiters: Waiters, end_offset: int, reached: int) -> asyncio.Future[None]:
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    if end_offset <= reached:
        waiter.set_result(None)
    else:
        waiters.append((end_offset, waiter))
    return waiter


def _release(waiters: Waiters, reached: int) -> Waiters:
    keep = []
    for end_offset, waiter in waiters:
        if end_offset > reached:
            keep.append((end_offset, waiter))
        elif not waiter.done():
            waiter.set_result(None)
    return keep


def _fail_above(waiters: Waiters, offset: int, error: StreamHouseError) -> Waiters:
    keep = []
    for end_offset, waiter in waiters:
        if end_offset > offset:
            if not waiter.done():
                waiter.set_exception(error)
                waiter.exception()
        else:
            keep.append((end_offset, waiter))
    return keep
