"""Group coordinators placed by the lease of the group's coordinator slot, on simulated ports:
two agents' log stores share one metadata store; the agent holding the slot's lease
coordinates the slot's groups and the other answers NOT_COORDINATOR to every group call;
once the slot is handed over, the first agent answers NOT_COORDINATOR (its waiting members
too) and the second coordinates from the offsets the first committed."""

from __future__ import annotations

import asyncio

from sim.clock import DEFAULT_START_WALL_MS, VirtualClock
from sim.disk import SimDisk
from sim.metadata import SimMetadataStore
from sim.object_store import SimObjectStore
from sim.rng import SeededRng
from streamhouse.config import Settings
from streamhouse.engine.coordinators import (
    COORDINATOR_SLOTS,
    COORDINATOR_TOPIC,
    CoordinatorSlots,
    ensure_coordinator_slots,
    slot_of,
)
from streamhouse.engine.groups import GroupCoordinator
from streamhouse.engine.log_store import LogStore
from streamhouse.errors import ErrorCode, NotCoordinator
from streamhouse.log.group_state import JoinRequest
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import OffsetToCommit
from tests.unit.log_world import one_store_log

GROUP = "billing"
SLOT = slot_of(GROUP)
TP0 = TopicPartition("orders", 0)
SETTINGS = Settings(group_initial_rebalance_delay_ms=0)
SESSION_MS = 10_000
E = ErrorCode


class Agent:
    """One agent's log store and group coordinator over the shared stores."""

    def __init__(self, log: LogStore, groups: GroupCoordinator) -> None:
        self.log = log
        self.groups = groups


class World:
    def __init__(self) -> None:
        self.rng = SeededRng(3)
        self.clock = VirtualClock()
        self.metadata = SimMetadataStore(
            self.rng.fork("metadata"), clock=VirtualClock(DEFAULT_START_WALL_MS + 3_600_000)
        )
        self.objects = SimObjectStore(None, self.rng.fork("objects"))

    async def agent(self, agent_id: str) -> Agent:
        await ensure_coordinator_slots(self.metadata, self.clock.now_ms())
        if await self.metadata.get_topic(TP0.topic) is None:
            await self.metadata.create_topic(TP0.topic, 1, {}, self.clock.now_ms())
        log = one_store_log(
            SETTINGS,
            self.clock,
            self.rng.fork(agent_id),
            SimDisk(self.rng.fork(f"disk-{agent_id}")),
            self.objects,
            self.metadata,
            agent_id,
        )
        await log.open(run_background=False)
        slots = CoordinatorSlots(log, self.clock)
        groups = GroupCoordinator(
            SETTINGS,
            self.clock,
            self.rng.fork(f"groups-{agent_id}"),
            topics=self.metadata,
            groups=self.metadata,
            coordinating=slots,
        )
        return Agent(log, groups)


def _join(member_id: str = "") -> JoinRequest:
    return JoinRequest(
        member_id, None, "client", "host", SESSION_MS, SESSION_MS, "consumer", (("range", b""),), 5
    )


async def _member(agent: Agent) -> tuple[str, int]:
    """A member joined to a stable one-member group: (member id, generation)."""
    first = await agent.groups.join(GROUP, _join())
    assert first.error == E.MEMBER_ID_REQUIRED
    joined = await agent.groups.join(GROUP, _join(first.member_id))
    assert joined.error == E.NONE, joined
    synced = await agent.groups.sync(
        GROUP, joined.member_id, None, joined.generation, None, None, {joined.member_id: b"a"}
    )
    assert synced.error == E.NONE
    return joined.member_id, joined.generation


def test_the_slots_are_one_internal_topic_created_once() -> None:
    async def main() -> None:
        world = World()
        await world.agent("a")
        await world.agent("b")  # finds it there
        topic = await world.metadata.get_topic(COORDINATOR_TOPIC)
        assert topic is not None and topic.partition_count == COORDINATOR_SLOTS

    asyncio.run(main())


def test_only_the_slots_lease_holder_coordinates_and_a_handover_moves_the_group() -> None:
    async def main() -> None:
        world = World()
        a, b = await world.agent("a"), await world.agent("b")
        await a.log.take(SLOT)
        member, generation = await _member(a)
        commit = {TP0: OffsetToCommit(5, -1, None)}
        assert await a.groups.commit_offsets(GROUP, generation, member, None, commit) == {
            TP0: E.NONE
        }
        # b does not hold the slot: every group call is NOT_COORDINATOR
        assert (await b.groups.join(GROUP, _join())).error == E.NOT_COORDINATOR
        assert b.groups.heartbeat(GROUP, member, None, generation) == E.NOT_COORDINATOR
        assert await b.groups.commit_offsets(GROUP, -1, "", None, commit) == {
            TP0: E.NOT_COORDINATOR
        }
        try:
            await b.groups.fetch_offsets(GROUP, None)
        except NotCoordinator as refused:
            assert refused.code == E.NOT_COORDINATOR
        else:
            raise AssertionError("b fetched offsets of a group it does not coordinate")

        assert await a.log.hand_over(SLOT)  # e.g. b joined and the slot is placed on b
        assert a.groups.heartbeat(GROUP, member, None, generation) == E.NOT_COORDINATOR
        assert a.groups.group(GROUP) is None  # its state is dropped, not kept for later
        await b.log.take(SLOT)
        assert (await b.groups.fetch_offsets(GROUP, None))[TP0].offset == 5
        moved_member, moved_generation = await _member(b)
        assert moved_generation > generation  # generations reserved in the store go on
        assert await b.groups.commit_offsets(
            GROUP, moved_generation, moved_member, None, {TP0: OffsetToCommit(9, -1, None)}
        ) == {TP0: E.NONE}

    asyncio.run(main())


def test_a_member_waiting_on_a_coordinator_that_lost_its_slot_is_told_to_find_it_again() -> None:
    async def main() -> None:
        world = World()
        a = await world.agent("a")
        await a.log.take(SLOT)
        member, generation = await _member(a)
        second = await a.groups.join(GROUP, _join())
        assert second.error == E.MEMBER_ID_REQUIRED
        # a rebalance: the second member waits for the first to rejoin
        waiting = asyncio.ensure_future(a.groups.join(GROUP, _join(second.member_id)))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiting.done()
        assert await a.log.hand_over(SLOT)
        assert a.groups.heartbeat(GROUP, member, None, generation) == E.NOT_COORDINATOR
        assert (await waiting).error == E.NOT_COORDINATOR

    asyncio.run(main())
