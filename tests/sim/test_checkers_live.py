"""The checkers on a real history: aiokafka clients over the simulated network, real agent.

A producer per ack mode (acks=1, acks=all, idempotent), a consumer, and a
consumer group of two members run against the real agent composition on the
simulator's ports, each client recording what it observed into a `History`
(the recording clients of `sim.workload`). The recorded history must pass
every checker (no false alarms on real client behaviour), and a copy in
which one read value is altered must not.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

import pytest

from sim.capture import captured_aiokafka
from sim.checkers import check_all
from sim.checkers.index import index_history
from sim.clock import LoopClock
from sim.disk import SimDisk
from sim.history import (
    ACKS_ALL,
    ACKS_LEADER,
    PHASE_LIVENESS,
    FetchObserved,
    GroupGeneration,
    History,
    OffsetCommitted,
    PhaseStarted,
    ProduceAcked,
    TopicCreated,
)
from sim.loop import SimLoop, run_simulation
from sim.metadata import SimMetadataStore
from sim.network import NetworkFaults, SimNetwork, on_host
from sim.object_store import SimObjectStore
from sim.pins import pinned_aiokafka
from sim.rng import SeededRng
from sim.workload import Clients
from streamhouse.agent import assemble_agent
from streamhouse.config import Settings

AGENT = "agent-1"
CLIENT = "client-1"
PORT = 9092
TOPIC = "checked"
GROUP = "checked-group"
GROUP_POLLS = 30
PARTITIONS = 2
RECORDS_PER_PRODUCER = 30
LIVENESS_BOUND_MS = 120_000
FAULTY = NetworkFaults(delay_ms_min=1, delay_ms_max=40, reset_rate=0.02, split_rate=0.3)


def record_run(
    seed: int, faults: NetworkFaults, workload: Callable[[Clients], Awaitable[None]]
) -> History:
    """One simulated run of `workload`; returns what its clients observed."""
    rng = SeededRng(seed)
    network = SimNetwork(rng.fork("network"), faults)
    history = History()

    async def main(loop: SimLoop) -> None:
        clock = LoopClock(loop)
        settings = Settings(kafka_host=AGENT, kafka_port=PORT, agent_id=AGENT)
        stores = (
            SimDisk(rng.fork("disk")),
            SimObjectStore(clock, rng.fork("objects")),
            SimMetadataStore(rng.fork("metadata")),
        )
        agent = await on_host(AGENT, assemble_agent(settings, clock, rng.fork("agent"), *stores))
        try:
            await on_host(AGENT, agent.admin.create_topic(TOPIC, PARTITIONS))
            now_us = lambda: loop.time_ns() // 1000  # noqa: E731
            clients = Clients(history, now_us, f"{AGENT}:{PORT}", TOPIC, PARTITIONS)
            history.append(TopicCreated(clients.now_us(), "admin", TOPIC, PARTITIONS))
            with pinned_aiokafka(clock, rng.fork("client")), captured_aiokafka():
                await on_host(CLIENT, workload(clients))
        finally:
            await on_host(AGENT, agent.close())

    run_simulation(main, network)
    return history


async def every_ack_mode(clients: Clients) -> None:
    """A producer per ack mode, then a consumer reading every partition back."""
    clients.history.append(PhaseStarted(clients.now_us(), PHASE_LIVENESS))
    for acks, idempotent in ((ACKS_LEADER, False), (ACKS_ALL, False), (ACKS_ALL, True)):
        name = f"producer-acks-{acks}" + ("-idempotent" if idempotent else "")
        await clients.produce(name, acks, idempotent, RECORDS_PER_PRODUCER, 0)
    assert await clients.scan("consumer")


async def group(clients: Clients) -> None:
    """Two members of one group, committing after each poll and reading commits back."""
    await clients.produce("producer", ACKS_ALL, False, RECORDS_PER_PRODUCER, 0)
    await asyncio.gather(
        clients.member("m1", GROUP, GROUP_POLLS), clients.member("m2", GROUP, GROUP_POLLS // 2)
    )


@pytest.mark.parametrize(("seed", "faults"), [(1, NetworkFaults()), (2, FAULTY), (3, FAULTY)])
def test_a_real_client_history_passes_and_a_corrupted_copy_does_not(
    seed: int, faults: NetworkFaults
) -> None:
    history = record_run(seed, faults, every_ack_mode)
    acked = history.of_type(ProduceAcked)
    scanned = [f for f in history.of_type(FetchObserved) if f.client == "consumer"]
    read = {(fetch.partition, r.offset) for fetch in scanned for r in fetch.records}
    assert len(acked) == len(read) == 3 * RECORDS_PER_PRODUCER
    assert check_all(history, liveness_bound_ms=LIVENESS_BOUND_MS) == []
    # the capture: every record read carries its batch's leader epoch, every ack its agent
    # and log start, and every acks=1 ack its epoch (read back from the agent that acked)
    records = [r for fetch in history.of_type(FetchObserved) for r in fetch.records]
    assert {r.leader_epoch for r in records} == {1}
    assert all(a.agent == AGENT and a.log_start_offset == 0 for a in acked)
    idempotent = [(f.partition, r) for f in scanned for r in f.records if r.producer_id >= 0]
    written = {(p, r.producer_id, r.producer_epoch, r.sequence) for p, r in idempotent}
    assert len(written) == len(idempotent) == RECORDS_PER_PRODUCER  # sequences per partition
    epochs = index_history(history).ack_epochs
    leader_acks = [a for a in acked if a.client == "producer-acks-1"]
    assert leader_acks and all(epochs.get(a.op) == 1 for a in leader_acks)

    corrupted = History()
    for event in history:
        if (
            isinstance(event, FetchObserved)
            and event.records
            and not corrupted.of_type(FetchObserved)
        ):
            first = dataclasses.replace(event.records[0], value=b"bit flip")
            event = dataclasses.replace(event, records=(first, *event.records[1:]))
        corrupted.append(event)
    flagged = {violation.checker for violation in check_all(corrupted)}
    assert {"one_value", "no_phantoms", "acked_durable"} & flagged
    assert flagged <= {"one_value", "no_phantoms", "acked_durable", "acked_leader", "final_reads"}


@pytest.mark.parametrize(("seed", "faults"), [(4, NetworkFaults()), (5, FAULTY)])
def test_a_real_consumer_group_history_passes(seed: int, faults: NetworkFaults) -> None:
    history = record_run(seed, faults, group)
    generations = history.of_type(GroupGeneration)
    assert len({event.member for event in generations}) == 2
    assert history.of_type(OffsetCommitted)
    readers = {f.client for f in history.of_type(FetchObserved) if f.records}
    assert readers and readers <= {"m1", "m2"}  # the members' reads are recorded
    assert check_all(history) == []
