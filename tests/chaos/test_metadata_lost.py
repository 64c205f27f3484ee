"""Chaos: the metadata store is lost whole in the middle of a run (F9). Every agent is killed,
the PostgreSQL database is dropped and created empty, and the agents start again on it: the
first rebuilds the metadata from the bucket (its snapshots and objects), and clients carry on.
Every acks=all record acknowledged before the loss is still there, at its offset; acks=1
records not yet in an object may be lost (the checkers excuse that only after the wipe), and
the log start never moves past data that was durable."""

from __future__ import annotations

import asyncio

from sim.history import ACKS_ALL, ACKS_LEADER, FAULT_METADATA_WIPE
from tests.chaos.conftest import MakeWorld
from tests.chaos.run import Plan, run_clean
from tests.chaos.world import ChaosWorld, in_thread

WARM_UP_S = 5  # objects and a snapshot reach the bucket first
DOWN_S = 1


async def _lose_the_metadata_store(world: ChaosWorld) -> None:
    assert world.stores is not None
    await asyncio.sleep(WARM_UP_S)
    for agent in world.agents:
        world.kill(agent)
    await in_thread(world.stores.wipe_database, world.metadata_url)
    world.fault(FAULT_METADATA_WIPE, "*", "the PostgreSQL database dropped and created empty")
    await asyncio.sleep(DOWN_S)
    for agent in world.agents:
        await in_thread(world.restart, agent)


def test_metadata_store_lost_mid_run(make_world: MakeWorld) -> None:
    world = make_world(agents=2)
    world.start_all()
    plan = Plan(
        producers=((ACKS_ALL, True), (ACKS_LEADER, False)), records_per_producer=400, members=0
    )
    run_clean(world, plan, _lose_the_metadata_store)
    rebuilt = [
        a.name for a in world.agents if "rebuilt" in (a.process.log_tail(400) if a.process else "")
    ]
    assert rebuilt, "no agent rebuilt the metadata from the bucket"
