"""Simulated metadata store: the real SQL adapter on in-memory SQLite, with seeded faults.

Writes may fail cleanly (`MetadataUnavailable`, nothing happened) or with an
unknown outcome (`MetadataUnknownOutcome`, raised after the write happened);
reads may fail cleanly. Every draw comes from the given SeededRng, so a seed
replays the same faults.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sim.rng import SeededRng
from streamhouse.errors import MetadataUnavailable, MetadataUnknownOutcome
from streamhouse.io.sql_metadata import SqlMetadataStore, create_metadata_engine, run_inline
from streamhouse.log.producer_state import ProducerSnapshot
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import CommittedOffset
from streamhouse.ports.leases import FlushCommit, FlushOutcome, Lease, ObjectRecord, SegmentRecord
from streamhouse.ports.metadata import MetadataStore
from streamhouse.ports.topics import PartitionRecord, TopicRecord

T = TypeVar("T")


@dataclass(frozen=True)
class MetadataFaults:
    """Per-call fault probabilities (0 = never, 1 = always)."""

    unavailable_rate: float = 0.0
    unknown_outcome_rate: float = 0.0


class SimMetadataStore(MetadataStore):
    """A SqlMetadataStore on one shared in-memory SQLite connection, no threads, with faults.

    `faults` may be replaced at any time (e.g. healed for a liveness phase).
    """

    def __init__(self, rng: SeededRng | None = None, faults: MetadataFaults | None = None) -> None:
        self.faults = faults if faults is not None else MetadataFaults()
        self._rng = rng if rng is not None else SeededRng(0)
        self.inner = SqlMetadataStore(create_metadata_engine("sqlite://"), run_inline)
        self.inner.core.migrate()

    async def create_topic(
        self, name: str, partition_count: int, configs: Mapping[str, str], now_ms: int
    ) -> TopicRecord:
        return await self._write(
            "create_topic", lambda: self.inner.create_topic(name, partition_count, configs, now_ms)
        )

    async def get_topic(self, name: str) -> TopicRecord | None:
        return await self._read("get_topic", lambda: self.inner.get_topic(name))

    async def list_topics(self) -> list[TopicRecord]:
        return await self._read("list_topics", self.inner.list_topics)

    async def delete_topic(self, name: str) -> None:
        await self._write("delete_topic", lambda: self.inner.delete_topic(name))

    async def add_partitions(self, name: str, new_total: int) -> TopicRecord:
        return await self._write(
            "add_partitions", lambda: self.inner.add_partitions(name, new_total)
        )

    async def set_topic_configs(
        self, name: str, configs: Mapping[str, str | None], *, incremental: bool
    ) -> TopicRecord:
        return await self._write(
            "set_topic_configs",
            lambda: self.inner.set_topic_configs(name, configs, incremental=incremental),
        )

    async def get_partition(self, tp: TopicPartition) -> PartitionRecord:
        return await self._read("get_partition", lambda: self.inner.get_partition(tp))

    async def acquire_lease(
        self, tp: TopicPartition, agent: str, now_ms: int, ttl_ms: int
    ) -> Lease | None:
        return await self._write(
            "acquire_lease", lambda: self.inner.acquire_lease(tp, agent, now_ms, ttl_ms)
        )

    async def fence_own_leases(self, agent: str) -> int:
        return await self._write("fence_own_leases", lambda: self.inner.fence_own_leases(agent))

    async def release_lease(self, tp: TopicPartition, agent: str) -> None:
        await self._write("release_lease", lambda: self.inner.release_lease(tp, agent))

    async def commit_flush(self, commit: FlushCommit) -> FlushOutcome:
        return await self._write("commit_flush", lambda: self.inner.commit_flush(commit))

    async def list_segments(
        self, tp: TopicPartition, from_offset: int = 0, limit: int = 1000
    ) -> list[SegmentRecord]:
        return await self._read(
            "list_segments", lambda: self.inner.list_segments(tp, from_offset, limit)
        )

    async def list_objects(self) -> list[ObjectRecord]:
        return await self._read("list_objects", self.inner.list_objects)

    async def set_log_start_offset(self, tp: TopicPartition, offset: int) -> int:
        return await self._write(
            "set_log_start_offset", lambda: self.inner.set_log_start_offset(tp, offset)
        )

    async def list_producer_states(self, tp: TopicPartition) -> list[ProducerSnapshot]:
        return await self._read("list_producer_states", lambda: self.inner.list_producer_states(tp))

    async def reserve_group_generations(self, group_id: str, count: int) -> int:
        return await self._write(
            "reserve_group_generations",
            lambda: self.inner.reserve_group_generations(group_id, count),
        )

    async def allocate_producer_id(self) -> int:
        return await self._write("allocate_producer_id", self.inner.allocate_producer_id)

    async def commit_offsets(
        self, group_id: str, offsets: Mapping[TopicPartition, CommittedOffset]
    ) -> None:
        await self._write("commit_offsets", lambda: self.inner.commit_offsets(group_id, offsets))

    async def fetch_offsets(
        self, group_id: str, partitions: Sequence[TopicPartition] | None = None
    ) -> dict[TopicPartition, CommittedOffset]:
        return await self._read(
            "fetch_offsets", lambda: self.inner.fetch_offsets(group_id, partitions)
        )

    async def delete_offsets(self, group_id: str, partitions: Sequence[TopicPartition]) -> None:
        await self._write("delete_offsets", lambda: self.inner.delete_offsets(group_id, partitions))

    async def delete_group_offsets(self, group_id: str) -> None:
        await self._write("delete_group_offsets", lambda: self.inner.delete_group_offsets(group_id))

    async def list_offset_groups(self) -> list[str]:
        return await self._read("list_offset_groups", self.inner.list_offset_groups)

    async def expire_offsets(self, group_id: str, committed_before_ms: int) -> int:
        return await self._write(
            "expire_offsets", lambda: self.inner.expire_offsets(group_id, committed_before_ms)
        )

    async def close(self) -> None:
        await self.inner.close()

    async def _read(self, op: str, call: Callable[[], Awaitable[T]]) -> T:
        self._maybe_unavailable(op)
        return await call()

    async def _write(self, op: str, call: Callable[[], Awaitable[T]]) -> T:
        self._maybe_unavailable(op)
        result = await call()
        if self._rng.chance(self.faults.unknown_outcome_rate):
            raise MetadataUnknownOutcome(
                f"simulated fault: {op} was applied but its outcome was lost"
            )
        return result

    def _maybe_unavailable(self, op: str) -> None:
        if self._rng.chance(self.faults.unavailable_rate):
            raise MetadataUnavailable(f"simulated fault: metadata store unavailable for {op}")
