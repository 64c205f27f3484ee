"""KIP-890's check at a partition leader: a producer's first transactional batch in a partition
must belong to its ongoing transaction, and that transaction must include the partition.

Without it, a produce request that arrives late (retried past an abort, or from a zombie whose
epoch was not bumped) would open a transaction in the partition that no coordinator knows:
nobody writes its marker and the last stable offset stays behind it for good (a hanging
transaction). The coordinator stores a partition before answering AddPartitionsToTxn, and
clients wait for that answer before producing there, so the store is the source of truth.
"""

from __future__ import annotations

from streamhouse.errors import ErrorCode, ProducerRefused
from streamhouse.log.txn_state import TxnState
from streamhouse.names import TopicPartition
from streamhouse.ports.transactions import TransactionStore


class TxnVerification:
    """Checks a producer's first transactional batch in a partition against its coordinator's
    stored transaction (one metadata read per transaction and partition)."""

    def __init__(self, store: TransactionStore) -> None:
        self._store = store

    async def verify(self, producer_id: int, producer_epoch: int, tp: TopicPartition) -> None:
        """Raises ProducerRefused (INVALID_PRODUCER_EPOCH, INVALID_TXN_STATE) unless the
        producer's ongoing transaction includes `tp`; StorageError if the store is out."""
        txn = await self._store.find_transaction_of_producer(producer_id)
        if txn is None:
            raise ProducerRefused(
                f"{tp}: producer {producer_id} has no transaction; call InitProducerId with "
                "its transactional.id first",
                ErrorCode.INVALID_TXN_STATE,
            )
        if producer_epoch < txn.producer_epoch:
            raise ProducerRefused(
                f"{tp}: producer {producer_id} epoch {producer_epoch} was fenced by epoch "
                f"{txn.producer_epoch} of transactional id {txn.transactional_id!r}",
                ErrorCode.INVALID_PRODUCER_EPOCH,
            )
        ongoing = txn.state is TxnState.ONGOING and producer_epoch == txn.producer_epoch
        if not ongoing or tp not in txn.partitions:
            raise ProducerRefused(
                f"{tp}: not in an ongoing transaction of {txn.transactional_id!r} (producer "
                f"{producer_id}, epoch {producer_epoch}, state {txn.state.value}); "
                "AddPartitionsToTxn must come first",
                ErrorCode.INVALID_TXN_STATE,
            )
