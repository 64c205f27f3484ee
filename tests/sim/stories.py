"""A scripted story in a simulated cluster: the real agents on sim ports, a fault-free network,
one topic created through the first agent, then the story run from a client host."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from sim.cluster import ClusterOptions, SimCluster
from sim.history import History
from sim.loop import SimLoop, run_simulation
from sim.network import NetworkFaults, SimNetwork
from sim.rng import SeededRng
from sim.trace import Trace
from streamhouse.config import Settings

CLIENT = "client"
Story = Callable[[SimCluster], Coroutine[Any, Any, Any]]


def simulate_story(
    story: Story, *, seed: int, agents: int, settings: Settings, topic: str, partitions: int
) -> Any:
    """What `story` returns, run from the client host once the topic exists."""
    rng = SeededRng(seed)
    network = SimNetwork(rng.fork("network"), NetworkFaults())

    async def main(loop: SimLoop) -> Any:
        trace = Trace(lambda: loop.time_ns())
        options = ClusterOptions(agents=agents, settings=settings)
        cluster = SimCluster(loop, network, rng.fork("cluster"), options, History(), trace)
        await cluster.start()
        first = cluster.agents[0]
        assert first.running is not None
        await cluster.spawn(first.host, first.running.admin.create_topic(topic, partitions), "t")
        cluster.add_client_host(CLIENT)
        try:
            return await cluster.spawn(CLIENT, story(cluster), "story")
        finally:
            await cluster.close()

    return run_simulation(main, network)
