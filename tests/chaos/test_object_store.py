"""Chaos: the S3 endpoint goes away and slows down under a running cluster, through a fault
proxy between the agents and the S3 server (toxiproxy's API: the proxy disabled, latency
toxics). acks=1 keeps being acknowledged from the WAL; acks=all waits for the bucket and is
acknowledged only once its object is there; nothing acknowledged is lost, and everything
pending flushes once S3 is back."""

from __future__ import annotations

import asyncio
from typing import Any

from sim.history import (
    ACKS_ALL,
    ACKS_LEADER,
    FAULT_HEAL,
    FAULT_OBJECT_STORE_OUTAGE,
    FAULT_OBJECT_STORE_SLOW,
)
from streamhouse.testing.fault_proxy import FaultProxy
from tests.chaos.conftest import MakeWorld
from tests.chaos.run import Plan, run_clean
from tests.chaos.world import ChaosWorld, in_thread

WARM_UP_S = 3
OUTAGE_S = 8
SLOW_S = 6
LATENCY_MS = 1_500
JITTER_MS = 500
AFTER_S = 2
PLAN = Plan(producers=((ACKS_ALL, True), (ACKS_LEADER, False)), records_per_producer=500, members=1)


def _world_behind_a_proxy(make_world: MakeWorld, fault_proxy: FaultProxy) -> tuple[ChaosWorld, Any]:
    world = make_world(agents=2)
    assert world.stores is not None
    upstream = world.stores.s3_endpoint.removeprefix("http://")
    s3 = fault_proxy.proxy("s3", upstream)
    world.s3_via = f"http://127.0.0.1:{fault_proxy.listen_port(s3)}"
    world.start_all()
    return world, s3


def test_s3_outage(make_world: MakeWorld, fault_proxy: FaultProxy) -> None:
    world, s3 = _world_behind_a_proxy(make_world, fault_proxy)

    async def outage(world: ChaosWorld) -> None:
        await asyncio.sleep(WARM_UP_S)
        world.fault(FAULT_OBJECT_STORE_OUTAGE, "*", f"S3 refused for {OUTAGE_S} s")
        await in_thread(s3.disable)
        await asyncio.sleep(OUTAGE_S)
        await in_thread(s3.enable)
        world.fault(FAULT_HEAL, "*")
        await asyncio.sleep(AFTER_S)

    run_clean(world, PLAN, outage)


def test_s3_latency_spikes(make_world: MakeWorld, fault_proxy: FaultProxy) -> None:
    world, s3 = _world_behind_a_proxy(make_world, fault_proxy)

    async def spikes(world: ChaosWorld) -> None:
        for stream in ("downstream", "upstream"):
            await asyncio.sleep(WARM_UP_S)
            world.fault(FAULT_OBJECT_STORE_SLOW, "*", f"{stream} +{LATENCY_MS} ms for {SLOW_S} s")
            attributes = {"latency": LATENCY_MS, "jitter": JITTER_MS}
            await in_thread(s3.add_toxic, type="latency", stream=stream, attributes=attributes)
            await asyncio.sleep(SLOW_S)
            await in_thread(s3.destroy_toxic, f"latency_{stream}")
            world.fault(FAULT_HEAL, "*")
        await asyncio.sleep(AFTER_S)

    run_clean(world, PLAN, spikes)
