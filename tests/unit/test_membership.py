"""The membership service on virtual clocks: agents register with stable node ids, heartbeat,
and see each other come and go within the session timeout; a store outage is retried, never
a failure of the agent."""

from __future__ import annotations

import asyncio

from sim.clock import VirtualClock
from sim.metadata import MetadataFaults, SimMetadataStore
from sim.rng import SeededRng
from streamhouse.config import Settings
from streamhouse.engine.cluster import AgentAddress, ClusterDirectory
from streamhouse.engine.failure import AgentFailure
from streamhouse.engine.membership import Membership

INTERVAL_MS = 2_000
SESSION_MS = 9_000
SETTINGS = Settings(agent_heartbeat_interval_ms=INTERVAL_MS, agent_session_timeout_ms=SESSION_MS)
GONE_WITHIN_MS = SESSION_MS + INTERVAL_MS  # the last beat's TTL, then the others' next refresh
OUTAGE = MetadataFaults(unavailable_rate=1.0)


class World:
    """Agents on one clock, sharing a store whose own clock ticks with it."""

    def __init__(self) -> None:
        self.clock = VirtualClock()
        self.store_clock = VirtualClock(start_wall_ms=123_456_789)
        self.store = SimMetadataStore(SeededRng(1), clock=self.store_clock)
        self.failure = AgentFailure()

    async def agent(
        self, agent_id: str, port: int, *, beating: bool = True
    ) -> tuple[Membership, ClusterDirectory]:
        """An agent that joins, and heartbeats unless it is killed right after (`beating`)."""
        directory = ClusterDirectory(agent_id)
        directory.advertise(f"host-{agent_id}", port)
        membership = Membership(SETTINGS, self.clock, self.store, directory)
        await membership.join()
        if beating:
            membership.start(self.failure)
        await _settle()  # its heartbeat sleeps from now
        return membership, directory

    async def advance_ms(self, delta_ms: int, step_ms: int = 100) -> None:
        for _ in range(delta_ms // step_ms):
            self.clock.advance_ms(step_ms)
            self.store_clock.advance_ms(step_ms)
            await _settle()


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def _ids(directory: ClusterDirectory) -> list[tuple[str, int]]:
    return [(agent.agent_id, agent.node_id) for agent in directory.agents()]


def test_agents_register_and_see_each_other() -> None:
    async def main() -> None:
        world = World()
        _, first = await world.agent("a", 9092)
        assert first.describe().agents == (AgentAddress("a", 0, "host-a", 9092),)
        _, second = await world.agent("b", 9093)
        assert _ids(second) == [("a", 0), ("b", 1)]  # b read a at its join
        await world.advance_ms(INTERVAL_MS)  # a learns of b at its next beat
        assert _ids(first) == [("a", 0), ("b", 1)]
        await world.advance_ms(10 * SESSION_MS)  # heartbeats keep both live
        assert _ids(first) == _ids(second) == [("a", 0), ("b", 1)]
        assert not world.failure.failed

    asyncio.run(main())


def test_an_agent_that_stops_beating_is_gone_within_the_session_timeout() -> None:
    async def main() -> None:
        world = World()
        await world.agent("dead", 9092, beating=False)  # killed after joining: no goodbye
        _, survivor = await world.agent("survivor", 9093)
        await world.advance_ms(SESSION_MS - INTERVAL_MS)
        assert [a for a, _ in _ids(survivor)] == ["dead", "survivor"]
        await world.advance_ms(GONE_WITHIN_MS - (SESSION_MS - INTERVAL_MS))
        assert _ids(survivor) == [("survivor", 1)]

    asyncio.run(main())


def test_leaving_deregisters_at_once_and_a_return_keeps_the_node_id() -> None:
    async def main() -> None:
        world = World()
        leaving, _ = await world.agent("a", 9092)
        _, staying = await world.agent("b", 9093)
        await leaving.leave()
        await world.advance_ms(INTERVAL_MS)  # b's next refresh
        assert _ids(staying) == [("b", 1)]
        _, back = await world.agent("a", 19092)
        assert back.advertised == AgentAddress("a", 0, "host-a", 19092)
        assert not world.failure.failed

    asyncio.run(main())


def test_a_store_outage_is_retried_and_the_last_list_kept() -> None:
    async def main() -> None:
        world = World()
        _, first = await world.agent("a", 9092)
        _, _second = await world.agent("b", 9093)
        await world.advance_ms(INTERVAL_MS)
        world.store.faults = OUTAGE
        await world.advance_ms(2 * SESSION_MS)  # every beat fails: b's session ends meanwhile
        assert _ids(first) == [("a", 0), ("b", 1)]  # what the store said last
        assert not world.failure.failed
        world.store.faults = MetadataFaults()
        await world.advance_ms(INTERVAL_MS)  # the next beats register both again
        await world.advance_ms(INTERVAL_MS)
        assert _ids(first) == [("a", 0), ("b", 1)]

    asyncio.run(main())


def test_a_store_that_forgot_the_agent_is_told_again() -> None:
    async def main() -> None:
        world = World()
        _, directory = await world.agent("a", 9092)
        await world.store.deregister_agent("a")
        assert await world.store.list_live_agents() == []
        await world.advance_ms(INTERVAL_MS)
        assert [a.agent_id for a in await world.store.list_live_agents()] == ["a"]
        assert _ids(directory) == [("a", 0)]

    asyncio.run(main())
