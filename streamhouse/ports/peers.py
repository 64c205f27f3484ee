"""Peer requests port: Produce, Fetch and ListOffsets to the agent leading a partition.

The REST and gRPC doors serve every partition of the cluster; a partition another agent leads
is served by asking that agent over its Kafka listener, as a Kafka client would
(engine/forwarding.py). Kafka clients follow leadership themselves and never come this way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from streamhouse.names import TopicPartition


@dataclass(frozen=True)
class PeerProduced:
    """A leader's answer to one partition's batch: its Kafka error code (0: appended and
    acknowledged as asked) with its message, and the batch's first offset."""

    error_code: int
    base_offset: int
    error_message: str | None = None


@dataclass(frozen=True)
class PeerFetched:
    """A leader's answer for one partition of a Fetch: its error code, its offsets, the
    records field as sent (whole batches, a cut one at the end dropped by the reader), and the
    aborted transactions among them, as (producer id, first offset) (None reading
    uncommitted)."""

    error_code: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    records: bytes = b""
    aborted: tuple[tuple[int, int], ...] | None = None


@dataclass(frozen=True)
class PeerOffset:
    """A leader's answer to one ListOffsets query: its error code and the offset."""

    error_code: int
    offset: int


@dataclass(frozen=True)
class OffsetQuery:
    """One ListOffsets question: the offset for `timestamp` (EARLIEST_TIMESTAMP, …)."""

    timestamp: int
    read_committed: bool


class PeerRequests(ABC):
    """Kafka requests to another agent's listener, each bounded in time by the adapter.
    Every method raises PeerUnreachable when the agent cannot be reached, does not answer in
    time, or answers something that does not decode."""

    @abstractmethod
    async def produce(
        self, host: str, port: int, tp: TopicPartition, batch: bytes, acks: int, timeout_ms: int
    ) -> PeerProduced:
        """Produce `batch` to `tp` with Kafka's `acks` (1 or -1: an answer is awaited)."""

    @abstractmethod
    async def fetch(
        self,
        host: str,
        port: int,
        positions: Sequence[tuple[TopicPartition, int]],
        max_bytes: int,
        *,
        read_committed: bool,
        max_wait_ms: int,
    ) -> dict[TopicPartition, PeerFetched]:
        """One Fetch of the partitions from their offsets, about `max_bytes` in all (each
        partition's first batch whatever its size), waiting up to `max_wait_ms` for a byte."""

    @abstractmethod
    async def list_offsets(
        self, host: str, port: int, tp: TopicPartition, queries: Sequence[OffsetQuery]
    ) -> list[PeerOffset]:
        """One ListOffsets per query, in order, over one connection."""
