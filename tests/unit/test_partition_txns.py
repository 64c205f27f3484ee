"""A partition's transactions: where they open and end, the last stable offset, the aborted
ranges readers are told of, and what a void range undoes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streamhouse.log.partition_txns import (
    ABORTED_TXNS_KEPT_MAX,
    AbortedTxn,
    PartitionTxns,
    TxnBegan,
    TxnEnded,
)


def test_an_open_transaction_holds_the_stable_offset_until_its_marker_is_synced() -> None:
    txns = PartitionTxns({}, 0)
    assert txns.last_stable_offset(3) == 3
    assert txns.began(7, 3) == TxnBegan(7, 3)
    assert txns.began(7, 4) is None  # open already
    assert txns.last_stable_offset(5) == 3
    assert txns.ended(7, 5, committed=True) == TxnEnded(7, 3, 5, True)
    txns.synced(5)
    assert txns.last_stable_offset(5) == 3  # the marker at 5 is not below the watermark
    txns.synced(6)
    assert txns.last_stable_offset(6) == 6
    assert txns.aborted_between(0, 10) == []  # committed


def test_aborted_ranges_are_listed_by_overlap() -> None:
    txns = PartitionTxns({}, 0)
    txns.began(1, 0)
    txns.began(2, 1)
    txns.ended(1, 2, committed=False)
    txns.ended(2, 3, committed=False)
    txns.began(1, 4)
    txns.ended(1, 6, committed=False)
    assert txns.aborted_between(0, 0) == [AbortedTxn(1, 0, 2)]
    assert txns.aborted_between(0, 1) == [AbortedTxn(1, 0, 2), AbortedTxn(2, 1, 3)]
    assert txns.aborted_between(3, 3) == [AbortedTxn(2, 1, 3)]
    assert txns.aborted_between(4, 9) == [AbortedTxn(1, 4, 6)]
    assert txns.aborted_between(7, 9) == []


def test_a_marker_for_no_open_transaction_changes_nothing() -> None:
    txns = PartitionTxns({4: 10}, 12)
    assert txns.ended(9, 13, committed=False) is None
    assert txns.last_stable_offset(14) == 10  # recovered open transaction of producer 4
    assert txns.ended(4, 14, committed=True) == TxnEnded(4, 10, 14, True)


def test_a_void_range_reopens_a_transaction_whose_marker_it_held() -> None:
    txns = PartitionTxns({}, 0)
    txns.began(1, 0)
    txns.ended(1, 2, committed=False)
    txns.began(2, 3)
    txns.truncate_from(2)
    assert txns.open_txns() == {1: 0}
    assert txns.aborted_between(0, 10) == []
    assert txns.last_stable_offset(2) == 0


def test_held_aborted_transactions_are_bounded_by_what_is_durable() -> None:
    txns = PartitionTxns({}, 0)
    count = ABORTED_TXNS_KEPT_MAX + 10
    for index in range(count):
        txns.began(1, 2 * index)
        txns.ended(1, 2 * index + 1, committed=False)
    txns.made_durable(11)  # markers 1, 3, ..., 9 durable: only those may go
    assert txns.covered_from == 10
    assert len(txns.aborted_between(0, 2 * count)) == count - 5
    txns.made_durable(2 * count)
    assert len(txns.aborted_between(0, 2 * count)) == ABORTED_TXNS_KEPT_MAX
    assert txns.covered_from == 20


@st.composite
def _histories(draw: st.DrawFn) -> list[tuple[str, int, bool]]:
    """Appends in offset order: ("data", producer, _) or ("marker", producer, committed)."""
    steps = st.tuples(st.sampled_from(["data", "marker"]), st.integers(0, 3), st.booleans())
    return draw(st.lists(steps, max_size=40))


@given(_histories(), st.integers(0, 40), st.integers(0, 40))
def test_stable_offset_matches_a_rescan_of_the_log(
    history: list[tuple[str, int, bool]], synced_upto: int, cut: int
) -> None:
    """Model: the LSO is the first offset of the earliest transaction whose marker is not
    below the high watermark; a truncation is the same as never having appended."""
    txns = PartitionTxns({}, 0)
    for offset, (kind, producer, committed) in enumerate(history):
        if kind == "data":
            txns.began(producer, offset)
        else:
            txns.ended(producer, offset, committed)
    high_watermark = min(synced_upto, len(history))
    cut = max(cut, high_watermark)
    txns.synced(high_watermark)
    txns.truncate_from(cut)
    kept = history[:cut]
    first: dict[int, int] = {}
    expected = high_watermark
    aborted = []
    for offset, (kind, producer, committed) in enumerate(kept):
        if kind == "data":
            first.setdefault(producer, offset)
        elif producer in first:
            began = first.pop(producer)
            if offset >= high_watermark:
                expected = min(expected, began)
            if not committed:
                aborted.append(AbortedTxn(producer, began, offset))
    for began in first.values():
        expected = min(expected, began)
    assert txns.last_stable_offset(high_watermark) == expected
    assert txns.open_txns() == first
    assert txns.aborted_between(0, len(history)) == aborted
