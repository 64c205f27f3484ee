"""Chaos: agents SIGKILLed while clients produce. acks=all: no acknowledged record is lost
across a failover to another agent and the killed agent's return. acks=1 on one agent whose
disk survives: restarted on its WAL, it loses nothing either (the run records no disk loss or
fenced lease, so the checkers excuse no loss)."""

from __future__ import annotations

import asyncio
import shutil

from sim.history import ACKS_ALL, ACKS_LEADER
from streamhouse.io.locations import WAL_DISK_DIRECTORY
from tests.chaos.conftest import MakeWorld
from tests.chaos.run import TOPIC, Plan, run_chaos, run_clean
from tests.chaos.world import LEASE_TTL_MS, ChaosWorld, in_thread

DOWN_PAST_LEASE_S = LEASE_TTL_MS / 1000 * 2  # others take its partitions meanwhile
WARM_UP_S = 3
KILLS = 2  # of the one agent whose disk survives (a restart takes a second or two)
FAILOVERS = 1  # of the cluster's busiest agent, down twice the lease TTL


async def _kill_the_busiest(world: ChaosWorld) -> None:
    for _ in range(FAILOVERS):
        await asyncio.sleep(WARM_UP_S)
        victim = await in_thread(world.busiest, TOPIC)
        await world.down_past_the_lease(victim, DOWN_PAST_LEASE_S)


def test_sigkill_during_acks_all_produce_loses_nothing_acknowledged(make_world: MakeWorld) -> None:
    world = make_world(agents=2)
    world.start_all()
    plan = Plan(producers=((ACKS_ALL, True), (ACKS_ALL, False)), records_per_producer=400)
    run_clean(world, plan, _kill_the_busiest)


async def _kill_and_restart_at_once(world: ChaosWorld) -> None:
    (agent,) = world.agents
    for _ in range(KILLS):
        await asyncio.sleep(WARM_UP_S)
        world.kill(agent)
        await in_thread(world.restart, agent)


def test_sigkill_during_acks_1_produce_with_the_disk_surviving_loses_nothing(
    make_world: MakeWorld,
) -> None:
    world = make_world(agents=1, shared=False)
    world.start_all()
    plan = Plan(
        producers=((ACKS_LEADER, False), (ACKS_LEADER, False)),
        records_per_producer=300,
        liveness_acks=ACKS_LEADER,
    )
    run_clean(world, plan, _kill_and_restart_at_once)


async def _lose_the_wal_unrecorded(world: ChaosWorld) -> None:
    (agent,) = world.agents
    await asyncio.sleep(WARM_UP_S)
    world.kill(agent)
    shutil.rmtree(agent.data_dir / WAL_DISK_DIRECTORY)  # a disk loss the history does not tell
    await in_thread(world.restart, agent)


def test_the_checkers_catch_a_disk_loss_the_run_did_not_record(make_world: MakeWorld) -> None:
    """The control: the same run with the killed agent's WAL deleted and no disk loss
    recorded must be judged as losing acknowledged acks=1 records (nothing is flushed)."""
    world = make_world(agents=1, shared=False, extra_args=("--flush-interval-ms", "600000"))
    world.start_all()
    plan = Plan(
        producers=((ACKS_LEADER, False),),
        records_per_producer=100,
        members=0,
        liveness_acks=ACKS_LEADER,
    )
    outcome = run_chaos(world, plan, _lose_the_wal_unrecorded)
    checkers = {violation.checker for violation in outcome.violations}
    assert "acked_leader" in checkers, outcome.text
