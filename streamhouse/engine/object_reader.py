"""Reads record batches back from objects: footers and decompressed blocks (indexed by offset
once), both cached with named bounds, then single-block range reads."""

from __future__ import annotations

from collections import OrderedDict

from streamhouse.errors import CorruptObject
from streamhouse.log.block_batches import BlockBatches
from streamhouse.log.object_format import (
    FOOTER_READ_GUESS_BYTES,
    BlockIndexEntry,
    ObjectFooter,
    decode_block,
    footer_from_tail,
)
from streamhouse.ports.buggify import READER_CACHE_MISS, Buggify
from streamhouse.ports.leases import SegmentRecord
from streamhouse.ports.object_store import ObjectStore

FOOTER_CACHE_ENTRIES_MAX = 4096


class ObjectReader:
    """Range reads of blocks, with the footers of recently read objects kept in memory."""

    def __init__(
        self, objects: ObjectStore, block_cache_bytes_max: int = 0, buggify: Buggify | None = None
    ) -> None:
        self._objects = objects
        self._buggify = buggify or Buggify()
        self._footers: OrderedDict[str, ObjectFooter] = OrderedDict()
        self._blocks: OrderedDict[tuple[str, int], BlockBatches] = OrderedDict()
        self._block_cache_bytes = 0
        self._block_cache_bytes_max = block_cache_bytes_max
        self.footer_reads = 0
        self.block_reads = 0
        self.block_cache_hits = 0

    async def footer(self, key: str) -> ObjectFooter:
        """The object's footer: one suffix read, a second only for footers over the guess."""
        cached = self._footers.get(key)
        if cached is not None:
            self._footers.move_to_end(key)
            return cached
        self.footer_reads += 1
        tail, size = await self._objects.get_suffix(key, FOOTER_READ_GUESS_BYTES)
        found = footer_from_tail(tail, size)
        if isinstance(found, int):
            tail, size = await self._objects.get_suffix(key, found)
            found = footer_from_tail(tail, size)
            assert not isinstance(found, int), key
        self._remember(key, found)
        return found

    def _remember(self, key: str, footer: ObjectFooter) -> None:
        self._footers[key] = footer
        while len(self._footers) > FOOTER_CACHE_ENTRIES_MAX:
            self._footers.popitem(last=False)

    async def read_block(self, segment: SegmentRecord) -> BlockBatches:
        """The batches of the block a segment row points at (from the cache when there)."""
        cache_key = (segment.object_key, segment.position)
        cached = self._blocks.get(cache_key)
        if cached is not None and self._buggify.fires(READER_CACHE_MISS):
            self._block_cache_bytes -= self._blocks.pop(cache_key).size_bytes  # read it again
            cached = None
        if cached is not None:
            self._blocks.move_to_end(cache_key)
            self.block_cache_hits += 1
            return cached
        footer = await self.footer(segment.object_key)
        entry = _entry_for(footer, segment)
        self.block_reads += 1
        packed = await self._objects.get_range(segment.object_key, entry.position, entry.length)
        block = BlockBatches(decode_block(packed, entry))
        self._cache_block(cache_key, block)
        return block

    @property
    def block_cache_bytes(self) -> int:
        return self._block_cache_bytes

    def _cache_block(self, cache_key: tuple[str, int], block: BlockBatches) -> None:
        if block.size_bytes > self._block_cache_bytes_max // 4:
            return  # one huge block must not flush the whole cache
        previous = self._blocks.pop(cache_key, None)  # read twice concurrently: keep one
        if previous is not None:
            self._block_cache_bytes -= previous.size_bytes
        self._blocks[cache_key] = block
        self._block_cache_bytes += block.size_bytes
        while self._block_cache_bytes > self._block_cache_bytes_max:
            _, evicted = self._blocks.popitem(last=False)
            self._block_cache_bytes -= evicted.size_bytes
        assert self._block_cache_bytes >= 0, self._block_cache_bytes


def _entry_for(footer: ObjectFooter, segment: SegmentRecord) -> BlockIndexEntry:
    for entry in footer.blocks:
        if entry.position == segment.position and entry.length == segment.length:
            same_partition = (entry.topic, entry.partition) == (segment.topic, segment.partition)
            if same_partition and entry.first_offset == segment.base_offset:
                return entry
    raise CorruptObject(
        f"object {segment.object_key} has no block for {segment.topic}-{segment.partition}"
        f"@{segment.base_offset} at byte {segment.position}: metadata and bucket disagree"
    )
