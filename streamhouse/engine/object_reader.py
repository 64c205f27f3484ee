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
# A second block of one object missing from the cache (a consumer of many partitions going
# through the objects a flush wrote, a block for each) reads the object's other blocks with
# it, still compressed, in one GET; they are decoded when asked for. Objects are remembered
# as missed once for this many objects, least recent forgotten first
MISSED_OBJECTS_MAX = 4096


class ObjectReader:
    """Range reads of blocks, with the footers of recently read objects kept in memory, and
    one budget (`block_cache_bytes_max`) for decoded blocks and whole objects read ahead."""

    def __init__(
        self, objects: ObjectStore, block_cache_bytes_max: int = 0, buggify: Buggify | None = None
    ) -> None:
        self._objects = objects
        self._buggify = buggify or Buggify()
        self._footers: OrderedDict[str, tuple[ObjectFooter, dict[int, BlockIndexEntry]]] = (
            OrderedDict()
        )
        self._blocks: OrderedDict[tuple[str, int], BlockBatches] = OrderedDict()
        self._packed: OrderedDict[str, tuple[int, bytes]] = OrderedDict()  # key: (start, data)
        self._missed: OrderedDict[str, None] = OrderedDict()
        self._block_cache_bytes = 0
        self._block_cache_bytes_max = block_cache_bytes_max
        self.footer_reads = 0
        self.block_reads = 0
        self.object_reads = 0  # whole objects read ahead
        self.block_cache_hits = 0

    async def footer(self, key: str) -> ObjectFooter:
        """The object's footer: one suffix read, a second only for footers over the guess."""
        return (await self._indexed_footer(key))[0]

    async def _indexed_footer(self, key: str) -> tuple[ObjectFooter, dict[int, BlockIndexEntry]]:
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
            if isinstance(found, int):  # the object changed between the two reads: not ours
                raise CorruptObject(f"object {key!r} changed while its footer was read")
        indexed = (found, {entry.position: entry for entry in found.blocks})
        self._footers[key] = indexed
        while len(self._footers) > FOOTER_CACHE_ENTRIES_MAX:
            self._footers.popitem(last=False)
        return indexed

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
        footer, by_position = await self._indexed_footer(segment.object_key)
        entry = _entry_for(footer, by_position, segment)
        block = BlockBatches(decode_block(await self._packed_block(footer, entry, segment), entry))
        self._cache_block(cache_key, block)
        return block

    async def _packed_block(
        self, footer: ObjectFooter, entry: BlockIndexEntry, segment: SegmentRecord
    ) -> bytes:
        """The block's compressed bytes: from the object read ahead, from a read of the whole
        object when this is its second block missed, else from a range read of the block."""
        key = segment.object_key
        packed = self._packed.get(key)
        if packed is not None:
            self._packed.move_to_end(key)
        else:
            packed = await self._read_ahead(footer, key)  # cached, unless evicted at once
        if packed is not None:
            start, data = packed
            return data[entry.position - start : entry.position - start + entry.length]
        self.block_reads += 1
        return await self._objects.get_range(key, entry.position, entry.length)

    async def _read_ahead(self, footer: ObjectFooter, key: str) -> tuple[int, bytes] | None:
        if key not in self._missed:
            self._missed[key] = None
            while len(self._missed) > MISSED_OBJECTS_MAX:
                self._missed.popitem(last=False)
            return None
        start = min(entry.position for entry in footer.blocks)
        end = max(entry.position + entry.length for entry in footer.blocks)
        if end - start > self._block_cache_bytes_max // 4:
            return None  # too large to keep: its blocks are read one by one
        del self._missed[key]
        self.object_reads += 1
        packed = (start, await self._objects.get_range(key, start, end - start))
        self._packed[key] = packed
        self._block_cache_bytes += end - start
        self._evict()
        return packed

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
        self._evict()

    def _evict(self) -> None:
        """Least recently used first: objects read ahead, then decoded blocks."""
        while self._block_cache_bytes > self._block_cache_bytes_max and self._packed:
            _, (_, data) = self._packed.popitem(last=False)
            self._block_cache_bytes -= len(data)
        while self._block_cache_bytes > self._block_cache_bytes_max and self._blocks:
            _, evicted = self._blocks.popitem(last=False)
            self._block_cache_bytes -= evicted.size_bytes
        assert self._block_cache_bytes >= 0, self._block_cache_bytes


def _entry_for(
    footer: ObjectFooter, by_position: dict[int, BlockIndexEntry], segment: SegmentRecord
) -> BlockIndexEntry:
    entry = by_position.get(segment.position)
    if entry is not None and entry.length == segment.length:
        same_partition = (entry.topic, entry.partition) == (segment.topic, segment.partition)
        if same_partition and entry.first_offset == segment.base_offset:
            return entry
    raise CorruptObject(
        f"object {segment.object_key} has no block for {segment.topic}-{segment.partition}"
        f"@{segment.base_offset} at byte {segment.position}: metadata and bucket disagree"
    )
