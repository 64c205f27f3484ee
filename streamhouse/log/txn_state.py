"""A transactional id's coordinator state machine, pure: Kafka's states and transitions as a
table, and each request's rule as a function from the stored transaction to an outcome.

No IO and no awaits: the coordinator (engine/transactions.py) loads a transaction, asks a
function here what the request does to it, persists the new transaction (fenced), and only
then answers. States and their meaning are Kafka's (TransactionState.scala):

- Empty: a producer id and epoch, no transaction open.
- Ongoing: partitions or groups were added; the producer may produce and commit offsets.
- PrepareCommit / PrepareAbort: the decision is taken and persisted; markers are being
  written to every partition of the transaction.
- CompleteCommit / CompleteAbort: every marker is written; the next transaction may begin.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from types import MappingProxyType

from streamhouse.errors import ErrorCode
from streamhouse.names import TopicPartition

PRODUCER_EPOCH_MAX = 32_766  # Kafka keeps Short.MAX_VALUE (32767) as "no epoch"
NO_START_MS = -1  # a transaction that is not open has no start time
NO_EPOCH = -1


class TxnState(enum.Enum):
    """Kafka's transaction states, valued by the names DescribeTransactions shows."""

    EMPTY = "Empty"
    ONGOING = "Ongoing"
    PREPARE_COMMIT = "PrepareCommit"
    PREPARE_ABORT = "PrepareAbort"
    COMPLETE_COMMIT = "CompleteCommit"
    COMPLETE_ABORT = "CompleteAbort"


S = TxnState
TRANSITIONS = MappingProxyType(
    {  # state -> the states it may move to (Kafka's validPreviousStates, read the other way)
        S.EMPTY: frozenset({S.EMPTY, S.ONGOING}),
        S.ONGOING: frozenset({S.ONGOING, S.PREPARE_COMMIT, S.PREPARE_ABORT}),
        S.PREPARE_COMMIT: frozenset({S.COMPLETE_COMMIT}),
        S.PREPARE_ABORT: frozenset({S.COMPLETE_ABORT}),
        S.COMPLETE_COMMIT: frozenset({S.EMPTY, S.ONGOING}),
        S.COMPLETE_ABORT: frozenset({S.EMPTY, S.ONGOING}),
    }
)
PREPARED = frozenset({S.PREPARE_COMMIT, S.PREPARE_ABORT})
COMPLETED = frozenset({S.COMPLETE_COMMIT, S.COMPLETE_ABORT})
OPEN_STATES = frozenset({S.ONGOING, *PREPARED})  # a transaction that began and has not ended


@dataclass(frozen=True)
class Transaction:
    """Everything a coordinator keeps about one transactional id."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    state: TxnState
    timeout_ms: int
    partitions: frozenset[TopicPartition] = frozenset()
    groups: frozenset[str] = frozenset()
    start_ms: int = NO_START_MS  # wall time the last transaction began (none while Empty)
    update_ms: int = NO_START_MS  # wall time of the last transition
    # the epoch before the last bump: KIP-360's InitProducerId may name it (a retry, or the
    # producer of a transaction that timed out), as Kafka's lastProducerEpoch
    prior_epoch: int = NO_EPOCH

    def moved(self, state: TxnState, now_ms: int, **changes: object) -> Transaction:
        """This transaction in `state` (which the table must allow) with `changes`."""
        assert state in TRANSITIONS[self.state], f"{self.state} -> {state}: {self}"
        return replace(self, state=state, update_ms=now_ms, **changes)  # type: ignore[arg-type]

    @property
    def committing(self) -> bool:
        return self.state in (S.PREPARE_COMMIT, S.COMPLETE_COMMIT)

    def expired(self, now_ms: int) -> bool:
        """An Ongoing transaction past its timeout, to be aborted with the epoch bumped."""
        return self.state is S.ONGOING and now_ms - self.start_ms > self.timeout_ms


@dataclass(frozen=True)
class Refused:
    """A request refused with a Kafka error code; nothing changes."""

    code: ErrorCode
    message: str


@dataclass(frozen=True)
class Moved:
    """The transaction the request leaves, to persist before answering. `answer`: the code
    to answer once persisted (CONCURRENT_TRANSACTIONS when an init had to abort first)."""

    txn: Transaction
    answer: ErrorCode = ErrorCode.NONE


@dataclass(frozen=True)
class Unchanged:
    """A request that succeeds without a change to persist (a retry, an empty add)."""

    txn: Transaction


Outcome = Refused | Moved | Unchanged


# --- InitProducerId ---------------------------------------------------------------------------


def first_init(
    transactional_id: str, producer_id: int, timeout_ms: int, now_ms: int
) -> Transaction:
    """A transactional id's first InitProducerId: a fresh producer id at epoch 0."""
    return Transaction(transactional_id, producer_id, 0, S.EMPTY, timeout_ms, update_ms=now_ms)


