"""A decoded block's batches indexed once: sequential reads at any size limit return every
batch exactly once, in order, and say when the next one was left out for lack of room."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.errors import CorruptObject
from streamhouse.kafka.batch_header import parse_header, with_base_offset
from streamhouse.kafka.records import SimpleRecord, build_batch
from streamhouse.log.block_batches import INDEX_BYTES_PER_BATCH, BlockBatches


def _block(record_counts: list[int], first_offset: int = 0) -> tuple[bytes, list[bytes]]:
    batches = []
    offset = first_offset
    for count in record_counts:
        records = [SimpleRecord(None, b"v%d" % (offset + r), (), 7) for r in range(count)]
        batches.append(with_base_offset(build_batch(records), offset))
        offset += count
    return b"".join(batches), batches


@given(
    st.lists(st.integers(1, 6), min_size=1, max_size=12),
    st.lists(st.integers(0, 400), min_size=1, max_size=30),
)
@settings(max_examples=200, deadline=None)
def test_sequential_reads_return_every_batch_once_in_order(
    record_counts: list[int], limits: list[int]
) -> None:
    raw, batches = _block(record_counts, first_offset=100)
    block = BlockBatches(raw)
    assert len(block) == len(batches)
    offset, found, step = 100, [], 0
    end_offset = 100 + sum(record_counts)
    while offset < end_offset:
        views, full = block.read(offset, end_offset, limits[step % len(limits)], first_always=True)
        step += 1
        assert views, "the first batch comes whatever the limit"
        found += [bytes(view) for view in views]
        offset = parse_header(views[-1]).last_offset + 1
        assert full == (offset < end_offset)  # left something out, or read to the end
    assert found == batches


def test_room_and_the_first_batch() -> None:
    raw, batches = _block([3, 3, 3])
    block = BlockBatches(raw)
    assert block.read(0, 9, 0, first_always=False) == ([], True)  # nothing fits
    views, full = block.read(0, 9, 0, first_always=True)
    assert [bytes(v) for v in views] == batches[:1] and full
    views, full = block.read(4, 9, len(raw), first_always=False)  # from inside the 2nd batch
    assert [bytes(v) for v in views] == batches[1:] and not full
    views, full = block.read(0, 6, len(raw), first_always=False)  # stops at the end offset
    assert [bytes(v) for v in views] == batches[:2] and not full
    assert block.read(9, 12, 1 << 20, first_always=True) == ([], False)  # past the block


def test_views_share_the_block_and_the_index_is_counted() -> None:
    raw, _ = _block([2, 2])
    block = BlockBatches(raw)
    views, _ = block.read(0, 4, 1 << 20, first_always=True)
    assert all(view.obj is raw for view in views)  # not copies
    assert block.size_bytes >= len(raw) + 2 * INDEX_BYTES_PER_BATCH


def test_a_block_whose_lengths_do_not_tile_it_is_corrupt() -> None:
    raw, _ = _block([2, 2])
    for broken in (raw[:-1], raw + b"\x00" * 5, raw[:8] + b"\x00\x00\x00\x01" + raw[12:]):
        with pytest.raises(CorruptObject):
            BlockBatches(broken)
