"""Transactions port: each transactional id's coordinator state, and the offsets producers
commit inside their transactions (TxnOffsetCommit) until the transaction ends.

A coordinator that restarts or moves finds every transaction here and completes the ones
whose decision was taken. Every write is fenced by the coordinator slot's lease epoch, like
group offset commits: a coordinator whose slot moved on writes nothing (NotCoordinator).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

from streamhouse.log.txn_state import Transaction
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import CommittedOffset, CoordinatorFence


class TransactionStore(ABC):
    """Transactions and their pending offsets in the metadata store."""

    @abstractmethod
    async def get_transaction(self, transactional_id: str) -> Transaction | None:
        """The stored transaction of the id, None if it never called InitProducerId."""

    @abstractmethod
    async def list_transactions(self, slot: TopicPartition | None = None) -> list[Transaction]:
        """Every stored transaction (of the coordinator slot `slot`, if given), by id."""

    @abstractmethod
    async def put_transaction(self, txn: Transaction, fence: CoordinatorFence) -> None:
        """Store (insert or replace) the transaction. Raises NotCoordinator, writing nothing,
        when the fence's slot moved on to another epoch. An Ongoing -> PrepareCommit or
        PrepareAbort move (EndTxn's decision) also moves, in the same SQL transaction, the
        producer's pending offsets into the groups' committed offsets (commit) or drops them
        (abort)."""

    @abstractmethod
    async def expire_transactions(self, fence: CoordinatorFence, updated_before_ms: int) -> int:
        """Forget the transactional ids of the fence's slot that are not in a transaction
        (Empty, CompleteCommit, CompleteAbort) and were last updated before
        `updated_before_ms` (Kafka's transactional.id.expiration.ms); returns how many.
        Raises NotCoordinator, deleting nothing, when the slot moved on."""

    @abstractmethod
    async def commit_pending_offsets(
        self,
        group_id: str,
        producer_id: int,
        offsets: Mapping[TopicPartition, CommittedOffset],
        fence: CoordinatorFence | None = None,
    ) -> None:
        """Keep a TxnOffsetCommit's offsets until the producer's transaction ends (insert or
        replace per partition). Fenced by the GROUP's coordinator slot; raises
        UnknownTopicOrPartition, storing nothing, when a partition does not exist."""

    @abstractmethod
    async def pending_offsets(
        self, group_id: str
    ) -> dict[int, dict[TopicPartition, CommittedOffset]]:
        """The group's offsets pending in open transactions, by producer id."""
