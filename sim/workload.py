"""Recording clients: real aiokafka producers, consumers and group members over the simulated
network, each writing what it observed into one History (see `sim.history` conventions).

`Clients` is bound to a History, a virtual-time source and the bootstrap
servers; every method is one client's life: `produce` (acks=1 or all,
idempotent or not, each record unique so a read names its writer), `member`
(a consumer group member that commits after every poll and reads its
commits back), `scan` (a fresh consumer reading every partition from the log
start to the high watermark: the final reads). A client whose process the
simulator killed stops recording (`killed`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
)
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from aiokafka.structs import TopicPartition as ClientPartition  # type: ignore[import-untyped]

from sim.history import (
    ACKS_ALL,
    ACKS_LEADER,
    CommittedOffsetRead,
    FetchObserved,
    GroupGeneration,
    History,
    ObservedRecord,
    OffsetCommitted,
    ProduceAcked,
    ProduceAttempt,
    ProduceFailed,
    ScanCompleted,
    TopicPartition,
)

POLL_TIMEOUT_MS = 500
SCAN_POLLS_MAX = 400
START_ATTEMPTS_MAX = 20
REQUEST_TIMEOUT_MS = 10_000
METADATA_MAX_AGE_MS = 5_000
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_INTERVAL_MS = 1_000
MAX_POLL_INTERVAL_MS = 30_000


@dataclass
class Clients:
    history: History
    now_us: Callable[[], int]
    bootstrap: str
    topic: str
    partitions: int
    killed: set[str] = field(default_factory=set)

    def record(self, client: str, event: Any) -> None:
        if client not in self.killed:
            self.history.append(event)

    # --- producers -------------------------------------------------------------------------

    async def produce(
        self,
        name: str,
        acks: int,
        idempotent: bool,
        count: int,
        interval_ms: int,
        first_index: int = 0,
    ) -> None:
        """Send `count` unique records, one every `interval_ms`, round robin over partitions;
        wait for every answer."""
        producer = await started(
            lambda: AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                client_id=name,
                acks="all" if acks == ACKS_ALL else acks,
                enable_idempotence=idempotent,
                request_timeout_ms=REQUEST_TIMEOUT_MS,
                metadata_max_age_ms=METADATA_MAX_AGE_MS,
            )
        )
        sent: list[asyncio.Future[Any]] = []
        try:
            for index in range(first_index, first_index + count):
                op = self.history.new_op()
                attempt = ProduceAttempt(
                    self.now_us(),
                    name,
                    op,
                    self.topic,
                    index % self.partitions,
                    None,
                    b"%s-op-%d" % (name.encode(), op),  # unique: a read names its writer
                    ACKS_LEADER if acks == 1 else ACKS_ALL,
                    idempotent=idempotent,
                )
                self.record(name, attempt)
                try:
                    future = await producer.send(
                        self.topic, attempt.value, partition=attempt.partition, timestamp_ms=index
                    )
                except KafkaError as error:  # never handed to the broker: certainly not written
                    self.record(name, ProduceFailed(self.now_us(), name, op, _code(error), True))
                else:
                    future.add_done_callback(lambda done, op=op: self._answered(name, op, done))
                    sent.append(future)
                await asyncio.sleep(interval_ms / 1000)
            await asyncio.gather(*sent, return_exceptions=True)
        finally:
            await producer.stop()

    def _answered(self, client: str, op: int, done: asyncio.Future[Any]) -> None:
        if done.cancelled():
            return
        error = done.exception()
        if error is None:
            self.record(client, ProduceAcked(self.now_us(), client, op, done.result().offset))
        else:
            self.record(client, ProduceFailed(self.now_us(), client, op, _code(error), False))

    async def _consumer(self, name: str, **options: Any) -> Any:
        """A started consumer that commits only when told to."""
        return await started(
            lambda: AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id=name,
                enable_auto_commit=False,
                request_timeout_ms=REQUEST_TIMEOUT_MS,
                metadata_max_age_ms=METADATA_MAX_AGE_MS,
                **options,
            )
        )

    # --- group members ---------------------------------------------------------------------

    async def member(self, name: str, group: str, polls: int) -> None:
        """A group member that commits after each poll and reads its commits back."""
        consumer = await self._consumer(
            name,
            group_id=group,
            auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
        )
        coordinator = consumer._coordinator  # aiokafka keeps generation and member id here
        clients = self

        class Assigned(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: object) -> None:
                pass

            async def on_partitions_assigned(self, assigned: set[ClientPartition]) -> None:
                partitions = tuple(
                    TopicPartition(tp.topic, tp.partition) for tp in sorted(assigned)
                )
                event = GroupGeneration(
                    clients.now_us(),
                    name,
                    group,
                    coordinator.generation,
                    coordinator.member_id,
                    partitions,
                )
                clients.record(name, event)

        consumer.subscribe([self.topic], listener=Assigned())
        try:
            for _ in range(polls):
                polled = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
                for tp, messages in sorted(polled.items()):
                    await self._commit(consumer, name, group, tp, messages[-1].offset + 1)
        finally:
            await consumer.stop()

    async def _commit(
        self, consumer: Any, name: str, group: str, tp: ClientPartition, offset: int
    ) -> None:
        coordinator = consumer._coordinator
        generation, member = coordinator.generation, coordinator.member_id
        requested_us = self.now_us()
        try:
            await consumer.commit({tp: offset})
        except KafkaError:
            return  # rebalancing or unreachable: the next owner commits
        event = OffsetCommitted(
            self.now_us(),
            requested_us,
            name,
            group,
            generation,
            member,
            tp.topic,
            tp.partition,
            offset,
        )
        self.record(name, event)
        requested_us = self.now_us()
        try:
            committed = await consumer.committed(tp)
        except KafkaError:
            return
        read = CommittedOffsetRead(
            self.now_us(),
            requested_us,
            name,
            group,
            tp.topic,
            tp.partition,
            -1 if committed is None else committed,
        )
        self.record(name, read)

    # --- the final scan --------------------------------------------------------------------

    async def scan(self, name: str) -> bool:
        """Read every partition from its log start to its high watermark (as of the start);
        True when every partition was read to the end."""
        consumer = await self._consumer(name, group_id=None)
        try:
            partitions = [ClientPartition(self.topic, p) for p in range(self.partitions)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            # The consumer prefetches: a response may be older than the poll that returns
            # it, so the only safe request time is the assignment.
            assigned_us = self.now_us()
            starts = await consumer.beginning_offsets(partitions)
            ends = await consumer.end_offsets(partitions)
            positions = {tp: starts[tp] for tp in partitions}
            for _ in range(SCAN_POLLS_MAX):
                if all(positions[tp] >= ends[tp] for tp in partitions):
                    break
                polled = await consumer.getmany(*partitions, timeout_ms=POLL_TIMEOUT_MS)
                for tp in partitions:
                    messages = polled.get(tp, [])
                    if messages:
                        after = await consumer.position(tp)
                        fetch = FetchObserved(
                            self.now_us(),
                            assigned_us,
                            name,
                            self.topic,
                            tp.partition,
                            positions[tp],
                            tuple(ObservedRecord(m.offset, m.key, m.value) for m in messages),
                            next_offset=after,
                            high_watermark=consumer.highwater(tp),
                            last_stable_offset=consumer.last_stable_offset(tp),
                        )
                        self.record(name, fetch)
                        positions[tp] = after
            complete = all(positions[tp] >= ends[tp] for tp in partitions)
            for tp in partitions:
                scan = ScanCompleted(
                    self.now_us(),
                    assigned_us,
                    name,
                    self.topic,
                    tp.partition,
                    starts[tp],
                    min(positions[tp], ends[tp]),
                )
                self.record(name, scan)
            return complete
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


def _code(error: BaseException) -> int:
    code = getattr(error, "errno", -1)
    return code if isinstance(code, int) else -1
