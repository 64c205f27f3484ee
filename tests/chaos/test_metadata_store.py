"""Chaos: the shared PostgreSQL server crashes under a running cluster -- restarted at once,
and down for longer than the lease TTL. Agents keep serving what they can, retry the store,
and nothing acknowledged is lost; once it is back every partition takes records again and the
group settles."""

from __future__ import annotations

import asyncio

from sim.history import ACKS_ALL, FAULT_HEAL, FAULT_STORE_FAILOVER
from tests.chaos.conftest import MakeWorld
from tests.chaos.run import Nemesis, Plan, run_clean
from tests.chaos.world import LEASE_TTL_MS, ChaosWorld, in_thread

WARM_UP_S = 3
LEASE_TTL_S = LEASE_TTL_MS / 1000
PAST_THE_LEASE_S = LEASE_TTL_S * 2.5
AFTER_S = 3
PLAN = Plan(producers=((ACKS_ALL, True), (ACKS_ALL, False)), records_per_producer=400)


def _store_down_for(down_s: float) -> Nemesis:
    async def nemesis(world: ChaosWorld) -> None:
        assert world.stores is not None
        await asyncio.sleep(WARM_UP_S)
        leaders_before = await in_thread(world.all_leaders)
        world.fault(FAULT_STORE_FAILOVER, "*", f"PostgreSQL crashed for {down_s} s")
        await in_thread(world.stores.stop_metadata)
        if down_s > LEASE_TTL_S:  # every lease lapses in the store's time: others may take them
            await asyncio.sleep(LEASE_TTL_S)
            world.record_fenced(leaders_before)
            await asyncio.sleep(down_s - LEASE_TTL_S)
        else:
            await asyncio.sleep(down_s)
        await in_thread(world.stores.start_metadata)
        world.fault(FAULT_HEAL, "*")
        await asyncio.sleep(AFTER_S)

    return nemesis


def test_postgresql_restart(make_world: MakeWorld) -> None:
    world = make_world(agents=2)
    world.start_all()
    run_clean(world, PLAN, _store_down_for(0))


def test_postgresql_outage_longer_than_the_lease(make_world: MakeWorld) -> None:
    world = make_world(agents=2)
    world.start_all()
    run_clean(world, PLAN, _store_down_for(PAST_THE_LEASE_S))
