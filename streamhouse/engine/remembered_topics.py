"""The topics port as the admin service reads it: the last answers of the store, served while
the store is unavailable.

A Kafka broker answers Metadata from its cache whether or not its controller is reachable;
clients depend on it. aiokafka, for one, asks again at once, with no backoff, while a topic
it needs comes back with an error, so an agent that answered KAFKA_STORAGE_ERROR for the
length of a metadata store failover had every producer spin on it. `RememberedTopics` wraps
the store's port: every read that succeeds is remembered (each topic, the topic list, each
partition); a read the store fails with MetadataUnavailable is answered from what was
remembered, stale as it may be (a leader that has moved answers NOT_LEADER_OR_FOLLOWER, and
clients back off on that). Nothing remembered: the failure is raised after
`UNREMEMBERED_DELAY_MS`, which keeps a client that retries at once from spinning. Writes go
to the store; this agent's own creates and deletes update what is remembered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import TypeVar

from streamhouse.engine.waiting import CLIENT_RETRY_BACKOFF_MS
from streamhouse.errors import MetadataUnavailable
from streamhouse.names import TopicPartition
from streamhouse.ports.clock import Clock
from streamhouse.ports.topics import PartitionRecord, TopicRecord, TopicStore

UNREMEMBERED_DELAY_MS = CLIENT_RETRY_BACKOFF_MS  # how long a failure with nothing remembered waits
EVERY_TOPIC = "*"  # the key of the listing of every topic

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class RememberedTopics(TopicStore):
    """`store`'s answers, remembered and served while it is unavailable."""

    def __init__(self, store: TopicStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._topics: dict[str, TopicRecord | None] = {}
        self._listings: dict[str, list[TopicRecord]] = {}
        self._partitions: dict[TopicPartition, PartitionRecord] = {}
        # partition listings: every topic's under EVERY_TOPIC, one topic's under its name
        self._partition_listings: dict[str, list[PartitionRecord]] = {}

    async def _read(self, read: Callable[[], Awaitable[V]], memory: dict[K, V], key: K) -> V:
        try:
            value = await read()
        except MetadataUnavailable:
            if key in memory:
                return memory[key]
            await self._clock.sleep_ms(UNREMEMBERED_DELAY_MS)
            raise
        memory[key] = value
        return value

    # --- reads: remembered -------------------------------------------------------------------

    async def get_topic(self, name: str) -> TopicRecord | None:
        return await self._read(lambda: self._store.get_topic(name), self._topics, name)

    async def list_topics(self) -> list[TopicRecord]:
        listing = await self._read(self._store.list_topics, self._listings, EVERY_TOPIC)
        self._topics.update((topic.name, topic) for topic in listing)
        return listing

    async def get_partition(self, tp: TopicPartition) -> PartitionRecord:
        return await self._read(lambda: self._store.get_partition(tp), self._partitions, tp)

    async def list_partitions(self) -> list[PartitionRecord]:
        every = await self._read(self._store.list_partitions, self._partition_listings, EVERY_TOPIC)
        self._partitions.update((record.tp, record) for record in every)
        return every

    async def list_topic_partitions(self, name: str) -> list[PartitionRecord]:
        listing = await self._read(
            lambda: self._store.list_topic_partitions(name), self._partition_listings, name
        )
        self._partitions.update((record.tp, record) for record in listing)
        return listing

    # --- writes: through, with this agent's own changes remembered -------------------------

    async def create_topic(
        self, name: str, partition_count: int, configs: Mapping[str, str], now_ms: int
    ) -> TopicRecord:
        topic = await self._store.create_topic(name, partition_count, configs, now_ms)
        self._remember(topic)
        return topic

    async def delete_topic(self, name: str) -> None:
        try:
            await self._store.delete_topic(name)
        finally:  # deleted, or unknown: either way not to be served from memory
            self._forget(name)

    async def add_partitions(self, name: str, new_total: int) -> TopicRecord:
        topic = await self._store.add_partitions(name, new_total)
        self._remember(topic)
        return topic

    async def set_topic_configs(
        self, name: str, configs: Mapping[str, str | None], *, incremental: bool
    ) -> TopicRecord:
        topic = await self._store.set_topic_configs(name, configs, incremental=incremental)
        self._remember(topic)
        return topic

    async def set_preferred_agent(self, tp: TopicPartition, agent: str | None) -> None:
        await self._store.set_preferred_agent(tp, agent)
        self._partitions.pop(tp, None)  # the next read comes from the store
        self._partition_listings.clear()

    def _remember(self, topic: TopicRecord) -> None:
        self._topics[topic.name] = topic
        self._listings.clear()  # the next listings come from the store
        self._partition_listings.clear()

    def _forget(self, name: str) -> None:
        self._topics[name] = None
        self._listings.clear()
        self._partition_listings.clear()
        for tp in [tp for tp in self._partitions if tp.topic == name]:
            del self._partitions[tp]
