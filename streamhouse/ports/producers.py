"""Producers port: producer ids and the idempotent producers' stored state per partition.

The state is written by flush commits (`FlushCommit.producers` and `.txns`, leases port)
and read back when a partition is opened (and, for aborted transactions, by reads of
offsets older than the leader keeps in memory); ids are handed out to InitProducerId.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from streamhouse.log.partition_txns import AbortedTxn
from streamhouse.log.producer_state import ProducerSnapshot
from streamhouse.names import TopicPartition


class ProducerStore(ABC):
    """Producer ids and idempotent producers' state in the metadata store."""

    @abstractmethod
    async def list_producer_states(self, tp: TopicPartition) -> list[ProducerSnapshot]:
        """Idempotent producers' state as of the partition's durable end, by producer id."""

    @abstractmethod
    async def list_open_txns(self, tp: TopicPartition) -> dict[int, int]:
        """Producer id -> first offset of each transaction open at the partition's durable
        end (begun in a committed flush, its marker not in one yet)."""

    @abstractmethod
    async def list_aborted_txns(
        self, tp: TopicPartition, from_offset: int, to_offset: int
    ) -> list[AbortedTxn]:
        """Aborted transactions with records in [from_offset, to_offset], by marker offset."""

    @abstractmethod
    async def allocate_producer_id(self) -> int:
        """A producer id never handed out before (by any agent sharing this store)."""
