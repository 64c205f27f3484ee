"""The ownership service on simulated ports: agents sharing one metadata store and bucket
take partitions until each leads within one of an even share, hand their surplus over (flushed,
then released) when an agent joins, and a departing agent's released leases are taken at
the others' next round, without waiting out the TTL."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from sim.clock import DEFAULT_START_WALL_MS, VirtualClock
from sim.disk import SimDisk
from sim.metadata import SimMetadataStore
from sim.object_store import SimObjectStore
from sim.rng import SeededRng
from streamhouse.config import Settings
from streamhouse.engine.cluster import ClusterDirectory
from streamhouse.engine.log_store import LAPSED_WAIT_MS_MIN, LogStore
from streamhouse.engine.membership import Membership
from streamhouse.engine.ownership import Ownership
from streamhouse.errors import NotLeader
from streamhouse.kafka.records import SimpleRecord, build_batch
from streamhouse.names import TopicPartition
from tests.unit.log_world import one_store_log

SETTINGS = Settings()
TOPIC = "orders"
PARTITIONS = 10
STORE_CLOCK_AHEAD_MS = 3_600_000


class Node:
    """One agent: its log store (no background services), membership and ownership."""

    def __init__(self, log: LogStore, directory: ClusterDirectory, ownership: Ownership) -> None:
        self.log = log
        self.directory = directory
        self.ownership = ownership

    @property
    def led(self) -> set[TopicPartition]:
        return set(self.log.led_partitions())


class World:
    """Agents on one clock over one metadata store (its own clock) and one bucket."""

    def __init__(self) -> None:
        self.rng = SeededRng(7)
        self.clock = VirtualClock()
        self.store_clock = VirtualClock(DEFAULT_START_WALL_MS + STORE_CLOCK_AHEAD_MS)
        self.metadata = SimMetadataStore(self.rng.fork("metadata"), clock=self.store_clock)
        self.objects = SimObjectStore(None, self.rng.fork("objects"))
        self.nodes: dict[str, Node] = {}
        self.disks: dict[str, SimDisk] = {}  # kept across an agent's restarts

    async def join(self, agent_id: str) -> Node:
        if await self.metadata.get_topic(TOPIC) is None:
            await self.metadata.create_topic(TOPIC, PARTITIONS, {}, self.clock.now_ms())
        directory = ClusterDirectory(agent_id)
        directory.advertise(f"host-{agent_id}", 9092)
        log = one_store_log(
            SETTINGS,
            self.clock,
            self.rng.fork(agent_id),
            self.disks.setdefault(agent_id, SimDisk(self.rng.fork(f"disk-{agent_id}"))),
            self.objects,
            self.metadata,
            agent_id,
            directory.may_lead,
        )
        await log.open(run_background=False)
        membership = Membership(SETTINGS, self.clock, self.metadata, directory)
        await membership.join()
        ownership = Ownership(SETTINGS, self.clock, self.metadata, log, directory, membership)
        node = Node(log, directory, ownership)
        self.nodes[agent_id] = node
        return node

    async def rounds(self, count: int = 2) -> None:
        """Every agent balances, `count` times over (no time passes)."""
        for _ in range(count):
            for node in self.nodes.values():
                await node.ownership.balance_once()

    def loads(self) -> list[int]:
        return sorted(len(node.led) for node in self.nodes.values())

    async def holders(self) -> dict[TopicPartition, str | None]:
        return {
            r.tp: r.leader_agent if r.lease_live else None
            for r in await self.metadata.list_partitions()
        }


def _run(main: Coroutine[Any, Any, None]) -> None:
    asyncio.run(main)


def test_agents_take_every_partition_within_one_of_an_even_share() -> None:
    async def main() -> None:
        world = World()
        for agent_id in ("a", "b", "c"):
            await world.join(agent_id)
        await world.rounds()
        assert world.loads() == [3, 3, 4]
        holders = await world.holders()
        assert all(holders.values())  # every partition leased, before any client came
        for agent_id, node in world.nodes.items():
            assert {tp for tp, holder in holders.items() if holder == agent_id} == node.led

    _run(main())


def test_a_joining_agent_gets_its_share_and_few_partitions_move() -> None:
    async def main() -> None:
        world = World()
        for agent_id in ("a", "b", "c"):
            await world.join(agent_id)
        await world.rounds()
        before = await world.holders()
        await world.join("d")
        await world.rounds()  # the others hand over, then d takes: no TTL waited out
        assert world.loads() == [2, 2, 3, 3]
        after = await world.holders()
        moved = [tp for tp in before if before[tp] != after[tp]]
        assert world.nodes["d"].led <= set(moved)
        assert len(moved) <= len(world.nodes["d"].led) + 1  # the capacity bound pushes one on

    _run(main())


def test_a_surplus_partition_is_flushed_before_its_lease_is_released() -> None:
    async def main() -> None:
        world = World()
        a = await world.join("a")
        await world.rounds()
        assert len(a.led) == PARTITIONS
        appended = {}
        for tp in sorted(a.led):
            result = await a.log.append(
                tp, build_batch([SimpleRecord(None, b"v", (), 5)]), durable=False
            )
            await result.synced  # acknowledged at acks=1: only in a's WAL so far
            appended[tp] = result.last_offset + 1
        await world.join("b")
        await world.rounds(1)
        records = {r.tp: r for r in await world.metadata.list_partitions()}
        b = world.nodes["b"]
        assert len(b.led) == PARTITIONS // 2
        for tp in b.led:  # taken at the next epoch, with what a acknowledged durable
            assert records[tp].durable_end_offset == appended[tp]
            assert records[tp].leader_epoch == 2
            assert b.log.led_partition(tp) is not None
        handed = sorted(b.led)[0]
        late = asyncio.ensure_future(
            a.log.append(handed, build_batch([SimpleRecord(None, b"late", (), 6)]), durable=False)
        )
        for _ in range(20):
            await asyncio.sleep(0)
        assert not late.done()  # a refusal waits, so a client does not ask again at once
        world.clock.advance_ms(LAPSED_WAIT_MS_MIN)
        try:
            await late
        except NotLeader:
            pass
        else:
            raise AssertionError("a handed-over partition took an append")

    _run(main())


def test_a_departing_agents_released_leases_are_taken_at_the_next_round() -> None:
    async def main() -> None:
        world = World()
        for agent_id in ("a", "b", "c"):
            await world.join(agent_id)
        await world.rounds()
        leaving = world.nodes.pop("b")
        await leaving.log.close(flush=True)  # the shutdown path: flush, release every lease
        await world.metadata.deregister_agent("b")
        await world.rounds(1)  # no time passed: nothing expired, everything was released
        assert world.loads() == [5, 5]
        assert "b" not in set((await world.holders()).values())

    _run(main())


def test_a_restarted_agent_releases_leases_held_in_its_name_that_are_placed_elsewhere() -> None:
    """Its earlier incarnation took the lease; this one does not lead the partition and it is
    placed on another agent: released at once, taken at the next round, no TTL waited."""

    async def main() -> None:
        world = World()
        for agent_id in ("a", "b"):
            await world.join(agent_id)
        await world.rounds()
        moved = sorted(world.nodes["b"].led)[0]
        world.nodes.pop("b")  # crashed: its leases stay live in the store
        await world.metadata.set_preferred_agent(moved, "a")  # and the partition moves to a
        restarted = await world.join("b")  # the same disk: its WAL marker, no fence
        assert moved not in restarted.led
        assert (await world.holders())[moved] == "b"
        await world.rounds(2)  # no time passes: nothing expires
        assert (await world.holders())[moved] == "a"
        assert moved in world.nodes["a"].led

    _run(main())