def reinit(
    txn: Transaction,
    timeout_ms: int,
    now_ms: int,
    fresh_producer_id: int | None,
    caller: tuple[int, int] | None = None,
) -> Outcome:
    """A later InitProducerId: the epoch bumps, which fences every older producer of the id.

    `fresh_producer_id`: the id to move to when the epoch is used up (the caller allocates
    one when `needs_fresh_producer_id` says so). `caller`: KIP-360's (producer id, epoch)
    the client holds, which must be the stored ones (or the prior epoch: a retry). An
    ongoing transaction is aborted first (epoch bumped, PrepareAbort) and the caller told
    CONCURRENT_TRANSACTIONS, to ask again once it is over.
    """
    if caller == (txn.producer_id, txn.prior_epoch) and txn.state not in OPEN_STATES:
        return Unchanged(txn)  # a retry of the bump that answered it, or KIP-360 after a timeout
    if caller is not None and caller != (txn.producer_id, txn.producer_epoch):
        return Refused(
            ErrorCode.PRODUCER_FENCED,
            f"transactional id {txn.transactional_id!r} is now producer {txn.producer_id} "
            f"epoch {txn.producer_epoch}, not {caller[0]} epoch {caller[1]}: another producer "
            "with this transactional.id took over; close this one",
        )
    if txn.state in PREPARED:
        return _completing(txn)
    if txn.state is S.ONGOING:
        return Moved(_abort_fencing(txn, now_ms), ErrorCode.CONCURRENT_TRANSACTIONS)
    if needs_fresh_producer_id(txn):
        assert fresh_producer_id is not None, txn
        bumped = txn.moved(
            S.EMPTY, now_ms, producer_id=fresh_producer_id, producer_epoch=0, prior_epoch=NO_EPOCH
        )
    else:
        bumped = txn.moved(
            S.EMPTY, now_ms, producer_epoch=txn.producer_epoch + 1, prior_epoch=txn.producer_epoch
        )
    emptied = replace(bumped, partitions=frozenset(), groups=frozenset(), start_ms=NO_START_MS)
    return Moved(replace(emptied, timeout_ms=timeout_ms))


def needs_fresh_producer_id(txn: Transaction) -> bool:
    """Whether the next init must move the id to a new producer id (its epoch is used up)."""
    return txn.producer_epoch >= PRODUCER_EPOCH_MAX - 1


def _abort_fencing(txn: Transaction, now_ms: int) -> Transaction:
    """PrepareAbort with the epoch bumped: the producer that left the transaction open is
    fenced by the abort markers (written at the new epoch) and by the coordinator."""
    epoch = min(txn.producer_epoch + 1, PRODUCER_EPOCH_MAX)
    return txn.moved(S.PREPARE_ABORT, now_ms, producer_epoch=epoch, prior_epoch=txn.producer_epoch)


def abort_expired(txn: Transaction, now_ms: int) -> Transaction:
    """The abort of an Ongoing transaction past its timeout, fencing its producer."""
    assert txn.expired(now_ms), txn
    return _abort_fencing(txn, now_ms)


# --- AddPartitionsToTxn, AddOffsetsToTxn, EndTxn ---------------------------------------------


def check_producer(txn: Transaction, producer_id: int, producer_epoch: int) -> Refused | None:
    """The request's producer must be the id's current one (an older epoch is a zombie)."""
    if producer_id != txn.producer_id:
        return Refused(
            ErrorCode.INVALID_PRODUCER_ID_MAPPING,
            f"transactional id {txn.transactional_id!r} belongs to producer {txn.producer_id}, "
            f"not {producer_id}; call InitProducerId again",
        )
    if producer_epoch != txn.producer_epoch:
        return Refused(
            ErrorCode.PRODUCER_FENCED,
            f"producer {producer_id} epoch {producer_epoch} of transactional id "
            f"{txn.transactional_id!r} was fenced by epoch {txn.producer_epoch}: another "
            "producer with this transactional.id took over, or the transaction timed out",
        )
    return None


