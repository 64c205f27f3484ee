"""The transaction state machine: Kafka's transitions, the fencing of older epochs, retries,
and a Hypothesis state machine that drives it with any sequence of requests and checks that
every move is one the table allows and that epochs never go back."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from streamhouse.errors import ErrorCode
from streamhouse.log import txn_state
from streamhouse.log.txn_state import (
    PRODUCER_EPOCH_MAX,
    TRANSITIONS,
    Moved,
    Refused,
    Transaction,
    TxnState,
    Unchanged,
)
from streamhouse.names import TopicPartition
from tests.property_budget import examples

S = TxnState
TP0 = TopicPartition("orders", 0)
TP1 = TopicPartition("orders", 1)
T0_MS = 1_000
TIMEOUT_MS = 60_000
PID = 42


def _fresh() -> Transaction:
    return txn_state.first_init("tx", PID, TIMEOUT_MS, T0_MS)


def _moved(outcome: txn_state.Outcome) -> Transaction:
    assert isinstance(outcome, Moved), outcome
    return outcome.txn


def _ongoing() -> Transaction:
    return _moved(txn_state.add_partitions(_fresh(), PID, 0, frozenset({TP0}), T0_MS + 1))


def test_the_table_is_kafkas() -> None:
    assert TRANSITIONS[S.PREPARE_COMMIT] == {S.COMPLETE_COMMIT}
    assert TRANSITIONS[S.PREPARE_ABORT] == {S.COMPLETE_ABORT}
    assert S.PREPARE_COMMIT not in TRANSITIONS[S.EMPTY]  # nothing to commit
    assert {S.EMPTY, S.ONGOING} <= TRANSITIONS[S.COMPLETE_COMMIT]


def test_a_transaction_begins_grows_commits_and_completes() -> None:
    txn = _ongoing()
    assert (txn.state, txn.partitions, txn.start_ms) == (S.ONGOING, {TP0}, T0_MS + 1)
    txn = _moved(txn_state.add_partitions(txn, PID, 0, frozenset({TP1}), T0_MS + 2))
    assert txn.partitions == {TP0, TP1} and txn.start_ms == T0_MS + 1
    assert isinstance(txn_state.add_partitions(txn, PID, 0, frozenset({TP1}), T0_MS), Unchanged)
    txn = _moved(txn_state.add_group(txn, PID, 0, "billing", T0_MS + 3))
    txn = _moved(txn_state.end(txn, PID, 0, True, T0_MS + 4))
    assert txn.state is S.PREPARE_COMMIT
    done = txn_state.complete(txn, T0_MS + 5)
    assert done.state is S.COMPLETE_COMMIT and done.start_ms == T0_MS + 1
    # the next transaction starts afresh
    nxt = _moved(txn_state.add_partitions(done, PID, 0, frozenset({TP1}), T0_MS + 6))
    assert nxt.partitions == {TP1} and nxt.groups == frozenset() and nxt.start_ms == T0_MS + 6


def test_end_while_completing_or_after_answers_as_kafka() -> None:
    prepared = _moved(txn_state.end(_ongoing(), PID, 0, True, T0_MS))
    retry = txn_state.end(prepared, PID, 0, True, T0_MS)
    assert isinstance(retry, Refused) and retry.code is ErrorCode.CONCURRENT_TRANSACTIONS
    other = txn_state.end(prepared, PID, 0, False, T0_MS)
    assert isinstance(other, Refused) and other.code is ErrorCode.INVALID_TXN_STATE
    done = txn_state.complete(prepared, T0_MS)
    assert isinstance(txn_state.end(done, PID, 0, True, T0_MS), Unchanged)
    late_abort = txn_state.end(done, PID, 0, False, T0_MS)
    assert isinstance(late_abort, Refused) and late_abort.code is ErrorCode.INVALID_TXN_STATE
    empty = txn_state.end(_fresh(), PID, 0, True, T0_MS)
    assert isinstance(empty, Refused) and empty.code is ErrorCode.INVALID_TXN_STATE


def test_reinit_bumps_the_epoch_and_fences_the_old_producer() -> None:
    bumped = _moved(txn_state.reinit(_fresh(), TIMEOUT_MS, T0_MS, None))
    assert (bumped.producer_id, bumped.producer_epoch, bumped.state) == (PID, 1, S.EMPTY)
    for request in (
        txn_state.add_partitions(bumped, PID, 0, frozenset({TP0}), T0_MS),
        txn_state.add_group(bumped, PID, 0, "billing", T0_MS),
        txn_state.end(bumped, PID, 0, True, T0_MS),
    ):
        assert isinstance(request, Refused) and request.code is ErrorCode.PRODUCER_FENCED
    wrong_id = txn_state.add_partitions(bumped, PID + 1, 1, frozenset({TP0}), T0_MS)
    assert isinstance(wrong_id, Refused)
    assert wrong_id.code is ErrorCode.INVALID_PRODUCER_ID_MAPPING


def test_reinit_of_an_ongoing_transaction_aborts_it_first() -> None:
    outcome = txn_state.reinit(_ongoing(), TIMEOUT_MS, T0_MS, None)
    assert isinstance(outcome, Moved) and outcome.answer is ErrorCode.CONCURRENT_TRANSACTIONS
    assert outcome.txn.state is S.PREPARE_ABORT and outcome.txn.producer_epoch == 1
    again = txn_state.reinit(outcome.txn, TIMEOUT_MS, T0_MS, None)
    assert isinstance(again, Refused) and again.code is ErrorCode.CONCURRENT_TRANSACTIONS
    done = txn_state.complete(outcome.txn, T0_MS)
    assert _moved(txn_state.reinit(done, TIMEOUT_MS, T0_MS, None)).producer_epoch == 2


def test_kip360_reinit_must_name_the_current_producer() -> None:
    txn = _fresh()
    assert _moved(txn_state.reinit(txn, TIMEOUT_MS, T0_MS, None, (PID, 0))).producer_epoch == 1
    stranger = txn_state.reinit(txn, TIMEOUT_MS, T0_MS, None, (PID, 5))
    assert isinstance(stranger, Refused) and stranger.code is ErrorCode.PRODUCER_FENCED
    # the producer of a transaction that timed out may start over (KIP-360)
    aborted = txn_state.complete(txn_state.abort_expired(_ongoing(), T0_MS + TIMEOUT_MS + 2), 0)
    assert aborted.producer_epoch == 1 and aborted.prior_epoch == 0
    assert isinstance(txn_state.reinit(aborted, TIMEOUT_MS, T0_MS, None, (PID, 0)), Unchanged)


def test_an_exhausted_epoch_moves_to_a_fresh_producer_id() -> None:
    worn = Transaction("tx", PID, PRODUCER_EPOCH_MAX - 1, S.EMPTY, TIMEOUT_MS)
    assert txn_state.needs_fresh_producer_id(worn)
    renewed = _moved(txn_state.reinit(worn, TIMEOUT_MS, T0_MS, PID + 1))
    assert (renewed.producer_id, renewed.producer_epoch) == (PID + 1, 0)


def test_timeouts_abort_only_ongoing_transactions_past_their_timeout() -> None:
    txn = _ongoing()
    assert not txn.expired(txn.start_ms + TIMEOUT_MS)
    assert txn.expired(txn.start_ms + TIMEOUT_MS + 1)
    aborted = txn_state.abort_expired(txn, txn.start_ms + TIMEOUT_MS + 1)
    assert aborted.state is S.PREPARE_ABORT and aborted.producer_epoch == 1
    assert not _fresh().expired(10**12)


def test_verify_only_says_which_partitions_are_in_the_open_transaction() -> None:
    txn = _ongoing()
    codes = txn_state.verify_partitions(txn, PID, 0, frozenset({TP0, TP1}))
    assert codes == {TP0: ErrorCode.NONE, TP1: ErrorCode.INVALID_TXN_STATE}
    fenced = txn_state.verify_partitions(txn, PID, 7, frozenset({TP0}))
    assert fenced == {TP0: ErrorCode.PRODUCER_FENCED}


class TransactionMachine(RuleBasedStateMachine):
    """Any sequence of requests: each move is in the table, epochs never go back, an open
    transaction has a start time, and only the current epoch gets anything done."""

    def __init__(self) -> None:
        super().__init__()
        self.txn = _fresh()
        self.now_ms = T0_MS
        self.fresh_ids = iter(range(PID + 1, PID + 1000))

    def _step(self, outcome: txn_state.Outcome) -> None:
        if isinstance(outcome, Moved):
            assert outcome.txn.state in TRANSITIONS[self.txn.state]
            assert (outcome.txn.producer_id, outcome.txn.producer_epoch) >= (
                self.txn.producer_id,
                self.txn.producer_epoch,
            ) or outcome.txn.producer_id != self.txn.producer_id
            self.txn = outcome.txn

    @rule(elapsed_ms=st.integers(0, 2 * TIMEOUT_MS))
    def time_passes(self, elapsed_ms: int) -> None:
        self.now_ms += elapsed_ms
        if self.txn.expired(self.now_ms):
            self._step(Moved(txn_state.abort_expired(self.txn, self.now_ms)))

    @rule(stale=st.booleans(), partitions=st.frozensets(st.sampled_from([TP0, TP1])))
    def add(self, stale: bool, partitions: frozenset[TopicPartition]) -> None:
        epoch = self.txn.producer_epoch - (1 if stale else 0)
        outcome = txn_state.add_partitions(
            self.txn, self.txn.producer_id, epoch, partitions, self.now_ms
        )
        if stale:
            assert isinstance(outcome, Refused)
        self._step(outcome)

    @rule(commit=st.booleans())
    def end(self, commit: bool) -> None:
        self._step(
            txn_state.end(
                self.txn, self.txn.producer_id, self.txn.producer_epoch, commit, self.now_ms
            )
        )

    @rule()
    def markers_written(self) -> None:
        if self.txn.state in txn_state.PREPARED:
            done = txn_state.complete(self.txn, self.now_ms)
            assert done.state in TRANSITIONS[self.txn.state]
            self.txn = done

    @rule()
    def init(self) -> None:
        fresh = next(self.fresh_ids) if txn_state.needs_fresh_producer_id(self.txn) else None
        self._step(txn_state.reinit(self.txn, TIMEOUT_MS, self.now_ms, fresh))

    @invariant()
    def only_empty_transactions_have_no_start(self) -> None:
        assert (self.txn.start_ms >= 0) == (self.txn.state is not S.EMPTY)


TestTransactionMachine = TransactionMachine.TestCase
TestTransactionMachine.settings = settings(
    max_examples=examples(500), stateful_step_count=40, deadline=None
)
