"""The transaction coordinator: every transactional id whose coordinator slot this agent holds.

Transactional ids hash to the group coordinator slots (engine/coordinators.py); the slot's
lease holder coordinates them and every write to the store is fenced by the slot's epoch.
The rules of each request are log/txn_state.py's; this service loads the transaction,
persists what the rule decided before answering, and runs what follows in the background:
the markers of a decided transaction (engine/txn_markers.py) and then its completion. One
timer task aborts transactions past their timeout (bumping the epoch, so their producer is
fenced) and recovers the transactions of slots this agent took since its last round: a
decided one is completed, an Ongoing one runs on until its timeout, as after a failover in
Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from streamhouse.config import Settings
from streamhouse.engine.coordinators import slot_of
from streamhouse.engine.failure import AgentFailure
from streamhouse.engine.txn_markers import FIRST_BACKOFF_MS, MarkerDelivery
from streamhouse.errors import ErrorCode, NotCoordinator, StorageError, StreamHouseError
from streamhouse.kafka.control_records import TxnMarker
from streamhouse.log import txn_state
from streamhouse.log.txn_state import (
    OPEN_STATES,
    PREPARED,
    Moved,
    Outcome,
    Refused,
    Transaction,
    TxnState,
    Unchanged,
)
from streamhouse.names import TopicPartition
from streamhouse.ports.clock import Clock
from streamhouse.ports.groups import CoordinatorFence
from streamhouse.ports.producers import ProducerStore
from streamhouse.ports.topics import TopicStore
from streamhouse.ports.transactions import TransactionStore

log = logging.getLogger("streamhouse.transactions")


class TxnSlots(Protocol):
    """Which transactional ids this agent coordinates (engine/coordinators.py)."""

    def fence(self, key: str) -> CoordinatorFence | None:
        """The fence this agent coordinates the key under; None: another agent does."""

    async def take(self, key: str) -> None:
        """Take the key's slot if it is placed here and nobody holds it."""

    def held(self) -> dict[TopicPartition, int]:
        """Every slot this agent leads now, with its lease epoch."""

    async def take_placed(self) -> None:
        """Take every slot placed here that nobody holds."""


@dataclass(frozen=True)
class TxnAnswer:
    """What a transactional request is answered: a Kafka code, why, and for InitProducerId
    the producer id and epoch."""

    code: ErrorCode
    message: str = ""
    producer_id: int = -1
    producer_epoch: int = -1


OK = TxnAnswer(ErrorCode.NONE)


@dataclass
class TransactionStats:
    """Counters of the transactions this agent coordinated (metrics)."""

    committed: int = 0  # completed commits
    aborted: int = 0  # completed aborts, timed-out ones included
    timed_out: int = 0  # aborted by the coordinator past their timeout
    markers_written: int = 0


class _Refusal(Exception):
    """A request answered with an error before or instead of its rule (internal)."""

    def __init__(self, answer: TxnAnswer) -> None:
        super().__init__(answer.message)
        self.answer = answer