def add_partitions(
    txn: Transaction,
    producer_id: int,
    producer_epoch: int,
    partitions: frozenset[TopicPartition],
    now_ms: int,
) -> Outcome:
    """AddPartitionsToTxn: the partitions join the transaction, which begins if need be."""
    return _add(txn, producer_id, producer_epoch, now_ms, partitions=partitions)


def add_group(
    txn: Transaction, producer_id: int, producer_epoch: int, group_id: str, now_ms: int
) -> Outcome:
    """AddOffsetsToTxn: the group's offsets will be committed (or dropped) with the rest."""
    return _add(txn, producer_id, producer_epoch, now_ms, groups=frozenset({group_id}))


def _add(
    txn: Transaction,
    producer_id: int,
    producer_epoch: int,
    now_ms: int,
    partitions: frozenset[TopicPartition] = frozenset(),
    groups: frozenset[str] = frozenset(),
) -> Outcome:
    refused = check_producer(txn, producer_id, producer_epoch)
    if refused is not None:
        return refused
    if txn.state in PREPARED:
        return _completing(txn)
    if txn.state is S.ONGOING and partitions <= txn.partitions and groups <= txn.groups:
        return Unchanged(txn)
    start_ms = txn.start_ms if txn.state is S.ONGOING else now_ms
    if txn.state is not S.ONGOING:  # a new transaction: nothing of the last one carries over
        txn = replace(txn, partitions=frozenset(), groups=frozenset())
    return Moved(
        txn.moved(
            S.ONGOING,
            now_ms,
            partitions=txn.partitions | partitions,
            groups=txn.groups | groups,
            start_ms=start_ms,
        )
    )


def verify_partitions(
    txn: Transaction, producer_id: int, producer_epoch: int, partitions: frozenset[TopicPartition]
) -> dict[TopicPartition, ErrorCode]:
    """AddPartitionsToTxn v4's verify-only form: whether each partition is in the open
    transaction of this producer (KIP-890), changing nothing."""
    refused = check_producer(txn, producer_id, producer_epoch)
    if refused is not None:
        return dict.fromkeys(partitions, refused.code)
    in_txn = txn.partitions if txn.state is S.ONGOING else frozenset()
    return {
        tp: ErrorCode.NONE if tp in in_txn else ErrorCode.INVALID_TXN_STATE for tp in partitions
    }


def end(
    txn: Transaction, producer_id: int, producer_epoch: int, commit: bool, now_ms: int
) -> Outcome:
    """EndTxn: the decision (PrepareCommit or PrepareAbort), persisted before the answer.
    A retry after the transaction completed with the same result succeeds unchanged; one
    while its markers are still being written is told CONCURRENT_TRANSACTIONS."""
    refused = check_producer(txn, producer_id, producer_epoch)
    if refused is not None:
        return refused
    wanted = "commit" if commit else "abort"
    if txn.state is S.ONGOING:
        return Moved(txn.moved(S.PREPARE_COMMIT if commit else S.PREPARE_ABORT, now_ms))
    if txn.state in (PREPARED | COMPLETED) and txn.committing == commit:
        return _completing(txn) if txn.state in PREPARED else Unchanged(txn)
    return Refused(
        ErrorCode.INVALID_TXN_STATE,
        f"cannot {wanted} the transaction of {txn.transactional_id!r}: it is {txn.state.value}"
        + (" (no partition or group was added)" if txn.state is S.EMPTY else ""),
    )


def complete(txn: Transaction, now_ms: int) -> Transaction:
    """Every marker is written: CompleteCommit or CompleteAbort, the transaction closed (its
    partitions and start time stay for DescribeTransactions, as Kafka keeps them)."""
    assert txn.state in PREPARED, txn
    state = S.COMPLETE_COMMIT if txn.state is S.PREPARE_COMMIT else S.COMPLETE_ABORT
    return txn.moved(state, now_ms)


def _completing(txn: Transaction) -> Refused:
    return Refused(
        ErrorCode.CONCURRENT_TRANSACTIONS,
        f"the last transaction of {txn.transactional_id!r} is still being completed "
        f"({txn.state.value}); retry shortly",
    )
