"""Transactions in one partition on its leader, as data: which producers have one open and where
it began, which ended where, the aborted ones' ranges, and the last stable offset (LSO).

A transaction opens in a partition with its producer's first transactional batch there and
ends with the COMMIT or ABORT marker its coordinator writes. The LSO is the first offset a
`read_committed` consumer may not read yet: the high watermark, or the first offset of the
earliest transaction that is open or whose marker is not below the high watermark yet (an
unsynced marker is not part of the log until the WAL holding it is). Each change is also
returned as a `TxnChange` for the flush to persist with the partition's durable end.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass

# Aborted transactions kept in memory per partition; older ones are answered from the
# metadata store (`covered_from` says from which marker offset this list is complete).
ABORTED_TXNS_KEPT_MAX = 4096


@dataclass(frozen=True, slots=True)
class AbortedTxn:
    """An aborted transaction's records in a partition: [first_offset, last_offset], the last
    being its ABORT marker (what Fetch's aborted-transaction list is built from)."""

    producer_id: int
    first_offset: int
    last_offset: int


@dataclass(frozen=True, slots=True)
class TxnBegan:
    """A producer's transaction opened in the partition at `first_offset`."""

    producer_id: int
    first_offset: int


@dataclass(frozen=True, slots=True)
class TxnEnded:
    """A producer's transaction that opened at `first_offset` ended with the marker at
    `marker_offset`."""

    producer_id: int
    first_offset: int
    marker_offset: int
    committed: bool


TxnChange = TxnBegan | TxnEnded


class PartitionTxns:
    """The transactions of one led partition (mutated only by its log store)."""

    def __init__(self, open_txns: Mapping[int, int], covered_from: int) -> None:
        self._open: dict[int, int] = dict(open_txns)  # producer id -> first offset
        self._unstable: list[TxnEnded] = []  # ended; marker not below the high watermark yet
        self._aborted: list[AbortedTxn] = []  # in marker order, every marker >= covered_from
        self._aborted_ends: list[int] = []  # their last offsets, for bisection
        self.covered_from = covered_from

    def open_txns(self) -> dict[int, int]:
        """Producer id -> first offset of every transaction open here."""
        return dict(self._open)

    def first_offset(self, producer_id: int) -> int | None:
        """Where the producer's open transaction began here, or None."""
        return self._open.get(producer_id)

    def began(self, producer_id: int, offset: int) -> TxnBegan | None:
        """A transactional batch of the producer was appended at `offset`: its transaction
        opens here unless it is open already."""
        if producer_id in self._open:
            return None
        self._open[producer_id] = offset
        return TxnBegan(producer_id, offset)

    def ended(self, producer_id: int, marker_offset: int, committed: bool) -> TxnEnded | None:
        """A marker of the producer was appended at `marker_offset`: its open transaction (if
        any: a marker may also come for a transaction that wrote nothing here) ends."""
        first_offset = self._open.pop(producer_id, None)
        if first_offset is None:
            return None
        assert first_offset < marker_offset, (first_offset, marker_offset)
        ended = TxnEnded(producer_id, first_offset, marker_offset, committed)
        self._unstable.append(ended)
        if not committed:
            self._aborted.append(AbortedTxn(producer_id, first_offset, marker_offset))
            self._aborted_ends.append(marker_offset)
        return ended

    def synced(self, high_watermark: int) -> None:
        """Markers below `high_watermark` are part of the log for good."""
        if self._unstable and self._unstable[0].marker_offset < high_watermark:
            self._unstable = [e for e in self._unstable if e.marker_offset >= high_watermark]

    def last_stable_offset(self, high_watermark: int) -> int:
        lso = high_watermark
        for first_offset in self._open.values():
            lso = min(lso, first_offset)
        for ended in self._unstable:
            if ended.marker_offset >= high_watermark:
                lso = min(lso, ended.first_offset)
        return lso

    def truncate_from(self, offset: int) -> None:
        """Every offset from `offset` on is void (a failed WAL write): undo what it held."""
        self._open = {pid: first for pid, first in self._open.items() if first < offset}
        kept = []
        for ended in self._unstable:
            if ended.marker_offset < offset:
                kept.append(ended)
            elif ended.first_offset < offset:  # its marker is void: open again
                self._open[ended.producer_id] = ended.first_offset
        self._unstable = kept
        cut = bisect.bisect_left(self._aborted_ends, offset)
        del self._aborted[cut:]
        del self._aborted_ends[cut:]

    def aborted_between(self, from_offset: int, to_offset: int) -> list[AbortedTxn]:
        """Aborted transactions held here with records in [from_offset, to_offset]
        (complete for markers at or above `covered_from`)."""
        start = bisect.bisect_left(self._aborted_ends, from_offset)
        return [a for a in self._aborted[start:] if a.first_offset <= to_offset]

    def made_durable(self, durable_end_offset: int) -> None:
        """Keep at most ABORTED_TXNS_KEPT_MAX aborted transactions, forgetting the oldest of
        those whose markers are durable (the metadata store has them)."""
        surplus = len(self._aborted) - ABORTED_TXNS_KEPT_MAX
        if surplus > 0:
            durable = bisect.bisect_left(self._aborted_ends, durable_end_offset)
            cut = min(surplus, durable)
            if cut > 0:
                self.forget_aborted_below(self._aborted_ends[cut - 1] + 1)

    def forget_aborted_below(self, offset: int) -> None:
        """Drop aborted transactions whose marker is below `offset` (the metadata store must
        hold them already); readers below it ask the store."""
        cut = bisect.bisect_left(self._aborted_ends, offset)
        del self._aborted[:cut]
        del self._aborted_ends[:cut]
        self.covered_from = max(self.covered_from, offset)
