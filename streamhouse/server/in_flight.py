"""The bound on one connection's requests awaiting their answers: a count and a sum of bytes.

A client pipelines as many requests as it likes; the listener reads on while the ones
read but not yet answered stay within both bounds, and pauses reading past either (the
socket's buffers then push back on the client). Bounding bytes rather than a small count
lets every request a producer sends inside one flush window join that window: with
acks=all a request waits up to `flush_interval_ms`, so a count of 64 capped a one-record
producer at 64 records per window. One request larger than the byte bound is admitted
alone, once nothing else is in flight (frames are bounded by `frame_bytes_max`).
"""

from __future__ import annotations

import asyncio


class InFlightBudget:
    """Admits requests while `count_max` and `bytes_max` hold; FIFO, one waiter at a time."""

    def __init__(self, count_max: int, bytes_max: int) -> None:
        assert count_max >= 1 and bytes_max >= 1, (count_max, bytes_max)
        self.count_max = count_max
        self.bytes_max = bytes_max
        self.count = 0
        self.bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._waiting_bytes = 0

    def fits(self, size: int) -> bool:
        if self.count == 0:
            return True  # alone, any request fits
        return self.count < self.count_max and self.bytes + size <= self.bytes_max

    def take(self, size: int) -> bool:
        """Count in a request of `size` bytes if it fits now (the common case: no waiting)."""
        if self._waiter is not None or not self.fits(size):
            return False
        self.count += 1
        self.bytes += size
        return True

    async def acquire(self, size: int) -> None:
        """Wait until a request of `size` bytes fits, then count it in."""
        assert self._waiter is None, "one connection reads one request at a time"
        assert size >= 0, size
        if not self.fits(size):
            self._waiter = asyncio.get_running_loop().create_future()
            self._waiting_bytes = size
            try:
                await self._waiter
            finally:
                self._waiter = None
        self.count += 1
        self.bytes += size

    def release(self, size: int) -> None:
        """Count out an answered request of `size` bytes (wakes the reader when it fits)."""
        assert self.count >= 1 and self.bytes >= size, (self.count, self.bytes, size)
        self.count -= 1
        self.bytes -= size
        waiter = self._waiter
        if waiter is not None and not waiter.done() and self.fits(self._waiting_bytes):
            waiter.set_result(None)
