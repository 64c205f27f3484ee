"""Consumer groups in virtual time: the real agent on sim ports, two aiokafka group members.

Kafka's defaults hold (a 3 s initial rebalance delay, 10 s sessions): virtual time makes
them free. Two members split a 4-partition topic and commit; one is cut off from the
agent and expires by session timeout; the other takes its partitions over and resumes
from the committed offsets, no sooner than the session allows and soon after. Every
record is read exactly once (each poll is committed) and no partition has two owners in
one generation.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]

from sim.clock import LoopClock
from sim.disk import SimDisk
from sim.loop import SimLoop, run_simulation
from sim.metadata import SimMetadataStore
from sim.network import NetworkFaults, SimNetwork, on_host
from sim.object_store import SimObjectStore
from sim.pins import pinned_aiokafka
from sim.rng import SeededRng
from streamhouse.agent import assemble_agent
from streamhouse.config import Settings

AGENT = "agent-1"
BOOTSTRAP = f"{AGENT}:9092"
TOPIC = "grouped"
GROUP = "sim-group"
PARTITIONS = 4
RECORDS = 40
SESSION_MS = 10_000
POLL_MS = 500
POLLS_MAX = 400
BATCH_RECORDS = 2
HEARTBEAT_MS = 1000
TAKEOVER_MS_MAX = 5000  # after b's session ends: a's next heartbeat, its rejoin and sync


@dataclass
class Member:
    """What one consumer saw: its assignments (with generations) and the offsets it read."""

    host: str
    owned: set[int] = field(default_factory=set)
    read: list[tuple[int, int]] = field(default_factory=list)
    ownership: list[tuple[int, frozenset[int]]] = field(default_factory=list)
    consumer: AIOKafkaConsumer | None = None


async def _produce() -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    await producer.start()
    try:
        for index in range(RECORDS):
            await producer.send_and_wait(TOPIC, b"%d" % index, partition=index % PARTITIONS)
    finally:
        await producer.stop()


async def _poll(member: Member) -> None:
    """Poll once; note a new assignment with its generation; commit what was read."""
    consumer = member.consumer
    assert consumer is not None
    batches = await consumer.getmany(timeout_ms=POLL_MS)
    for tp in sorted(batches, key=lambda tp: tp.partition):
        member.read += [(tp.partition, m.offset) for m in batches[tp]]
    owned = {tp.partition for tp in consumer.assignment()}
    if owned != member.owned:
        member.owned = owned
        generation = consumer._coordinator.generation
        member.ownership.append((generation, frozenset(owned)))
    if batches:
        await consumer.commit()


async def _start(member: Member) -> None:
    member.consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=BOOTSTRAP,
        group_id=GROUP,
        client_id=member.host,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=HEARTBEAT_MS,
        max_poll_records=BATCH_RECORDS,  # small polls: b is cut off halfway through
    )
    await member.consumer.start()


async def _until(members: list[Member], done: object) -> None:
    for _ in range(POLLS_MAX):
        if callable(done) and done():
            return
        await asyncio.gather(*(on_host(m.host, _poll(m)) for m in members))
    raise AssertionError(f"not reached: {[m.owned for m in members]}")


async def _scenario(loop: SimLoop, rng: SeededRng) -> tuple[Member, Member, int]:
    """Run the story; returns both members and how long after the cut a took over."""
    clock = LoopClock(loop)
    settings = Settings(kafka_host=AGENT, kafka_port=9092, agent_id=AGENT)
    agent = await on_host(
        AGENT,
        assemble_agent(
            settings,
            clock,
            rng.fork("agent"),
            SimDisk(rng.fork("disk")),
            SimObjectStore(clock, rng.fork("objects")),
            SimMetadataStore(rng.fork("metadata")),
        ),
    )
    a, b = Member("client-a"), Member("client-b")
    try:
        await on_host(AGENT, agent.admin.create_topic(TOPIC, PARTITIONS))
        with pinned_aiokafka(clock, rng.fork("clients")):
            await on_host("client-p", _produce())
            await asyncio.gather(on_host(a.host, _start(a)), on_host(b.host, _start(b)))
            both = [a, b]
            await _until(
                both, lambda: a.owned and b.owned and len(a.read) + len(b.read) >= RECORDS // 4
            )
            assert loop.network is not None
            loop.network.partition(b.host, AGENT)  # b is gone: no leave, no heartbeats
            cut_ms = clock.monotonic_ms()
            await _until([a], lambda: a.owned == set(range(PARTITIONS)))
            took_over_ms = clock.monotonic_ms() - cut_ms
            await _until([a], lambda: _all_read(a, b))
            assert a.consumer is not None
            await on_host(a.host, a.consumer.stop())  # b stays cut off: the simulation ends it
    finally:
        await on_host(AGENT, agent.close())
    return a, b, took_over_ms


def _all_read(a: Member, b: Member) -> bool:
    read = {(p, o) for p, o in a.read + b.read}
    return len(read) >= RECORDS


def test_a_lost_member_expires_and_its_partitions_move_on() -> None:
    rng = SeededRng(5)
    network = SimNetwork(rng.fork("network"), NetworkFaults())

    async def main(loop: SimLoop) -> tuple[Member, Member, int]:
        return await _scenario(loop, rng)

    a, b, took_over_ms = run_simulation(main, network)
    # b's last heartbeat came at most one interval before the cut; a notices at its next
    assert SESSION_MS - HEARTBEAT_MS <= took_over_ms <= SESSION_MS + TAKEOVER_MS_MAX
    owners: dict[tuple[int, int], str] = {}
    for member in (a, b):
        for generation, owned in member.ownership:
            for partition in owned:
                assert owners.setdefault((generation, partition), member.host) == member.host
    assert a.ownership[-1][1] == frozenset(range(PARTITIONS))
    assert a.ownership[-1][0] > a.ownership[0][0]  # a later generation took b's partitions
    read = a.read + b.read
    assert sorted(read) == sorted(set(read)) and len(read) == RECORDS  # b committed all it read
