"""The record batches of one decoded object block, indexed by offset once, sliced without copies."""

from __future__ import annotations

import bisect
from array import array

from streamhouse.kafka.batch_header import iter_batches

INDEX_BYTES_PER_BATCH = 3 * 8  # base offset, end offset, byte position: int64 each
BLOCK_OVERHEAD_BYTES = 256  # the object itself, its arrays and its cache entry, about


class BlockBatches:
    """A block's raw batches and where each starts: validated (CRC included) once, when built,
    instead of at every read of a cached block."""

    __slots__ = ("_bases", "_ends", "_starts", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._bases = array("q")
        self._ends = array("q")  # last offset + 1
        self._starts = array("q")  # byte position; one more entry: len(raw)
        position = 0
        for header, view in iter_batches(raw, from_producer=False):
            self._bases.append(header.base_offset)
            self._ends.append(header.last_offset + 1)
            self._starts.append(position)
            position += len(view)
        self._starts.append(position)
        assert position == len(raw), (position, len(raw))

    def __len__(self) -> int:
        return len(self._bases)

    @property
    def size_bytes(self) -> int:
        """What the block costs a cache: its bytes and its index."""
        return len(self.raw) + INDEX_BYTES_PER_BATCH * len(self) + BLOCK_OVERHEAD_BYTES

    def read(
        self, offset: int, end_offset: int, bytes_max: int, *, first_always: bool
    ) -> tuple[list[memoryview], bool]:
        """Views of the batches holding offsets from `offset` and starting below `end_offset`,
        within `bytes_max` (the first one regardless when `first_always`), and whether the
        next one was left out for lack of room (so nothing after this block may follow)."""
        index = bisect.bisect_right(self._ends, offset)
        view = memoryview(self.raw)
        found: list[memoryview] = []
        size_bytes = 0
        while index < len(self._bases) and self._bases[index] < end_offset:
            start, end = self._starts[index], self._starts[index + 1]
            if size_bytes + end - start > bytes_max and (found or not first_always):
                return found, True
            found.append(view[start:end])
            size_bytes += end - start
            index += 1
        return found, False
