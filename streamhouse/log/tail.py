"""The in-memory tail of a partition: recent record batches in offset order, bounded in bytes.

Batches not yet durable are never evicted (they are still to be flushed);
durable ones are evicted oldest first once the tail holds more than its bound.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True)
class TailBatch:
    """A record batch with its offsets already assigned."""

    base_offset: int
    last_offset: int
    max_timestamp_ms: int
    data: bytes

    @property
    def end_offset(self) -> int:
        return self.last_offset + 1


class Tail:
    """Contiguous batches [start_offset, end_offset) of one partition."""

    def __init__(self, start_offset: int) -> None:
        self._batches: list[TailBatch] = []
        self._bases: list[int] = []
        self._head = 0  # batches before _head are evicted; compacted lazily
        self._start_offset = start_offset
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
        del self._batches[index:]
        del self._bases[index:]

    def evict(self, durable_end_offset: int, bytes_max: int) -> None:
        """Drop the oldest durable batches while the tail is over `bytes_max`."""
        while self.byte_count > bytes_max and self._head < len(self._batches):
            oldest = self._batches[self._head]
            if oldest.end_offset > durable_end_offset:
                break
            self._head += 1
            self.byte_count -= len(oldest.data)
            self._start_offset = oldest.end_offset
        if self._head > 1024 and self._head * 2 > len(self._batches):
            del self._batches[: self._head]
            del self._bases[: self._head]
            self._head = 0
