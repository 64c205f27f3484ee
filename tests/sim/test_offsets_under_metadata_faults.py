"""Group offsets while the metadata store fails: a commit or an offset read that meets a
failing store is retried by the client, never taken for success or "no offset".

Found by the simulator (seeds 18 and 213): answers without partitions read as success to
aiokafka, which checks only partition errors, so a commit was silently lost and a failed
read looked like a group without offsets.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]
from aiokafka.structs import TopicPartition as ClientPartition  # type: ignore[import-untyped]

from sim.clock import LoopClock
from sim.cluster import ClusterOptions, SimCluster
from sim.history import History
from sim.loop import SimLoop, run_simulation
from sim.metadata import MetadataFaults
from sim.network import NetworkFaults, SimNetwork, spawn_on_host
from sim.pins import pinned_aiokafka
from sim.rng import SeededRng
from sim.trace import Trace
from sim.workload import started

TOPIC = "offsets"
GROUP = "offsets-group"
OUTAGE_MS = 3_000
FAILING = MetadataFaults(unavailable_rate=1.0)
ONE_MS_LINKS = NetworkFaults(delay_ms_min=1, delay_ms_max=1)


def test_a_commit_during_a_metadata_outage_is_retried_and_read_back() -> None:
    rng = SeededRng(5)
    network = SimNetwork(rng.fork("network"), ONE_MS_LINKS)  # retries take time

    async def main(loop: SimLoop) -> tuple[int | None, int | None]:
        trace = Trace(loop.time_ns)
        cluster = SimCluster(loop, network, rng.fork("cluster"), ClusterOptions(), History(), trace)
        await cluster.start()
        agent = cluster.agents[0]
        assert agent.running is not None
        await cluster.spawn(agent.host, agent.running.admin.create_topic(TOPIC, 1), "topic")
        with pinned_aiokafka(LoopClock(loop), rng.fork("client")):
            task = spawn_on_host("client", _commit_through_an_outage(cluster), "client")
            return await task

    during, after = run_simulation(main, network)
    assert during == 7  # the commit waited out the outage instead of returning at once
    assert after == 7


async def _commit_through_an_outage(cluster: SimCluster) -> tuple[int | None, int | None]:
    consumer = await started(
        lambda: AIOKafkaConsumer(
            bootstrap_servers="agent-1:9092", group_id=GROUP, enable_auto_commit=False
        )
    )
    tp = ClientPartition(TOPIC, 0)
    try:
        consumer.assign([tp])
        cluster.metadata.faults = FAILING

        async def heal() -> None:
            await asyncio.sleep(OUTAGE_MS / 1000)
            cluster.metadata.faults = MetadataFaults()

        healing = asyncio.ensure_future(heal())
        await consumer.commit({tp: 7})
        during = cluster.clock.monotonic_ms()
        await healing
        assert during >= OUTAGE_MS, "the commit returned while every metadata write failed"
        cluster.metadata.faults = FAILING
        healing = asyncio.ensure_future(heal())
        read_during = await consumer.committed(tp)  # retried until the store is back
        assert cluster.clock.monotonic_ms() >= during + OUTAGE_MS
        await healing
        return read_during, await consumer.committed(tp)
    finally:
        await consumer.stop()
        await cluster.close()
