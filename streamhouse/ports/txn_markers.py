"""Marker sender port: WriteTxnMarkers to another agent, for the partitions it leads.

The transaction coordinator writes a transaction's markers itself into the partitions this
agent leads; the others' leaders get Kafka's WriteTxnMarkers (API 27) through this port.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from streamhouse.kafka.control_records import TxnMarker
from streamhouse.names import TopicPartition


class MarkerSender(ABC):
    """Sends WriteTxnMarkers requests to other agents."""

    @abstractmethod
    async def send_markers(
        self, host: str, port: int, marker: TxnMarker, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """Ask the agent at host:port to write `marker` into `partitions`; its error code for
        each (0: written and durable). Raises PeerUnreachable when the agent cannot be reached
        or does not answer in time (the caller retries)."""