class TransactionCoordinator:
    """The transactions of the slots this agent holds: rules applied, persisted, completed."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        *,
        store: TransactionStore,
        producers: ProducerStore,
        topics: TopicStore,
        slots: TxnSlots,
        markers: MarkerDelivery,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._store = store
        self._producers = producers
        self._topics = topics
        self._slots = slots
        self._markers = markers
        # open transactions (Ongoing, PrepareCommit, PrepareAbort) by id, with the slot epoch
        # they were read or written under: bounded by transactions_per_coordinator_max
        self._open: dict[str, tuple[int, Transaction]] = {}
        self._recovered: dict[TopicPartition, int] = {}  # slot -> epoch its txns were read at
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # lock and its users
        # each decided transaction's completion, with the slot epoch it runs under
        self._completions: dict[str, tuple[int, asyncio.Task[None]]] = {}
        # Ongoing transactions' timeout deadlines by this agent's monotonic clock, with the
        # (producer id, epoch, start) they were set for (`_expired`)
        self._deadlines: dict[str, tuple[tuple[int, int, int], int]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._failure = AgentFailure()
        self.stats = TransactionStats()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, failure: AgentFailure | None = None) -> None:
        """Start the timer task (timeouts, recovery of taken slots)."""
        self._failure = failure or AgentFailure()
        task = asyncio.get_running_loop().create_task(self._run_checks(), name="txn-checks")
        self._failure.watch(task)
        self._tasks = [task]

    async def close(self) -> None:
        tasks = [*self._tasks, *(task for _, task in self._completions.values())]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._completions.clear()

    # --- requests ----------------------------------------------------------------------------

    async def init_producer(
        self, transactional_id: str, timeout_ms: int, caller: tuple[int, int] | None = None
    ) -> TxnAnswer:
        """A transactional InitProducerId: the id's producer id and its new epoch."""
        if not 0 < timeout_ms <= self._settings.transaction_max_timeout_ms:
            return TxnAnswer(
                ErrorCode.INVALID_TRANSACTION_TIMEOUT,
                f"transaction.timeout.ms {timeout_ms} is outside 1.."
                f"{self._settings.transaction_max_timeout_ms} (transaction_max_timeout_ms)",
            )
        try:
            async with self._held(transactional_id) as (fence, txn):
                now_ms = self._clock.now_ms()
                if txn is None:
                    producer_id = await self._allocate_producer_id()
                    fresh = txn_state.first_init(transactional_id, producer_id, timeout_ms, now_ms)
                    outcome: Outcome = Moved(fresh)
                else:
                    new_id = None
                    if txn_state.needs_fresh_producer_id(txn):
                        new_id = await self._allocate_producer_id()
                    outcome = txn_state.reinit(txn, timeout_ms, now_ms, new_id, caller)
                answer = await self._apply(outcome, fence)
                kept = self._current(outcome)
        except _Refusal as refusal:
            return refusal.answer
        if answer.code is not ErrorCode.NONE or kept is None:
            return answer
        return TxnAnswer(ErrorCode.NONE, "", kept.producer_id, kept.producer_epoch)

    async def _allocate_producer_id(self) -> int:
        try:
            return await self._producers.allocate_producer_id()
        except StorageError as error:
            raise _Refusal(_unavailable(error)) from error

    async def add_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
        *,
        verify_only: bool = False,
    ) -> dict[TopicPartition, TxnAnswer]:
        """AddPartitionsToTxn (or its v4 verify-only form): each partition's answer. Unknown
        partitions fail the request: they are UNKNOWN_TOPIC_OR_PARTITION, the others
        OPERATION_NOT_ATTEMPTED, as Kafka answers."""
        wanted = frozenset(partitions)
        if len(wanted) > self._settings.transaction_partitions_max:
            too_many = TxnAnswer(
                ErrorCode.INVALID_REQUEST,
                f"{len(wanted)} partitions in one AddPartitionsToTxn; at most "
                f"{self._settings.transaction_partitions_max} (transaction_partitions_max)",
            )
            return dict.fromkeys(wanted, too_many)
        unknown = await self._unknown_partitions(wanted)
        if unknown:
            skipped = TxnAnswer(ErrorCode.OPERATION_NOT_ATTEMPTED, "another partition is unknown")
            missing = TxnAnswer(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "no such partition")
            return {tp: missing if tp in unknown else skipped for tp in wanted}
        if verify_only:
            return await self._verify(transactional_id, producer_id, producer_epoch, wanted)
        answer = await self._decide(
            transactional_id,
            lambda txn, now_ms: txn_state.add_partitions(
                txn, producer_id, producer_epoch, wanted, now_ms
            ),
        )
        return dict.fromkeys(wanted, answer)

    async def _verify(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        wanted: frozenset[TopicPartition],
    ) -> dict[TopicPartition, TxnAnswer]:
        try:
            async with self._held(transactional_id) as (_, txn):
                txn = self._existing(txn, transactional_id)
                codes = txn_state.verify_partitions(txn, producer_id, producer_epoch, wanted)
                return {tp: TxnAnswer(code) for tp, code in codes.items()}
        except _Refusal as refusal:
            return dict.fromkeys(wanted, refusal.answer)

    async def add_offsets(
        self, transactional_id: str, producer_id: int, producer_epoch: int, group_id: str
    ) -> TxnAnswer:
        """AddOffsetsToTxn: the group joins the transaction."""
        if not group_id:
            return TxnAnswer(ErrorCode.INVALID_GROUP_ID, "the group id is empty")
        return await self._decide(
            transactional_id,
            lambda txn, now_ms: txn_state.add_group(
                txn, producer_id, producer_epoch, group_id, now_ms
            ),
        )

    async def end(
        self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool
    ) -> TxnAnswer:
        """EndTxn: the decision is persisted (with the offsets it settles), answered, and
        its markers written in the background."""
        return await self._decide(
            transactional_id,
            lambda txn, now_ms: txn_state.end(txn, producer_id, producer_epoch, commit, now_ms),
        )

    async def _decide(
        self, transactional_id: str, rule: Callable[[Transaction, int], Outcome]
    ) -> TxnAnswer:
        """Load the id's transaction under its lock, apply `rule` (the transaction, wall time
        now) and persist what it decided before answering."""
        try:
            async with self._held(transactional_id) as (fence, txn):
                txn = self._existing(txn, transactional_id)
                return await self._apply(rule(txn, self._clock.now_ms()), fence)
        except _Refusal as refusal:
            return refusal.answer

    # --- inspection --------------------------------------------------------------------------

    @property
    def open_count(self) -> int:
        """Open transactions this agent coordinates (Ongoing or being completed)."""
        return len(self._open)

    @property
    def completing_count(self) -> int:
        """Decided transactions whose markers are being written now."""
        return len(self._completions)

    async def describe(self, transactional_id: str) -> Transaction | None:
        """The transaction as the store has it (None: unknown id). Raises NotCoordinator
        when another agent coordinates it (DescribeTransactions goes to the coordinator)."""
        await self._slots.take(transactional_id)
        if self._slots.fence(transactional_id) is None:
            raise NotCoordinator(
                f"transactional id {transactional_id!r} is coordinated by another agent"
            )
        return await self._store.get_transaction(transactional_id)

    async def list_coordinated(self) -> list[Transaction]:
        """Every transaction of the slots this agent holds (ListTransactions is sent to every
        agent and the answers joined, so each lists only its own)."""
        await self._slots.take_placed()
        held = self._slots.held()
        listed = await self._store.list_transactions()
        return [txn for txn in listed if slot_of(txn.transactional_id) in held]

    # --- the rules' outcomes -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _held(
        self, transactional_id: str
    ) -> AsyncIterator[tuple[CoordinatorFence, Transaction | None]]:
        """The id's fence and stored transaction, its lock held: requests of one id are
        applied one at a time. Raises _Refusal when this agent does not coordinate it."""
        if not transactional_id:
            raise _Refusal(TxnAnswer(ErrorCode.INVALID_REQUEST, "the transactional id is empty"))
        await self._slots.take(transactional_id)
        async with self._locked(transactional_id):
            fence = self._fence(transactional_id)
            yield fence, await self._load(transactional_id, fence)

    @contextlib.asynccontextmanager
    async def _locked(self, transactional_id: str) -> AsyncIterator[None]:
        """The id's lock, forgotten once nobody holds or waits for it (bounded by the ids
        with a request or completion in flight)."""
        lock, users = self._locks.get(transactional_id, (asyncio.Lock(), 0))
        self._locks[transactional_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[transactional_id]
            if users == 1:
                del self._locks[transactional_id]
            else:
                self._locks[transactional_id] = (lock, users - 1)

    def _fence(self, transactional_id: str) -> CoordinatorFence:
        fence = self._slots.fence(transactional_id)
        if fence is None:
            self._open.pop(transactional_id, None)
            raise _Refusal(
                TxnAnswer(
                    ErrorCode.NOT_COORDINATOR,
                    f"transactional id {transactional_id!r} is coordinated by another agent; "
                    "find its coordinator again",
                )
            )
        return fence

    async def _load(self, transactional_id: str, fence: CoordinatorFence) -> Transaction | None:
        kept = self._open.get(transactional_id)
        if kept is not None and kept[0] == fence.epoch:
            if kept[1].state in PREPARED:  # its completion may have given up (a lapsed hold)
                self._complete_later(kept[1], fence)
            return kept[1]
        try:
            txn = await self._store.get_transaction(transactional_id)
        except StorageError as error:
            raise _Refusal(_unavailable(error)) from error
        self._keep(txn, fence.epoch)
        if txn is not None and txn.state in PREPARED:  # decided under an earlier holder
            self._complete_later(txn, fence)
        return txn

    def _existing(self, txn: Transaction | None, transactional_id: str) -> Transaction:
        if txn is None:
            raise _Refusal(
                TxnAnswer(
                    ErrorCode.INVALID_PRODUCER_ID_MAPPING,
                    f"transactional id {transactional_id!r} has no producer id; "
                    "call InitProducerId first",
                )
            )
        return txn

    def _keep(self, txn: Transaction | None, epoch: int) -> None:
        if txn is None:
            return
        if txn.state in OPEN_STATES:
            self._open[txn.transactional_id] = (epoch, txn)
        else:
            self._open.pop(txn.transactional_id, None)

    async def _apply(self, outcome: Outcome, fence: CoordinatorFence) -> TxnAnswer:
        """Persist a Moved outcome (then start its completion if it decided), answer."""
        if isinstance(outcome, Refused):
            return TxnAnswer(outcome.code, outcome.message)
        if isinstance(outcome, Unchanged):
            return OK
        txn = outcome.txn
        opening = txn.state in OPEN_STATES and txn.transactional_id not in self._open
        if opening and len(self._open) >= self._settings.transactions_per_coordinator_max:
            return TxnAnswer(
                ErrorCode.COORDINATOR_NOT_AVAILABLE,
                f"this agent coordinates {len(self._open)} open transactions "
                "(transactions_per_coordinator_max); retry later",
            )
        try:
            await self._store.put_transaction(txn, fence)
        except NotCoordinator as moved:
            self._open.pop(txn.transactional_id, None)
            return TxnAnswer(ErrorCode.NOT_COORDINATOR, str(moved))
        except StorageError as error:
            # The write may have happened (an unknown outcome): read the id again at its next
            # request, and the whole slot at the next round, so that a transaction left open
            # or decided by it still times out or completes if its producer never comes back.
            self._open.pop(txn.transactional_id, None)
            self._recovered.pop(fence.slot, None)
            return _unavailable(error)
        self._keep(txn, fence.epoch)
        if txn.state in PREPARED:
            self._complete_later(txn, fence)
        return TxnAnswer(outcome.answer, _CONCURRENT if outcome.answer else "")

    @staticmethod
    def _current(outcome: Outcome) -> Transaction | None:
        return None if isinstance(outcome, Refused) else outcome.txn

    async def _unknown_partitions(
        self, partitions: frozenset[TopicPartition]
    ) -> set[TopicPartition]:
        counts: dict[str, int] = {}
        for topic in {tp.topic for tp in partitions}:
            try:
                record = await self._topics.get_topic(topic)
            except StorageError:
                record = None  # counted as unknown: the client retries
            counts[topic] = 0 if record is None else record.partition_count
        return {tp for tp in partitions if not 0 <= tp.partition < counts[tp.topic]}

    # --- completion --------------------------------------------------------------------------

    def _complete_later(self, txn: Transaction, fence: CoordinatorFence) -> None:
        """Write the decided transaction's markers, then complete it, in a task of its own
        (one per id; its failure, our own bug, fails the agent)."""
        running = self._completions.get(txn.transactional_id)
        if running is not None and not running[1].done():
            if running[0] == fence.epoch:
                return
            running[1].cancel()  # kept from an earlier hold of the slot: this one takes over
        task = asyncio.get_running_loop().create_task(
            self._complete(txn, fence), name=f"txn-complete-{txn.transactional_id}"
        )
        self._completions[txn.transactional_id] = (fence.epoch, task)
        task.add_done_callback(lambda done: self._completion_ended(txn.transactional_id, done))

    def _completion_ended(self, transactional_id: str, task: asyncio.Task[None]) -> None:
        running = self._completions.get(transactional_id)
        if running is not None and running[1] is task:
            del self._completions[transactional_id]
        if not task.cancelled() and (error := task.exception()) is not None:
            self._failure.report(error, task.get_name())

    async def _complete(self, txn: Transaction, fence: CoordinatorFence) -> None:
        def still_coordinating() -> bool:
            return self._slots.fence(txn.transactional_id) == fence

        marker = TxnMarker(txn.producer_id, txn.producer_epoch, txn.committing, fence.epoch)
        if not await self._markers.deliver(txn.partitions, marker, still_coordinating):
            # the slot moved on, and its next holder completes the transaction; or this
            # agent's hold lapsed a while (its lease's local deadline passed before a
            # renewal): then, holding it again at the same epoch, it reads the slot again
            self._recovered.pop(fence.slot, None)
            return
        self.stats.markers_written += len(txn.partitions)
        backoff_ms = FIRST_BACKOFF_MS
        while still_coordinating():
            async with self._locked(txn.transactional_id):
                done = txn_state.complete(txn, self._clock.now_ms())
                try:
                    await self._store.put_transaction(done, fence)
                except NotCoordinator:
                    return
                except StorageError as error:
                    log.warning("completing %s failed: %s", txn.transactional_id, error)
                else:
                    self._keep(done, fence.epoch)
                    if done.committing:
                        self.stats.committed += 1
                    else:
                        self.stats.aborted += 1
                    return
            await self._clock.sleep_ms(backoff_ms)
            backoff_ms = min(backoff_ms * 2, self._settings.txn_marker_backoff_ms_max)
        self._recovered.pop(fence.slot, None)  # as above: read again if held again

    # --- timeouts and recovery ---------------------------------------------------------------

    async def _run_checks(self) -> None:
        expiry_due_ms = self._clock.monotonic_ms()
        while True:
            await self._clock.sleep_ms(self._settings.transaction_check_interval_ms)
            await self.check()
            if self._clock.monotonic_ms() >= expiry_due_ms:
                await self.expire_ids()
                expiry_due_ms += self._settings.transaction_expiry_check_interval_ms

    async def check(self) -> None:
        """One round: recover the slots taken since the last one, abort expired ones."""
        with contextlib.suppress(StorageError):  # the store is down: the next round
            await self._recover_taken_slots()
        await self._abort_expired()

    async def expire_ids(self) -> int:
        """Forget the transactional ids of the held slots idle for
        transactional_id_expiration_ms (bounds what the store keeps); returns how many."""
        updated_before_ms = self._clock.now_ms() - self._settings.transactional_id_expiration_ms
        expired = 0
        for slot, epoch in sorted(self._slots.held().items()):
            with contextlib.suppress(StorageError, NotCoordinator):  # the next round
                fence = CoordinatorFence(slot, epoch)
                expired += await self._store.expire_transactions(fence, updated_before_ms)
        return expired

    async def _recover_taken_slots(self) -> None:
        held = self._slots.held()
        for slot in list(self._recovered):
            if held.get(slot) != self._recovered[slot]:
                del self._recovered[slot]
        for slot, epoch in sorted(held.items()):
            if self._recovered.get(slot) == epoch:
                continue
            for txn in await self._store.list_transactions(slot):
                if txn.transactional_id not in self._locks:  # else its request reads it
                    self._keep(txn, epoch)
                if txn.state in PREPARED:
                    self._complete_later(txn, CoordinatorFence(slot, epoch))
            self._recovered[slot] = epoch

    async def _abort_expired(self) -> None:
        for transactional_id in list(self._deadlines):
            if transactional_id not in self._open:
                del self._deadlines[transactional_id]
        expired = [tid for tid, (_, txn) in sorted(self._open.items()) if self._expired(txn)]
        for transactional_id in expired:
            with contextlib.suppress(_Refusal):
                async with self._held(transactional_id) as (fence, txn):
                    if txn is not None and self._expired(txn):
                        log.info(
                            "transaction of %r timed out after %d ms: aborting, epoch bumped",
                            transactional_id,
                            txn.timeout_ms,
                        )
                        # stamped no earlier than its timeout by the wall clock it began on
                        now_ms = max(self._clock.now_ms(), txn.start_ms + txn.timeout_ms + 1)
                        await self._apply(Moved(txn_state.abort_expired(txn, now_ms)), fence)
                        self.stats.timed_out += 1

    def _expired(self, txn: Transaction) -> bool:
        """Whether an Ongoing transaction is past its timeout, by this agent's monotonic
        clock: its deadline is set when this agent first sees it, the time it has run by
        then counted from its wall start (stamped by whichever agent began it) only as far
        as this agent's wall clock agrees, and at most the whole timeout. So a transaction
        moved to an agent whose wall clock is behind (or stepped back) still times out
        within one timeout of the move, and a wall-clock step never delays a timeout."""
        if txn.state is not TxnState.ONGOING:
            return False
        began = (txn.producer_id, txn.producer_epoch, txn.start_ms)
        now_ms = self._clock.monotonic_ms()
        kept = self._deadlines.get(txn.transactional_id)
        if kept is None or kept[0] != began:
            ran_ms = min(max(self._clock.now_ms() - txn.start_ms, 0), txn.timeout_ms)
            kept = (began, now_ms + txn.timeout_ms - ran_ms)
            self._deadlines[txn.transactional_id] = kept
        return now_ms > kept[1]


_CONCURRENT = "an earlier transaction of this id is being aborted first; retry shortly"


def _unavailable(error: StreamHouseError) -> TxnAnswer:
    return TxnAnswer(
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, f"the metadata store failed: {error}; retry"
    )
