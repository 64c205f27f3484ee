"""Chaos: transactional producers and a read_committed reader run while each agent in turn is
SIGKILLed and kept down past the lease, so the coordinator of every transactional id dies at
some point, most likely mid-transaction or mid-commit. Transactions stay atomic: a committed
one is read whole, an aborted or unfinished one never under read_committed, a fenced producer
cannot commit, and a fresh producer commits once the cluster is healed."""

from __future__ import annotations

import asyncio

from sim.history import ACKS_ALL
from sim.options import TxnOptions
from tests.chaos.conftest import MakeWorld
from tests.chaos.run import Plan, run_clean
from tests.chaos.world import LEASE_TTL_MS, ChaosWorld

WARM_UP_S = 3
DOWN_S = LEASE_TTL_MS / 1000 * 2
TXNS = TxnOptions(producers=2, txns_per_producer=40, readers=1, reader_polls=60)


async def _kill_each_agent_in_turn(world: ChaosWorld) -> None:
    for victim in list(world.agents):
        await asyncio.sleep(WARM_UP_S)
        await world.down_past_the_lease(victim, DOWN_S)


def test_transaction_coordinator_killed_mid_commit(make_world: MakeWorld) -> None:
    world = make_world(agents=2)
    world.start_all()
    plan = Plan(producers=((ACKS_ALL, True),), records_per_producer=300, members=1, txn=TXNS)
    run_clean(world, plan, _kill_each_agent_in_turn)
