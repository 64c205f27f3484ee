"""The ownership service: every partition led by the live agent the placement puts it on.

Every `ownership_interval_ms` each agent reads the live agents (membership) and every
partition (one read of the store), places the partitions over the agents with the
balancing rule (engine/placement.py: each within one partition of an even share,
reassignment pins honoured; the topics' partitions and the coordinator slots of
engine/coordinators.py each as their own pool), tells the cluster directory (Metadata
then points clients at each partition's target while its lease is not live), and then:

- hands over the partitions it leads that are placed elsewhere: new appends are refused,
  what was appended is flushed, then the lease is released, so the target takes it at
  its next round instead of waiting out the TTL (`LogStore.hand_over`);
- releases the live leases held in its name that it does not lead and that are placed
  elsewhere (an earlier incarnation took them before a restart), so their targets take
  them at once instead of waiting out the TTL while Metadata points clients here;
- takes the leases of the partitions placed on it that no live lease holds (unowned,
  expired, released), so a partition is led before its first client comes, and those
  whose target let its own lease lapse while still listed (paused, cut off from the
  store), rather than wait for the target's session to end; such a partition goes back
  to its target after a session timeout (by then the target is back, or no longer listed).

Agents whose membership views differ for a moment may place a partition differently;
leases keep that safe (one holder per epoch) and the views agree again within a
heartbeat. A store outage skips the round: the next one retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from streamhouse.config import Settings
from streamhouse.engine.cluster import ClusterDirectory
from streamhouse.engine.coordinators import is_internal
from streamhouse.engine.failure import AgentFailure
from streamhouse.engine.log_store import LogStore
from streamhouse.engine.membership import Membership
from streamhouse.engine.placement import place
from streamhouse.errors import NotLeader, StorageError, UnknownTopicOrPartition
from streamhouse.names import TopicPartition
from streamhouse.ports.clock import Clock
from streamhouse.ports.topics import PartitionRecord, TopicStore

log = logging.getLogger("streamhouse.ownership")


def placement_key(tp: TopicPartition) -> str:
    """A partition's name in the placement (topic names cannot hold a NUL)."""
    return f"{tp.topic}\0{tp.partition}"


def place_partitions(
    records: Iterable[PartitionRecord], agents: Iterable[str]
) -> dict[TopicPartition, str]:
    """Each partition's target agent among `agents`, pins (preferred agents) honoured."""
    by_key = {placement_key(record.tp): record for record in records}
    pins = {key: r.preferred_agent for key, r in by_key.items() if r.preferred_agent}
    placed = place(by_key, list(agents), pins)
    return {by_key[key].tp: agent for key, agent in placed.items()}


def _pools(records: list[PartitionRecord]) -> list[list[PartitionRecord]]:
    """The topics' partitions and the coordinator slots, each balanced on its own."""
    internal = [record for record in records if is_internal(record.topic)]
    return [[record for record in records if not is_internal(record.topic)], internal]


class Ownership:
    """Balances this agent's share of the partitions, round after round."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        topics: TopicStore,
        log_store: LogStore,
        directory: ClusterDirectory,
        membership: Membership,
    ) -> None:
        self._interval_ms = settings.ownership_interval_ms
        self._keep_taken_ms = settings.agent_session_timeout_ms
        self._clock = clock
        self._topics = topics
        self._log = log_store
        self._directory = directory
        self._membership = membership
        # partitions taken from a target that let its lease lapse -> until when (monotonic)
        # they are kept, not handed back: a target paused or cut off from the store could not
        # take them, and by then it has either come back or left the membership
        self._kept_until_ms: dict[TopicPartition, int] = {}
        self._running: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self, failure: AgentFailure) -> None:
        """Balance every interval from now on, until `stop`."""
        self._running = asyncio.get_running_loop().create_task(self._run(), name="ownership")
        failure.watch(self._running, stopping=lambda: self._stopping)

    async def stop(self) -> None:
        """Stop balancing (before the agent hands everything over on shutdown)."""
        self._stopping = True
        if self._running is not None:
            self._running.cancel()
            await asyncio.gather(self._running, return_exceptions=True)

    async def _run(self) -> None:
        while True:  # the first round at once: partitions are placed before most clients come
            try:
                await self.balance_once()
            except StorageError as error:  # retried at the next round
                log.warning("ownership round failed, retrying: %s", error)
            await self._clock.sleep_ms(self._interval_ms)

    async def balance_once(self) -> None:
        """One round: read, place, hand over the surplus, take the share. Raises StorageError."""
        await self._membership.refresh()
        records = await self._topics.list_partitions()
        agents = [agent.agent_id for agent in self._directory.agents()]
        targets = {
            tp: agent
            for pool in _pools(records)
            for tp, agent in place_partitions(pool, agents).items()
        }
        holders = {r.tp: r.leader_agent for r in records if r.lease_live and r.leader_agent}
        self._directory.place(targets, holders)
        me = self._directory.agent_id
        now_ms = self._clock.monotonic_ms()
        for tp in sorted(self._log.led_partitions()):
            if targets.get(tp, me) != me and self._kept_until_ms.get(tp, 0) <= now_ms:
                await self._log.hand_over(tp)
        self._kept_until_ms = {tp: t for tp, t in self._kept_until_ms.items() if t > now_ms}
        for record in records:
            target = targets.get(record.tp)
            if self._held_from_before(record, target):
                await self._log.release_unled(record.tp)
            elif self._may_take(record, target) and await self._take(record.tp) and target != me:
                self._kept_until_ms[record.tp] = now_ms + self._keep_taken_ms

    def _held_from_before(self, record: PartitionRecord, target: str | None) -> bool:
        """A live lease held in this agent's name that it does not lead and that is placed
        elsewhere: taken by an earlier incarnation (a restart, a start that failed midway)."""
        me = self._directory.agent_id
        return (
            record.lease_live
            and record.leader_agent == me
            and target is not None
            and target != me
            and self._log.led_partition(record.tp) is None
        )

    def _may_take(self, record: PartitionRecord, target: str | None) -> bool:
        """A partition placed here that no other agent holds a live lease on; or one whose
        target let its own lease lapse (paused, cut off from the store) while still listed:
        any agent takes that one rather than wait for the target's session to end."""
        me = self._directory.agent_id
        if self._log.led_partition(record.tp) is not None:
            return False
        if record.lease_live:  # ours only after a restart: taking it renews the same epoch
            return target == me and record.leader_agent == me
        return target == me or (target is not None and record.leader_agent == target)

    async def _take(self, tp: TopicPartition) -> bool:
        """Whether this agent took (or kept) the lease."""
        try:
            await self._log.take(tp)
        except (NotLeader, UnknownTopicOrPartition):
            return False  # taken by another agent meanwhile, or deleted: the next round sees it
        return True
