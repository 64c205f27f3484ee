"""Topics port: topics, their partition counts and configs, and each partition's durable state.

Read by every door that describes or administers topics (Metadata, CreateTopics,
DescribeConfigs, `streamctl topics`), by the log when it opens a partition, by the
group coordinator to tell whether a committed partition exists, and by the ownership
service, which places every partition on a live agent (honouring reassignments).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

from streamhouse.names import TopicPartition


@dataclass(frozen=True)
class TopicRecord:
    """A topic and its configuration overrides."""

    name: str
    partition_count: int
    configs: Mapping[str, str]
    created_ms: int


@dataclass(frozen=True)
class PartitionRecord:
    """The durable state of one partition.

    `durable_end_offset` is the offset after the last record committed to the
    object store; `log_start_offset` the first offset still readable.
    `lease_expires_ms` is in the metadata store's time, which no agent's clock can be
    compared with: `lease_live` says whether `leader_agent` holds an unexpired lease by
    the store's time when the record was read. `preferred_agent` is the agent a
    reassignment moved the partition to (None: wherever the balancer places it).
    """

    topic: str
    partition: int
    leader_agent: str | None
    leader_epoch: int
    lease_expires_ms: int
    durable_end_offset: int
    log_start_offset: int
    lease_live: bool
    preferred_agent: str | None = None

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


class TopicStore(ABC):
    """Topics and partitions in the metadata store."""

    @abstractmethod
    async def create_topic(
        self, name: str, partition_count: int, configs: Mapping[str, str], now_ms: int
    ) -> TopicRecord:
        """Create a topic and its partitions. Raises TopicAlreadyExists, and InvalidPartitions
        when `partition_count` is below one."""

    @abstractmethod
    async def get_topic(self, name: str) -> TopicRecord | None:
        """The topic, or None."""

    @abstractmethod
    async def list_topics(self) -> list[TopicRecord]:
        """Every topic, sorted by name."""

    @abstractmethod
    async def delete_topic(self, name: str) -> None:
        """Delete the topic, its partitions, segment rows, producer states and committed group
        offsets; a namesake created later starts above every epoch the topic reached.

        Raises UnknownTopicOrPartition.
        """

    @abstractmethod
    async def add_partitions(self, name: str, new_total: int) -> TopicRecord:
        """Grow the topic to `new_total` fresh partitions.

        Raises InvalidPartitions unless `new_total` exceeds the current count, and
        UnknownTopicOrPartition if the topic does not exist.
        """

    @abstractmethod
    async def set_topic_configs(
        self, name: str, configs: Mapping[str, str | None], *, incremental: bool
    ) -> TopicRecord:
        """Change the topic's configuration overrides.

        Incremental: each key is set, or deleted where its value is None; other
        keys stay. Otherwise the overrides become exactly `configs` (None values
        left out). Raises UnknownTopicOrPartition.
        """

    @abstractmethod
    async def get_partition(self, tp: TopicPartition) -> PartitionRecord:
        """The partition's state. Raises UnknownTopicOrPartition."""

    @abstractmethod
    async def list_partitions(self) -> list[PartitionRecord]:
        """Every partition of every topic, by topic and partition, read in one transaction
        (the leases judged live at one store time)."""

    @abstractmethod
    async def list_topic_partitions(self, name: str) -> list[PartitionRecord]:
        """The topic's partitions by index, read in one transaction (the leases judged live
        at one store time); empty when the topic does not exist."""

    @abstractmethod
    async def set_preferred_agent(self, tp: TopicPartition, agent: str | None) -> None:
        """Record the agent a reassignment moves the partition to (None: no reassignment).
        Raises UnknownTopicOrPartition."""
