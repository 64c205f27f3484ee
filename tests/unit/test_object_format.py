"""Object format: whole round trips, footer and single-block range reads, corruption detection."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.object_store import SimObjectStore
from sim.rng import SeededRng
from streamhouse.engine.object_reader import ObjectReader
from streamhouse.errors import CorruptObject
from streamhouse.kafka.records import SimpleRecord, build_batch
from streamhouse.log.object_format import (
    FOOTER_READ_GUESS_BYTES,
    TRAILER_BYTES,
    BlockSpec,
    decode_block,
    decode_object,
    encode_object,
    footer_from_tail,
)
from streamhouse.ports.leases import SegmentRecord

block_specs = st.builds(
    lambda topic, partition, epoch, first, span, ts, data: BlockSpec(
        topic, partition, epoch, first, first + span, ts, data
    ),
    st.text(min_size=1, max_size=40),
    st.integers(0, 2**31 - 1),
    st.integers(-1, 2**31 - 1),
    st.integers(0, 2**62),
    st.integers(0, 1000),
    st.integers(-1, 2**62),
    st.binary(max_size=3000),
)


@given(st.lists(block_specs, max_size=12), st.text(max_size=20), st.integers(0, 2**62))
@settings(max_examples=200, deadline=None)
def test_round_trip_whole_object(blocks: list[BlockSpec], agent: str, created_ms: int) -> None:
    data, footer = encode_object(blocks, "org-1", agent, created_ms)
    decoded_footer, raw_blocks = decode_object(data)
    assert decoded_footer == footer
    assert raw_blocks == [spec.data for spec in blocks]
    for spec, entry in zip(blocks, footer.blocks, strict=True):
        assert (entry.topic, entry.partition, entry.leader_epoch) == (
            spec.topic,
            spec.partition,
            spec.leader_epoch,
        )
        assert (entry.first_offset, entry.last_offset) == (spec.first_offset, spec.last_offset)
        assert entry.max_timestamp_ms == spec.max_timestamp_ms
        assert entry.raw_length == len(spec.data)


@given(st.lists(block_specs, min_size=1, max_size=8), st.data())
@settings(max_examples=200, deadline=None)
def test_range_reads_through_the_reader(blocks: list[BlockSpec], data: st.DataObject) -> None:
    store = SimObjectStore(None, SeededRng(1))
    index = data.draw(st.integers(0, len(blocks) - 1))
    values = data.draw(st.lists(st.binary(max_size=200), min_size=1, max_size=5))
    batches = [build_batch([SimpleRecord(None, v, (), 5)]) for v in values]
    blocks[index] = replace(blocks[index], data=b"".join(batches))  # a reader parses batches
    payload, footer = encode_object(blocks, "o", "agent", 1)
    asyncio.run(store.put("k.obj", payload))
    entry = footer.blocks[index]
    segment = SegmentRecord(
        entry.topic,
        entry.partition,
        entry.first_offset,
        entry.last_offset,
        entry.leader_epoch,
        entry.max_timestamp_ms,
        "k.obj",
        entry.position,
        entry.length,
    )
    reader = ObjectReader(store)
    block = asyncio.run(reader.read_block(segment))
    assert block.raw == blocks[index].data and len(block) == len(batches)
    assert reader.footer_reads == 1 and reader.block_reads == 1


def test_large_footer_needs_a_second_suffix_read() -> None:
    blocks = [BlockSpec("t" * 200, p, 0, 0, 0, 0, b"x") for p in range(600)]
    payload, footer = encode_object(blocks, "o", "a", 1)
    tail = payload[-FOOTER_READ_GUESS_BYTES:]
    needed = footer_from_tail(tail, len(payload))
    assert isinstance(needed, int) and needed > FOOTER_READ_GUESS_BYTES
    assert footer_from_tail(payload[-needed:], len(payload)) == footer
    store = SimObjectStore(None, SeededRng(1))
    asyncio.run(store.put("big.obj", payload))
    assert asyncio.run(ObjectReader(store).footer("big.obj")) == footer


def test_empty_object_round_trips() -> None:
    payload, footer = encode_object([], "o", "a", 5)
    assert decode_object(payload) == (footer, [])


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_any_flipped_byte_is_detected(data: st.DataObject) -> None:
    blocks = [
        BlockSpec("t", 0, 1, 10, 19, 99, b"batch-bytes" * 20),
        BlockSpec("u", 3, 1, 0, 0, 5, b"z"),
    ]
    payload, _ = encode_object(blocks, "o", "a", 1)
    position = data.draw(st.integers(0, len(payload) - 1))
    flip = data.draw(st.integers(1, 255))
    corrupt = bytearray(payload)
    corrupt[position] ^= flip
    with pytest.raises(CorruptObject):
        decode_object(bytes(corrupt))


def test_truncated_object_is_detected() -> None:
    payload, _ = encode_object([BlockSpec("t", 0, 1, 0, 0, 0, b"abc")], "o", "a", 1)
    for cut in range(1, len(payload)):
        with pytest.raises(CorruptObject):
            decode_object(payload[:cut])


def test_block_checked_against_its_entry() -> None:
    payload, footer = encode_object([BlockSpec("t", 0, 1, 0, 0, 0, b"abc")], "o", "a", 1)
    entry = footer.blocks[0]
    packed = payload[entry.position : entry.position + entry.length]
    assert decode_block(packed, entry) == b"abc"
    with pytest.raises(CorruptObject):
        decode_block(packed[:-1], entry)
    assert payload[-TRAILER_BYTES:][8:12] == b"SHOF"


def test_a_second_block_missed_reads_the_rest_of_its_object_at_once() -> None:
    batches = [build_batch([SimpleRecord(None, b"v%d" % p, (), 5)]) for p in range(4)]
    blocks = [BlockSpec("t", p, 0, 0, 0, 0, batches[p]) for p in range(4)]
    payload, footer = encode_object(blocks, "o", "a", 1)
    store = SimObjectStore(None, SeededRng(1))
    asyncio.run(store.put("k.obj", payload))
    reader = ObjectReader(store, block_cache_bytes_max=1 << 20)

    def segment(p: int) -> SegmentRecord:
        entry = footer.blocks[p]
        return SegmentRecord("t", p, 0, 0, 0, 0, "k.obj", entry.position, entry.length)

    for p in range(4):
        assert asyncio.run(reader.read_block(segment(p))).raw == batches[p]
    assert (reader.block_reads, reader.object_reads) == (1, 1)  # then every other block
    assert reader.block_cache_bytes <= 1 << 20
    tiny = ObjectReader(store, block_cache_bytes_max=64)  # an object over a quarter of it
    for p in range(4):
        asyncio.run(tiny.read_block(segment(p)))
    assert (tiny.block_reads, tiny.object_reads) == (4, 0)


def test_an_object_read_ahead_and_evicted_at_once_still_serves_its_block() -> None:
    big = [build_batch([SimpleRecord(None, bytes(range(256)) * 8, (), 5)]) for _ in range(3)]
    blocks = [BlockSpec("t", p, 0, 0, 0, 0, big[p]) for p in range(3)]
    payload, footer = encode_object(blocks, "o", "a", 1, zstd_level=1)
    store = SimObjectStore(None, SeededRng(1))
    asyncio.run(store.put("k.obj", payload))
    region = sum(entry.length for entry in footer.blocks)
    reader = ObjectReader(store, block_cache_bytes_max=4 * region)  # the object fits a quarter
    for p in (0, 1, 2, 0):
        entry = footer.blocks[p]
        segment = SegmentRecord("t", p, 0, 0, 0, 0, "k.obj", entry.position, entry.length)
        assert asyncio.run(reader.read_block(segment)).raw == big[p]
    assert reader.block_cache_bytes <= 4 * region
