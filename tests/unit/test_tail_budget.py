"""One tail budget for every partition of an agent: durable batches are evicted oldest first in
the order they became durable, whichever partition holds them; batches awaiting their flush
never are; a partition no longer led leaves the budget. Its bound holds at 1,000 partitions."""

from __future__ import annotations

import sys

from streamhouse.log.tail import TAIL_BATCH_OVERHEAD_BYTES, Tail, TailBatch, TailBudget

BATCH_BYTES = 100
COST = BATCH_BYTES + TAIL_BATCH_OVERHEAD_BYTES


def _append(tail: Tail, count: int = 1) -> None:
    for _ in range(count):
        offset = tail.end_offset
        tail.append(TailBatch(offset, offset, 0, b"x" * BATCH_BYTES))


def _two_tails(bytes_max: int, batches: tuple[int, int]) -> tuple[TailBudget, Tail, Tail]:
    """A budget and two tails holding that many batches, the first tail's durable."""
    budget = TailBudget(bytes_max)
    first, second = Tail(0, budget), Tail(0, budget)
    _append(first, batches[0])
    _append(second, batches[1])
    first.made_durable(batches[0])
    return budget, first, second


def test_oldest_durable_batches_go_first_across_partitions() -> None:
    budget, first, second = _two_tails(4 * COST, (2, 2))
    second.made_durable(2)
    assert budget.byte_count == 4 * COST and budget.batches_evicted == 0  # within the bound
    _append(second, 2)  # over: the oldest durable ones go, first's before second's
    assert budget.batches_evicted == 2
    assert (first.start_offset, second.start_offset) == (2, 0)
    assert budget.byte_count == 4 * COST
    second.made_durable(4)
    assert budget.byte_count == 4 * COST  # durable now, but the sum is within the bound


def test_batches_awaiting_their_flush_are_never_evicted() -> None:
    budget = TailBudget(COST)
    tail = Tail(0, budget)
    _append(tail, 5)
    assert budget.byte_count == 5 * COST and tail.start_offset == 0
    tail.made_durable(3)
    assert tail.start_offset == 3 and budget.byte_count == 2 * COST
    assert tail.read(3, 5, 1 << 20)[0].base_offset == 3


def test_a_detached_tail_leaves_the_budget() -> None:
    budget, dropped, kept = _two_tails(10 * COST, (3, 2))
    dropped.detach()
    assert budget.byte_count == 2 * COST
    _append(dropped, 1)  # a late append to a partition no longer led is not counted
    kept.made_durable(2)
    assert budget.byte_count == 2 * COST
    kept.truncate_from(1)
    assert budget.byte_count == COST


def test_the_bound_holds_at_a_thousand_partitions() -> None:
    bytes_max = 64 * COST
    budget = TailBudget(bytes_max)
    tails = [Tail(0, budget) for _ in range(1000)]
    for round_ in range(3):
        for tail in tails:
            _append(tail, 2)
            tail.made_durable(tail.end_offset)
            assert budget.byte_count <= bytes_max
        assert sum(len(t) for t in tails) * COST == budget.byte_count, round_
    assert sum(t.byte_count for t in tails) <= bytes_max


def test_an_evicted_batch_is_released_at_once() -> None:
    budget = TailBudget(0)
    tail = Tail(0, budget)
    data = b"y" * BATCH_BYTES
    tail.append(TailBatch(0, 0, 0, data))
    before = sys.getrefcount(data)
    tail.made_durable(1)
    assert sys.getrefcount(data) == before - 1  # not kept by the tail's list until compaction
    assert tail.read(0, 1, 1 << 20) == [] and tail.start_offset == 1
