"""Producers port: producer ids and the idempotent producers' stored state per partition.

The state is written by flush commits (`FlushCommit.producers`, leases port)
and read back when a partition is opened; ids are handed out to
InitProducerId. Transactions will join this aggregate.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from streamhouse.log.producer_state import ProducerSnapshot
from streamhouse.names import TopicPartition


class ProducerStore(ABC):
    """Producer ids and idempotent producers' state in the metadata store."""

    @abstractmethod
    async def list_producer_states(self, tp: TopicPartition) -> list[ProducerSnapshot]:
        """Idempotent producers' state as of the partition's durable end, by producer id."""

    @abstractmethod
    async def allocate_producer_id(self) -> int:
        """A producer id never handed out before (by any agent sharing this store)."""
