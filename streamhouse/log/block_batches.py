"""The record batches of one decoded object block, indexed by offset once, sliced without copies."""

from __future__ import annotations

import bisect
import struct
from array import array

from streamhouse.errors import CorruptObject
from streamhouse.kafka.batch_header import BATCH_LENGTH_MIN, HEADER_SIZE, LOG_OVERHEAD

INDEX_BYTES_PER_BATCH = 3 * 8  # base offset, end offset, byte position: int64 each
BLOCK_OVERHEAD_BYTES = 256  # the object itself, its arrays and its cache entry, about
DELTA_AT = 23  # where a batch header holds its last offset delta
_BASE_AND_LENGTH = struct.Struct(">qi")
_LAST_OFFSET_DELTA = struct.Struct(">i")


class BlockBatches:
    """A block's raw batches and where each starts. The block's checksum was verified when it
    was decoded, so building the index reads only each batch's offsets and length (no batch
    CRC, no full header parse: a cold read costs that per batch, and batches may hold one
    record each); a length that does not tile the block is CorruptObject."""

    __slots__ = ("_bases", "_ends", "_starts", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._bases = array("q")
        self._ends = array("q")  # last offset + 1
        self._starts = array("q")  # byte position; one more entry: len(raw)
        position, size = 0, len(raw)
        while position < size:
            if size - position < HEADER_SIZE:
                raise CorruptObject(f"a block ends inside a batch header at byte {position}")
            base_offset, batch_length = _BASE_AND_LENGTH.unpack_from(raw, position)
            (last_offset_delta,) = _LAST_OFFSET_DELTA.unpack_from(raw, position + DELTA_AT)
            end = position + LOG_OVERHEAD + batch_length
            if batch_length < BATCH_LENGTH_MIN or end > size or last_offset_delta < 0:
                raise CorruptObject(
                    f"a block's batch at byte {position} declares {batch_length} bytes and "
                    f"last offset delta {last_offset_delta}, with {size - position} left"
                )
            self._bases.append(base_offset)
            self._ends.append(base_offset + last_offset_delta + 1)
            self._starts.append(position)
            position = end
        self._starts.append(position)

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
