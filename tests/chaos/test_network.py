"""Chaos: clients cut off from one agent while it keeps its stores, through a fault proxy in
front of each agent's Kafka port (agents advertise the proxy's port, so clients and other
agents reach them only through it). First the proxy is disabled (connections closed and
refused), later it black-holes every byte (toxiproxy's `timeout` toxic). The agent keeps its
leases meanwhile, so its partitions stall rather than move; nothing acknowledged is lost,
nothing is read twice at one offset, and clients carry on once the partition heals."""

from __future__ import annotations

import asyncio
import time

from confluent_kafka.admin import AdminClient

from sim.history import ACKS_ALL, ACKS_LEADER, FAULT_HEAL, FAULT_NETWORK_PARTITION
from streamhouse.testing.fault_proxy import FaultProxy
from tests.chaos.conftest import MakeWorld
from tests.chaos.run import TOPIC, Plan, run_clean
from tests.chaos.world import ChaosWorld, in_thread

WARM_UP_S = 3
CUT_S = 6
AFTER_S = 2
METADATA_TRIES_MAX = 60
BLACK_HOLE = ("upstream", "downstream")


def test_client_agent_partition(make_world: MakeWorld, fault_proxy: FaultProxy) -> None:
    world = make_world(agents=2)
    proxies = {}
    for agent in world.agents:
        proxy = fault_proxy.proxy(f"kafka-{agent.name}", f"127.0.0.1:{agent.kafka_port}")
        agent.advertised_port = fault_proxy.listen_port(proxy)
        proxies[agent.name] = proxy
    world.start_all()
    proxy_ports = {fault_proxy.listen_port(proxy) for proxy in proxies.values()}
    assert _advertised_ports(world.agents[0].kafka_port, len(proxies)) == proxy_ports

    async def cut_off(world: ChaosWorld) -> None:
        await asyncio.sleep(WARM_UP_S)
        victim = await in_thread(world.busiest, TOPIC)
        proxy = proxies[victim.name]
        world.fault(FAULT_NETWORK_PARTITION, victim.name, f"proxy disabled {CUT_S} s")
        await in_thread(proxy.disable)
        await asyncio.sleep(CUT_S)
        await in_thread(proxy.enable)
        world.fault(FAULT_HEAL, victim.name)
        await asyncio.sleep(WARM_UP_S)
        world.fault(FAULT_NETWORK_PARTITION, victim.name, f"black hole {CUT_S} s")
        for stream in BLACK_HOLE:
            black_hole = {"timeout": 0}
            await in_thread(proxy.add_toxic, type="timeout", stream=stream, attributes=black_hole)
        await asyncio.sleep(CUT_S)
        for stream in BLACK_HOLE:
            await in_thread(proxy.destroy_toxic, f"timeout_{stream}")
        world.fault(FAULT_HEAL, victim.name)
        await asyncio.sleep(AFTER_S)

    plan = Plan(
        producers=((ACKS_ALL, True), (ACKS_LEADER, False)), records_per_producer=500, members=2
    )
    run_clean(world, plan, cut_off)


def _advertised_ports(kafka_port: int, agents: int) -> set[int]:
    """The broker ports Metadata answers, asked of the agent at `kafka_port` (its own port,
    not a proxy's) until it lists `agents` brokers (each registers as it starts)."""
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{kafka_port}"})
    ports: set[int] = set()
    for _ in range(METADATA_TRIES_MAX):
        ports = {broker.port for broker in admin.list_topics(timeout=30).brokers.values()}
        if len(ports) >= agents:
            break
        time.sleep(0.5)
    return ports
