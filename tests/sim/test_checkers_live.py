"""The checkers on a real history: aiokafka clients over the simulated network, real agent.

A producer per ack mode (acks=1, acks=all, idempotent), a consumer, and a
consumer group of two members run against the real agent composition on the
simulator's ports, each client recording what it observed into a `History`
the way a workload would. The recorded history must pass every checker (no
false alarms on real client behaviour), and a copy in which one read value
is altered must not.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition as ClientPartition

from sim.checkers import check_all
from sim.clock import LoopClock
from sim.disk import SimDisk
from sim.history import (
    ACKS_ALL,
    ACKS_LEADER,
    PHASE_LIVENESS,
    CommittedOffsetRead,
    FetchObserved,
    GroupGeneration,
    History,
    ObservedRecord,
    OffsetCommitted,
    PhaseStarted,
    ProduceAcked,
    ProduceAttempt,
    ProduceFailed,
    ScanCompleted,
    TopicCreated,
    TopicPartition,
)
from sim.loop import SimLoop, run_simulation
from sim.metadata import SimMetadataStore
from sim.network import NetworkFaults, SimNetwork, on_host
from sim.object_store import SimObjectStore
from sim.pins import pinned_aiokafka
from sim.rng import SeededRng
from streamhouse.config import Settings
from streamhouse.engine.broker import assemble_broker

AGENT = "agent-1"
CLIENT = "client-1"
PORT = 9092
TOPIC = "checked"
GROUP = "checked-group"
GROUP_POLLS = 30
PARTITIONS = 2
RECORDS_PER_PRODUCER = 30
POLLS_MAX = 200
POLL_TIMEOUT_MS = 500
START_ATTEMPTS_MAX = 20
REQUEST_TIMEOUT_MS = 30_000
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
        broker = await on_host(AGENT, assemble_broker(settings, clock, rng.fork("agent"), *stores))
        try:
            await on_host(AGENT, broker.log.create_topic(TOPIC, PARTITIONS))
            clients = Clients(history, lambda: loop.time_ns() // 1000)
            history.append(TopicCreated(clients.now_us(), "admin", TOPIC, PARTITIONS))
            with pinned_aiokafka(clock, rng.fork("client")):
                await on_host(CLIENT, workload(clients))
        finally:
            await on_host(AGENT, broker.close())

    run_simulation(main, network)
    return history


@dataclasses.dataclass
class Clients:
    history: History
    now_us: Callable[[], int]

    async def every_ack_mode(self) -> None:
        self.history.append(PhaseStarted(self.now_us(), PHASE_LIVENESS))
        for acks, idempotent in ((1, False), ("all", False), ("all", True)):
            await self.produce(acks, idempotent)
        await self.consume()

    async def group(self) -> None:
        await self.produce("all", False)
        await asyncio.gather(self.member("m1", GROUP_POLLS), self.member("m2", GROUP_POLLS // 2))

    async def member(self, name: str, polls: int) -> None:
        """A group member that commits after each poll and reads its commits back."""
        consumer = await started(
            lambda: AIOKafkaConsumer(
                bootstrap_servers=f"{AGENT}:{PORT}",
                group_id=GROUP,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                request_timeout_ms=REQUEST_TIMEOUT_MS,
            )
        )
        # aiokafka keeps the generation and member id on its (private) coordinator.
        coordinator = consumer._coordinator
        history, now_us = self.history, self.now_us

        class Assigned(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked: object) -> None:
                pass

            async def on_partitions_assigned(self, assigned: set[ClientPartition]) -> None:
                partitions = tuple(
                    TopicPartition(tp.topic, tp.partition) for tp in sorted(assigned)
                )
                history.append(
                    GroupGeneration(
                        now_us(),
                        name,
                        GROUP,
                        coordinator.generation,
                        coordinator.member_id,
                        partitions,
                    )
                )

        consumer.subscribe([TOPIC], listener=Assigned())
        try:
            for _ in range(polls):
                polled = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
                for tp, messages in sorted(polled.items()):
                    offset = messages[-1].offset + 1
                    generation, member = coordinator.generation, coordinator.member_id
                    requested_us = now_us()
                    try:
                        await consumer.commit({tp: offset})
                    except KafkaError:
                        continue  # rebalancing: the next owner commits
                    history.append(
                        OffsetCommitted(
                            now_us(),
                            requested_us,
                            name,
                            GROUP,
                            generation,
                            member,
                            TOPIC,
                            tp.partition,
                            offset,
                        )
                    )
                    requested_us = now_us()
                    committed = await consumer.committed(tp)
                    history.append(
                        CommittedOffsetRead(
                            now_us(),
                            requested_us,
                            name,
                            GROUP,
                            TOPIC,
                            tp.partition,
                            -1 if committed is None else committed,
                        )
                    )
        finally:
            await consumer.stop()

    async def produce(self, acks: int | str, idempotent: bool) -> None:
        name = f"producer-acks-{acks}" + ("-idempotent" if idempotent else "")
        producer = await started(
            lambda: AIOKafkaProducer(
                bootstrap_servers=f"{AGENT}:{PORT}",
                acks=acks,
                enable_idempotence=idempotent,
                request_timeout_ms=REQUEST_TIMEOUT_MS,
            )
        )
        sent: list[asyncio.Future[Any]] = []
        try:
            for index in range(RECORDS_PER_PRODUCER):
                op = self.history.new_op()
                attempt = ProduceAttempt(
                    self.now_us(),
                    name,
                    op,
                    TOPIC,
                    index % PARTITIONS,
                    None,
                    b"op-%d" % op,  # unique, so a read names its writer
                    ACKS_LEADER if acks == 1 else ACKS_ALL,
                    idempotent=idempotent,
                )
                self.history.append(attempt)
                future = await producer.send(
                    TOPIC, attempt.value, partition=attempt.partition, timestamp_ms=index
                )
                future.add_done_callback(lambda done, op=op: self.answered(name, op, done))
                sent.append(future)
            await asyncio.gather(*sent, return_exceptions=True)
        finally:
            await producer.stop()

    def answered(self, client: str, op: int, done: asyncio.Future[Any]) -> None:
        error = done.exception()
        if error is None:
            self.history.append(ProduceAcked(self.now_us(), client, op, done.result().offset))
        else:
            self.history.append(ProduceFailed(self.now_us(), client, op, -1, definite=False))

    async def consume(self) -> None:
        consumer = await started(
            lambda: AIOKafkaConsumer(
                bootstrap_servers=f"{AGENT}:{PORT}",
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=REQUEST_TIMEOUT_MS,
            )
        )
        try:
            partitions = [ClientPartition(TOPIC, p) for p in range(PARTITIONS)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            # The consumer prefetches: a response may be older than the poll that returns
            # it, so the only safe request time is the assignment.
            assigned_us = self.now_us()
            starts = await consumer.beginning_offsets(partitions)
            positions = {tp: starts[tp] for tp in partitions}
            for _ in range(POLLS_MAX):
                polled = await consumer.getmany(*partitions, timeout_ms=POLL_TIMEOUT_MS)
                for tp in partitions:
                    messages = polled.get(tp, [])
                    if messages:
                        after = await consumer.position(tp)
                        self.history.append(
                            FetchObserved(
                                self.now_us(),
                                assigned_us,
                                "consumer",
                                TOPIC,
                                tp.partition,
                                positions[tp],
                                tuple(ObservedRecord(m.offset, m.key, m.value) for m in messages),
                                next_offset=after,
                                high_watermark=consumer.highwater(tp),
                                last_stable_offset=consumer.last_stable_offset(tp),
                            )
                        )
                        positions[tp] = after
                ends = await consumer.end_offsets(partitions)
                if all(positions[tp] >= ends[tp] for tp in partitions):
                    break
            for tp in partitions:
                scan = ScanCompleted(
                    self.now_us(),
                    assigned_us,
                    "consumer",
                    TOPIC,
                    tp.partition,
                    starts[tp],
                    positions[tp],
                )
                self.history.append(scan)
        finally:
            await consumer.stop()


async def started(make: Callable[[], Any]) -> Any:
    """A started client; bootstrapping over a faulty network may need a few tries."""
    for attempt in range(START_ATTEMPTS_MAX):
        client = make()
        try:
            await client.start()
            return client
        except KafkaError:
            await client.stop()
            if attempt == START_ATTEMPTS_MAX - 1:
                raise
            await asyncio.sleep(POLL_TIMEOUT_MS / 1000)
    raise AssertionError("unreachable")


@pytest.mark.parametrize(("seed", "faults"), [(1, NetworkFaults()), (2, FAULTY), (3, FAULTY)])
def test_a_real_client_history_passes_and_a_corrupted_copy_does_not(
    seed: int, faults: NetworkFaults
) -> None:
    history = record_run(seed, faults, Clients.every_ack_mode)
    acked = history.of_type(ProduceAcked)
    read = [r for fetch in history.of_type(FetchObserved) for r in fetch.records]
    assert len(acked) == len(read) == 3 * RECORDS_PER_PRODUCER
    assert check_all(history, liveness_bound_ms=LIVENESS_BOUND_MS) == []

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
    history = record_run(seed, faults, Clients.group)
    generations = history.of_type(GroupGeneration)
    assert len({event.member for event in generations}) == 2
    assert history.of_type(OffsetCommitted)
    assert check_all(history) == []
