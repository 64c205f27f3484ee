"""The rebuild's chain of blocks: the later leader epoch wins from the first offset it wrote,
duplicates and blocks straddling the durable end are skipped, and the log stops at a gap."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.log.object_format import BlockIndexEntry
from streamhouse.log.rebuild_plan import FoundBlock, plan_chain


def block(key: str, epoch: int, first: int, last: int) -> FoundBlock:
    return FoundBlock(key, BlockIndexEntry("t", 0, epoch, first, last, 0, 8, 10, 20, 0))


def keys(chain_blocks: tuple[FoundBlock, ...]) -> list[str]:
    return [b.key for b in chain_blocks]


def test_blocks_extend_the_log_from_the_durable_end() -> None:
    chain = plan_chain(10, [block("b", 1, 15, 19), block("a", 1, 10, 14), block("old", 1, 0, 9)])
    assert keys(chain.blocks) == ["a", "b"]
    assert (chain.start_offset, chain.end_offset) == (10, 20)
    assert [s.block.key for s in chain.skipped] == ["old"]


def test_a_later_epoch_wins_from_the_first_offset_it_wrote() -> None:
    fenced = block("fenced", 1, 10, 30)  # uploaded by a leader whose lease had moved on
    chain = plan_chain(10, [fenced, block("new", 2, 10, 12), block("newer", 2, 13, 40)])
    assert keys(chain.blocks) == ["new", "newer"]
    assert chain.end_offset == 41
    [skipped] = chain.skipped
    assert skipped.block is fenced and "later leader epoch" in skipped.why


def test_an_earlier_epoch_keeps_what_it_wrote_before_the_later_one_began() -> None:
    chain = plan_chain(0, [block("e1", 1, 0, 4), block("e1b", 1, 5, 9), block("e3", 3, 10, 12)])
    assert keys(chain.blocks) == ["e1", "e1b", "e3"]


def test_the_log_stops_at_a_gap() -> None:
    chain = plan_chain(0, [block("a", 1, 0, 4), block("c", 1, 8, 9)])
    assert keys(chain.blocks) == ["a"] and chain.end_offset == 5
    assert "gap" in chain.skipped[0].why


def test_a_retried_upload_is_used_once() -> None:
    chain = plan_chain(0, [block("x", 1, 0, 4), block("y", 1, 0, 4)])
    assert keys(chain.blocks) == ["x"] and "duplicates" in chain.skipped[0].why


def test_a_block_straddling_the_durable_end_is_skipped() -> None:
    chain = plan_chain(5, [block("s", 1, 3, 8), block("n", 1, 5, 8)])
    assert keys(chain.blocks) == ["n"] and "straddles" in chain.skipped[0].why


def test_a_partition_the_snapshot_does_not_know_starts_at_its_first_block() -> None:
    chain = plan_chain(None, [block("b", 4, 100, 109), block("c", 4, 110, 119)])
    assert (chain.start_offset, chain.end_offset) == (100, 120)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[FoundBlock], list[FoundBlock]]:
    """A partition's true log written by epochs in turn, plus what each deposed leader uploaded
    past the point its successor started from (fenced flushes)."""
    true_log: list[FoundBlock] = []
    garbage: list[FoundBlock] = []
    offset = 0
    for epoch in range(1, draw(st.integers(1, 5)) + 1):
        for _ in range(draw(st.integers(0, 4))):
            size = draw(st.integers(1, 5))
            true_log.append(block(f"e{epoch}-{offset}", epoch, offset, offset + size - 1))
            offset += size
        fenced_at = offset
        for _ in range(draw(st.integers(0, 2))):  # fenced: offsets a later epoch rewrites
            size = draw(st.integers(1, 6))
            key = f"fenced-e{epoch}-{fenced_at}"
            garbage.append(block(key, epoch, fenced_at, fenced_at + size - 1))
            fenced_at += size
    # a fenced block of the last epoch would be indistinguishable from real data; drop them
    last_epoch = max((b.leader_epoch for b in true_log + garbage), default=0)
    garbage = [b for b in garbage if b.leader_epoch < last_epoch and _rewritten(b, true_log)]
    return true_log, garbage


def _rewritten(fenced: FoundBlock, true_log: list[FoundBlock]) -> bool:
    """Whether a later epoch wrote from the fenced block's first offset or before (else no
    successor ever wrote there and the block would be the log itself)."""
    return any(
        b.leader_epoch > fenced.leader_epoch and b.first_offset <= fenced.first_offset
        for b in true_log
    )


@settings(max_examples=300, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_the_chain_is_the_true_log_whatever_was_fenced(
    history: tuple[list[FoundBlock], list[FoundBlock]], shuffler: object
) -> None:
    true_log, garbage = history
    found = true_log + garbage
    shuffler.shuffle(found)  # type: ignore[attr-defined]
    chain = plan_chain(0, found)
    assert keys(chain.blocks) == keys(tuple(true_log))


def test_a_merged_object_beside_the_small_ones_it_replaced_is_never_doubled() -> None:
    small = [block(f"s{i}", 1, 5 * i, 5 * i + 4) for i in range(4)]  # 0..19
    merged = [block("m", 1, 0, 7), block("m", 1, 8, 19)]  # re-blocked at other boundaries
    chain = plan_chain(None, [*small, *merged])
    assert (chain.start_offset, chain.end_offset) == (0, 20)
    covered = [o for b in chain.blocks for o in range(b.first_offset, b.last_offset + 1)]
    assert covered == list(range(20))
    assert len(chain.skipped) == len(small) + len(merged) - len(chain.blocks)


def test_small_objects_deleted_first_do_not_cut_the_log_short() -> None:
    # s0 is longer than the merged object's first block, so a greedy pick would take it; the
    # small object after it is gone already, and only the merged blocks reach the end
    gone_after = [block("s0", 1, 0, 9), block("s2", 1, 15, 19)]
    merged = [block("m", 1, 0, 7), block("m", 1, 8, 19)]
    chain = plan_chain(0, [*gone_after, *merged])
    assert chain.end_offset == 20 and keys(chain.blocks) == ["m", "m"]
