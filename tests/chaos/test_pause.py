"""Chaos: the agent leading the most partitions is SIGSTOPped past its lease while clients
produce and a group consumes, then SIGCONTed. The others take its partitions; the zombie, back,
cannot commit anything over them (no offset shows two values, nothing acknowledged is lost,
committed offsets do not go back) and the clients move on to the new leaders."""

from __future__ import annotations

import asyncio

from sim.history import ACKS_ALL
from tests.chaos.conftest import MakeWorld
from tests.chaos.run import TOPIC, Plan, run_clean
from tests.chaos.world import LEASE_TTL_MS, ChaosWorld, in_thread

PAUSED_S = LEASE_TTL_MS / 1000 * 2.5
WARM_UP_S = 3
AFTER_S = 3  # the zombie runs on while clients still produce


async def _pause_the_busiest_past_its_lease(world: ChaosWorld) -> None:
    await asyncio.sleep(WARM_UP_S)
    victim = await in_thread(world.busiest, TOPIC)
    await in_thread(world.fence_leases, victim)
    world.pause(victim)
    await asyncio.sleep(PAUSED_S)
    world.resume(victim)
    await asyncio.sleep(AFTER_S)


def test_sigstop_past_the_lease_then_sigcont(make_world: MakeWorld) -> None:
    world = make_world(agents=2)
    world.start_all()
    plan = Plan(producers=((ACKS_ALL, True), (ACKS_ALL, False)), records_per_producer=400)
    run_clean(world, plan, _pause_the_busiest_past_its_lease)
