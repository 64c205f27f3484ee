"""Coordinator slots: group coordinators placed by lease, like partitions.

A fixed number of internal partitions (`COORDINATOR_SLOTS` partitions of the internal topic
`COORDINATOR_TOPIC`) are the slots. Every group id hashes to one slot; the agent holding
the slot's lease (within its local deadline, engine/leases.py) coordinates every group of
that slot, and no other agent does: two agents never coordinate one group at the same time,
even while their membership views differ, because one lease has one holder per epoch. The
ownership service places and balances the slots as their own pool, hands them over and
takes them like any partition. An offset commit is fenced by the slot's lease epoch in the
metadata store (GroupStore.commit_offsets with a CoordinatorFence), so a coordinator whose
slot moved on meanwhile commits nothing (NOT_COORDINATOR).

Transactional ids hash to the same slots (`slot_of` takes any coordinator key): their
coordinator (engine/transactions.py) is the slot's lease holder too.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable

from streamhouse.engine.log_store import LogStore
from streamhouse.errors import (
    NotLeader,
    StorageError,
    TopicAlreadyExists,
    UnknownTopicOrPartition,
)
from streamhouse.names import TopicPartition
from streamhouse.ports.clock import Clock
from streamhouse.ports.groups import CoordinatorFence
from streamhouse.ports.topics import TopicStore

COORDINATOR_TOPIC = "__streamhouse_coordinators"
# Fixed for the life of a cluster: a group's slot must never change while it has state.
COORDINATOR_SLOTS = 16
SLOT_HASH_BYTES = 8


def is_internal(topic: str) -> bool:
    """Whether the topic is the cluster's own (hidden from topic listings)."""
    return topic == COORDINATOR_TOPIC


def slot_of(key: str) -> TopicPartition:
    """The coordinator slot of a group id or a transactional id."""
    digest = hashlib.blake2b(key.encode(), digest_size=SLOT_HASH_BYTES).digest()
    return TopicPartition(COORDINATOR_TOPIC, int.from_bytes(digest, "big") % COORDINATOR_SLOTS)


async def ensure_coordinator_slots(topics: TopicStore, now_ms: int) -> None:
    """Create the slots' internal topic unless another agent did. Raises StorageError."""
    if await topics.get_topic(COORDINATOR_TOPIC) is not None:
        return
    with contextlib.suppress(TopicAlreadyExists):  # created by another agent meanwhile
        await topics.create_topic(COORDINATOR_TOPIC, COORDINATOR_SLOTS, {}, now_ms)


class CoordinatorSlots:
    """Which groups this agent coordinates now: those whose slot's lease it holds."""

    def __init__(
        self,
        log: LogStore,
        clock: Clock,
        may_lead: Callable[[TopicPartition], bool] = lambda _: True,
    ) -> None:
        self._log = log
        self._clock = clock
        self._may_lead = may_lead  # whether a slot is placed here (engine/cluster.py)

    def fence(self, key: str) -> CoordinatorFence | None:
        """The fence of the key's slot while this agent leads it; None: another agent
        coordinates the key (or none does right now)."""
        slot = slot_of(key)
        plog = self._log.led_partition(slot)
        if plog is None or not plog.leading(self._clock.monotonic_ms()):
            return None
        return CoordinatorFence(slot, plog.state.leader_epoch)

    def held(self) -> dict[TopicPartition, int]:
        """Every slot this agent leads now (within its lease's local deadline), by epoch."""
        now_ms = self._clock.monotonic_ms()
        held = {}
        for tp in self._log.led_partitions():
            plog = self._log.led_partition(tp)
            if tp.topic == COORDINATOR_TOPIC and plog is not None and plog.leading(now_ms):
                held[tp] = plog.state.leader_epoch
        return held

    async def take_placed(self) -> None:
        """Take every slot placed here (or not placed yet) that no other agent holds, as the
        first request for one of its keys would: a listing of what this agent coordinates
        right after it started must not miss the slots the next ownership round brings."""
        for partition in range(COORDINATOR_SLOTS):
            slot = TopicPartition(COORDINATOR_TOPIC, partition)
            if self._log.led_partition(slot) is None and self._may_lead(slot):
                with contextlib.suppress(NotLeader, UnknownTopicOrPartition, StorageError):
                    await self._log.take(slot)

    async def take(self, key: str) -> None:
        """Take the key's slot lease if the slot is placed here (or not placed yet) and no
        other agent holds it: a slot handed over to this agent is coordinated from the first
        request that asks, not from the next ownership round. A store outage leaves it to
        that round."""
        slot = slot_of(key)
        if self._log.led_partition(slot) is None:
            with contextlib.suppress(NotLeader, UnknownTopicOrPartition, StorageError):
                await self._log.partition(slot)
