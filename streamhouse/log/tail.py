"""The in-memory tail of each partition: recent record batches in offset order, all tails of an
agent bounded in bytes as one sum.

Batches not yet durable are never evicted (they are still to be flushed); durable ones are
evicted oldest first, in the order they became durable across every partition, once the
tails together hold more than their budget.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

# What a held batch costs beyond its bytes: the TailBatch, its slots in the offset lists and
# in the budget's durable order (measured about 150 on CPython 3.11, rounded up)
TAIL_BATCH_OVERHEAD_BYTES = 200


@dataclass(frozen=True, slots=True)
class TailBatch:
    """A record batch with its offsets already assigned."""

    base_offset: int
    last_offset: int
    max_timestamp_ms: int
    data: bytes

    @property
    def end_offset(self) -> int:
        return self.last_offset + 1


_EVICTED = TailBatch(-1, -1, -1, b"")  # holds the slot of an evicted batch until compaction


class TailBudget:
    """The bytes held by every tail of an agent, bounded as one sum (`bytes_max`, shared by all
    partitions however many there are): once over it, durable batches are evicted oldest first
    in the order they became durable. Batches not yet durable are never evicted, so the sum
    may exceed the bound by what awaits its flush (itself bounded by the flusher)."""

    def __init__(self, bytes_max: int) -> None:
        assert bytes_max >= 0, bytes_max
        self.bytes_max = bytes_max
        self.byte_count = 0  # batch bytes plus TAIL_BATCH_OVERHEAD_BYTES each
        self.batches_evicted = 0
        # (tail, durable end offset) in the order they became durable: one entry per flush
        # of a partition, each covering at least one batch held (or its tail was detached)
        self._durable: deque[tuple[Tail, int]] = deque()

    def held(self, cost_bytes: int) -> None:
        self.byte_count += cost_bytes
        assert self.byte_count >= 0, self.byte_count

    def made_durable(self, tail: Tail, end_offset: int) -> None:
        """Batches of `tail` below `end_offset` are in a committed object: evictable."""
        self._durable.append((tail, end_offset))
        self.evict()

    def evict(self) -> None:
        while self.byte_count > self.bytes_max and self._durable:
            tail, end_offset = self._durable[0]
            if not tail.evict_oldest(end_offset):
                self._durable.popleft()  # nothing of that tail is held below end_offset


class Tail:
    """Contiguous batches [start_offset, end_offset) of one partition."""

    def __init__(self, start_offset: int, budget: TailBudget) -> None:
        self._batches: list[TailBatch] = []
        self._bases: list[int] = []
        self._head = 0  # batches before _head are evicted; compacted lazily
        self._start_offset = start_offset
        self._budget: TailBudget | None = budget  # None once detached
        self.byte_count = 0

    @property
    def start_offset(self) -> int:
        return self._start_offset

    @property
    def end_offset(self) -> int:
        if self._head == len(self._batches):
            return self._start_offset
        return self._batches[-1].end_offset

    def __len__(self) -> int:
        return len(self._batches) - self._head

    def append(self, batch: TailBatch) -> None:
        assert batch.base_offset == self.end_offset, (batch.base_offset, self.end_offset)
        assert batch.last_offset >= batch.base_offset, batch
        self._batches.append(batch)
        self._bases.append(batch.base_offset)
        self.byte_count += len(batch.data)
        self._hold(len(batch.data) + TAIL_BATCH_OVERHEAD_BYTES)
        if self._budget is not None:
            self._budget.evict()  # room for it from durable batches, this tail's or others'

    def _hold(self, cost_bytes: int) -> None:
        if self._budget is not None:
            self._budget.held(cost_bytes)

    def detach(self) -> None:
        """The partition is no longer led here: its bytes leave the budget (they are freed
        once the last reference goes) and nothing more of it is evicted."""
        self._hold(-(self.byte_count + TAIL_BATCH_OVERHEAD_BYTES * len(self)))
        self._budget = None

    def made_durable(self, end_offset: int) -> None:
        """Batches below `end_offset` are durable: the budget may evict them from now on."""
        if self._budget is not None:
            self._budget.made_durable(self, end_offset)

    def read(self, offset: int, end_offset: int, bytes_max: int) -> list[TailBatch]:
        """Batches holding offsets from `offset` up to (not past) `end_offset`.

        The first batch is returned even if larger than `bytes_max`, as Kafka does,
        so a consumer always makes progress.
        """
        if offset < self._start_offset or offset >= end_offset:
            return []
        index = max(self._head, bisect.bisect_right(self._bases, offset) - 1)
        found: list[TailBatch] = []
        size_bytes = 0
        while index < len(self._batches):
            batch = self._batches[index]
            over_bytes = found and size_bytes + len(batch.data) > bytes_max
            if batch.end_offset > end_offset or over_bytes:
                break
            found.append(batch)
            size_bytes += len(batch.data)
            index += 1
        return found

    def truncate_from(self, offset: int) -> None:
        """Drop every batch at or above `offset` (which must be a batch boundary or the end)."""
        index = bisect.bisect_left(self._bases, offset, lo=self._head)
        assert index == len(self._batches) or self._bases[index] == offset, offset
        for batch in self._batches[index:]:
            self.byte_count -= len(batch.data)
            self._hold(-(len(batch.data) + TAIL_BATCH_OVERHEAD_BYTES))
        del self._batches[index:]
        del self._bases[index:]

    def evict_through(self, end_offset: int) -> None:
        """Drop the oldest batches while they end at or below `end_offset` (durable, and
        rewritten in the objects: reads must go there)."""
        while self.evict_oldest(end_offset):
            pass

    def evict_oldest(self, durable_end_offset: int) -> bool:
        """Drop the oldest batch if it ends at or below `durable_end_offset`; whether one was."""
        if self._budget is None or self._head == len(self._batches):
            return False
        oldest = self._batches[self._head]
        if oldest.end_offset > durable_end_offset:
            return False
        self._batches[self._head] = _EVICTED  # its bytes go now, its slot at compaction
        self._head += 1
        self.byte_count -= len(oldest.data)
        self._hold(-(len(oldest.data) + TAIL_BATCH_OVERHEAD_BYTES))
        self._budget.batches_evicted += 1
        self._start_offset = oldest.end_offset
        if self._head > 1024 and self._head * 2 > len(self._batches):
            del self._batches[: self._head]
            del self._bases[: self._head]
            self._head = 0
        return True
