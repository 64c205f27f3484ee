"""Idempotent producer state: in-order batches are accepted once, retries of the last five are
duplicates with their first offsets, gaps and old epochs are refused, sequences wrap, and
truncation forgets exactly the voided batches."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.errors import ErrorCode
from streamhouse.log.producer_state import (
    BATCHES_REMEMBERED,
    SEQUENCE_MODULUS,
    Accept,
    Duplicate,
    ProducerBatch,
    ProducerStates,
    Refuse,
    SequencedBatch,
    last_sequence,
)

PID = 7


def _append(states: ProducerStates, epoch: int, first: int, count: int, offset: int) -> int:
    assert states.judge(PID, epoch, first, count) == Accept()
    batch = SequencedBatch(first, last_sequence(first, count), offset, offset + count - 1)
    states.record(ProducerBatch(PID, epoch, batch), now_ms=offset)
    return offset + count


def test_in_order_duplicate_gap_and_epochs() -> None:
    states = ProducerStates(producers_max=10)
    end = _append(states, 0, 0, 3, 0)
    end = _append(states, 0, 3, 2, end)
    assert states.judge(PID, 0, 0, 3) == Duplicate(SequencedBatch(0, 2, 0, 2))
    refused = states.judge(PID, 0, 9, 1)
    assert isinstance(refused, Refuse) and refused.code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    refused = states.judge(PID, 1, 5, 1)
    assert isinstance(refused, Refuse) and refused.code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    _append(states, 1, 0, 1, end)  # a bumped epoch starts again at 0
    refused = states.judge(PID, 0, 5, 1)
    assert isinstance(refused, Refuse) and refused.code == ErrorCode.INVALID_PRODUCER_EPOCH
    refused = states.judge(PID + 1, 0, 4, 1)
    assert isinstance(refused, Refuse) and refused.code == ErrorCode.UNKNOWN_PRODUCER_ID


def test_sequences_wrap_at_two_to_the_31() -> None:
    states = ProducerStates(producers_max=10)
    end = _append(states, 0, 0, 1, 0)
    first = SEQUENCE_MODULUS - 2
    states.record(
        ProducerBatch(PID, 0, SequencedBatch(1, first - 1, end, end + first - 2)), now_ms=1
    )
    end = _append(states, 0, first, 3, end + first - 1)  # covers 2^31-2, 2^31-1, 0
    assert states.judge(PID, 0, 1, 1) == Accept()


def test_truncation_forgets_voided_batches_and_empty_producers() -> None:
    states = ProducerStates(producers_max=10)
    end = _append(states, 0, 0, 2, 0)
    _append(states, 0, 2, 2, end)
    states.truncate_from(end)  # the second batch never reached the disk
    assert states.judge(PID, 0, 2, 2) == Accept()
    states.truncate_from(0)
    assert len(states) == 0


def test_the_least_recently_appending_producer_is_forgotten_first() -> None:
    states = ProducerStates(producers_max=2)
    for producer_id, now_ms in ((1, 30), (2, 10), (3, 20)):
        batch = SequencedBatch(0, 0, producer_id, producer_id)
        states.record(ProducerBatch(producer_id, 0, batch), now_ms)
    assert [s.producer_id for s in states.snapshots()] == [1, 3]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 4), st.integers(0, 12), st.booleans()), min_size=1, max_size=40
    )
)
def test_a_retrying_producer_never_lands_a_batch_twice(
    steps: list[tuple[int, int, bool]],
) -> None:
    """Each step sends the next batch (of 1-4 records) and maybe retries an earlier one; every
    batch lands once, a retry within the last five answers the first offsets, older ones are
    refused out of order."""
    states = ProducerStates(producers_max=10)
    sent: list[SequencedBatch] = []
    next_sequence = next_offset = 0
    for count, back, retry in steps:
        verdict = states.judge(PID, 0, next_sequence, count)
        assert verdict == Accept()
        batch = SequencedBatch(
            next_sequence,
            last_sequence(next_sequence, count),
            next_offset,
            next_offset + count - 1,
        )
        states.record(ProducerBatch(PID, 0, batch), now_ms=next_offset)
        sent.append(batch)
        next_sequence, next_offset = batch.last_sequence + 1, batch.last_offset + 1
        if retry and back < len(sent):
            old = sent[-1 - back]
            count_old = old.last_sequence - old.first_sequence + 1
            verdict = states.judge(PID, 0, old.first_sequence, count_old)
            if back < BATCHES_REMEMBERED:
                assert verdict == Duplicate(old)
            else:
                assert isinstance(verdict, Refuse)
                assert verdict.code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
