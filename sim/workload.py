"""Recording clients: real aiokafka producers, consumers and group members over the simulated
network, each writing what it observed into one History (see `sim.history` conventions).

`Clients` is bound to a History, a virtual-time source and the bootstrap
servers; every method is one client's life: `produce` (acks=1 or all,
idempotent or not, each record unique so a read names its writer; each
acks=1 record read back from the agent that acked it), `member` (a consumer
group member that commits after every poll and reads its commits back),
`scan` (a fresh consumer reading every partition from the log start to the
high watermark, both listed with their leader epoch: the final reads). What
a client receives from the brokers -- every fetch answer, with batch epochs --
is recorded below it by `sim.capture` (active for the run); what it does
(attempts, acks, commits, generations) by these methods. A client whose
process the simulator killed stops recording (`killed`).
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

from sim.capture import Watcher, agents_of, watch
from sim.history import (
    ACKS_ALL,
    ACKS_LEADER,
    CommittedOffsetRead,
    Event,
    FetchFailed,
    GroupGeneration,
    History,
    OffsetCommitAsked,
    OffsetCommitted,
    ProduceAcked,
    ProduceAttempt,
    ProduceFailed,
    ScanCompleted,
    TopicPartition,
)
from sim.listing import EARLIEST, LATEST, Listed, list_offset
from sim.readback import ReadBack

POLL_TIMEOUT_MS = 500
SCAN_POLLS_MAX = 400
START_ATTEMPTS_MAX = 20
LIST_ATTEMPTS_MAX = 20
REQUEST_TIMEOUT_MS = 10_000
METADATA_MAX_AGE_MS = 5_000
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_INTERVAL_MS = 1_000
MAX_POLL_INTERVAL_MS = 30_000
UNRECOGNIZED_PARTITION = "Unrecognized partition"  # aiokafka's assertion message
UNKNOWN_TOPIC_OR_PARTITION = 3  # Kafka's error code
CORRUPT_MESSAGE = 2  # Kafka's error code: offsets whose object is damaged


@dataclass
class Clients:
    history: History
    now_us: Callable[[], int]
    bootstrap: str
    topic: str
    partitions: int
    keys: int = 0  # records keyed by one of this many keys (a compacted topic); 0: no key
    killed: set[str] = field(default_factory=set)

    def record(self, client: str, event: Any) -> None:
        """Append `event` of `client` unless its host was killed (a client "host~role" runs
        on the host "host")."""
        if client.partition("~")[0] not in self.killed:
            self.history.append(event)

    def _watch(self, client: Any, name: str) -> Watcher:
        """Record what `client` receives (`sim.capture`) as `name`'s observations."""

        def record(event: Event) -> None:
            self.record(name, event)

        return watch(client, Watcher(name, self.now_us, record, agents_of(client)))

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
        wait for every answer, and read each acks=1 record back from the agent that acked
        it (`sim.readback`: the read tells the ack's leader epoch)."""
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
        readback = ReadBack(producer.client, self.topic)
        reading = asyncio.ensure_future(readback.run())
        acked = _Acked(self._watch(producer.client, name), readback if acks == 1 else None)
        try:
            sent: list[asyncio.Future[Any]] = []
            for index in range(first_index, first_index + count):
                future = await self._send(producer, acked, acks, idempotent, index)
                sent += [] if future is None else [future]
                await asyncio.sleep(interval_ms / 1000)
            await asyncio.gather(*sent, return_exceptions=True)
            readback.finish()
            await reading
        finally:
            reading.cancel()
            await producer.stop()

    async def _send(
        self,
        producer: Any,
        acked: _Acked,
        acks: int,
        idempotent: bool,
        index: int,
        *,
        topic: str | None = None,
        partition: int | None = None,
        txn: int | None = None,
    ) -> asyncio.Future[Any] | None:
        """Hand one unique record to `producer` (by default to `index`'s partition of the
        workload's topic; `txn`: the workload's transaction it belongs to); its answer is
        recorded when it comes."""
        name = acked.watcher.name
        op = self.history.new_op()
        attempt = ProduceAttempt(
            self.now_us(),
            name,
            op,
            topic or self.topic,
            index % self.partitions if partition is None else partition,
            None if self.keys == 0 or txn is not None else b"key-%d" % (op % self.keys),
            b"%s-op-%d" % (name.encode(), op),  # unique: a read names its writer
            ACKS_LEADER if acks == 1 else ACKS_ALL,
            idempotent=idempotent,
            txn=txn,
        )
        self.record(name, attempt)
        try:
            future: asyncio.Future[Any] = await producer.send(
                attempt.topic,
                attempt.value,
                key=attempt.key,
                partition=attempt.partition,
                timestamp_ms=index,
            )
        except KafkaError as error:  # never handed to the broker: certainly not written
            self.record(name, ProduceFailed(self.now_us(), name, op, _code(error), True))
            return None
        except AssertionError as error:
            # aiokafka asserts that the partition is in its metadata: a rebuilt store may
            # lack it until the operator creates it again; never handed to the broker either
            if UNRECOGNIZED_PARTITION not in str(error):
                raise
            failed = ProduceFailed(self.now_us(), name, op, UNKNOWN_TOPIC_OR_PARTITION, True)
            self.record(name, failed)
            return None
        future.add_done_callback(lambda done: self._answered(acked, op, done))
        return future

    def _answered(self, acked: _Acked, op: int, done: asyncio.Future[Any]) -> None:
        if done.cancelled():
            return
        client = acked.watcher.name
        error = done.exception()
        if error is not None:
            self.record(client, ProduceFailed(self.now_us(), client, op, _code(error), False))
            return
        answer = done.result()
        node_id = acked.watcher.acked_by(answer.topic, answer.partition, answer.offset)
        event = ProduceAcked(
            self.now_us(),
            client,
            op,
            answer.offset,
            agent=None if node_id is None else acked.watcher.agent_of(node_id),
            log_start_offset=None if answer.log_start_offset < 0 else answer.log_start_offset,
        )
        self.record(client, event)
        if acked.readback is not None and node_id is not None:
            acked.readback.acked(node_id, answer.partition, answer.offset)

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
        watcher = self._watch(consumer._client, name)  # its fetches, during the faults too
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
                    offset = messages[-1].offset + 1
                    await self._commit(consumer, watcher, name, group, tp, offset)
        finally:
            await consumer.stop()

    async def _commit(
        self,
        consumer: Any,
        watcher: Watcher,
        name: str,
        group: str,
        tp: ClientPartition,
        offset: int,
    ) -> None:
        requested_us = self.now_us()
        self.record(
            name, OffsetCommitAsked(requested_us, name, group, tp.topic, tp.partition, offset)
        )
        try:
            await consumer.commit({tp: offset})
        except KafkaError:
            return  # rebalancing or unreachable: the next owner commits
        accepted_as = watcher.commit_accepted_as(group, tp.topic, tp.partition)
        assert accepted_as is not None, f"{name} committed {tp} with no accepted attempt"
        generation, member = accepted_as  # a retry carries the generation of its time
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

    # --- read_committed readers ----------------------------------------------------------

    async def reader(self, name: str, polls: int, read_committed: bool = True) -> None:
        """A consumer outside any group reading every partition from the log start, `polls`
        polls long (read_committed by default); the capture records what it is answered."""
        isolation = "read_committed" if read_committed else "read_uncommitted"
        consumer = await self._consumer(
            name, group_id=None, auto_offset_reset="earliest", isolation_level=isolation
        )
        self._watch(consumer._client, name)
        try:
            consumer.assign([ClientPartition(self.topic, p) for p in range(self.partitions)])
            for _ in range(polls):
                await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
        finally:
            await stop_consumer(consumer)

    # --- the final scan --------------------------------------------------------------------

    def _unreadable(self, client: str, tp: ClientPartition, offset: int) -> bool:
        """Whether `client`'s last failed fetch of `tp` was at `offset`, CORRUPT_MESSAGE."""
        failed = _last_failed(self.history, client, tp)
        return (
            failed is not None
            and failed.fetch_offset == offset
            and failed.error_code == CORRUPT_MESSAGE
        )

    async def scan(
        self, name: str, topics: tuple[str, ...] = (), read_committed: bool = False
    ) -> bool:
        """Read every partition (of the workload's topic, or of `topics`) from its log start
        to its high watermark (as of the start, each with the leader epoch it was answered
        in); True when every partition was read to the end (read_committed: once every
        transaction below the high watermark ended). What it reads is recorded by the
        capture (`sim.capture`)."""
        consumer = await self._consumer(
            name,
            group_id=None,
            auto_offset_reset="earliest",
            isolation_level="read_committed" if read_committed else "read_uncommitted",
        )
        self._watch(consumer._client, name)
        try:
            partitions = [
                ClientPartition(topic, p)
                for topic in topics or (self.topic,)
                for p in range(self.partitions)
            ]
            consumer.assign(partitions)
            requested_us = self.now_us()
            starts = {tp: await _listed(consumer, tp, EARLIEST) for tp in partitions}
            ends = {tp: await _listed(consumer, tp, LATEST) for tp in partitions}
            positions = {tp: starts[tp].offset for tp in partitions}  # reset there: earliest
            for _ in range(SCAN_POLLS_MAX):
                if all(positions[tp] >= ends[tp].offset for tp in partitions):
                    break
                polled = await consumer.getmany(*partitions, timeout_ms=POLL_TIMEOUT_MS)
                for tp in partitions:
                    # read_committed: a poll may move past aborted data and markers only
                    if polled.get(tp) or read_committed:
                        positions[tp] = await consumer.position(tp)
                    elif positions[tp] < ends[tp].offset and self._unreadable(
                        name, tp, positions[tp]
                    ):
                        # answered CORRUPT_MESSAGE there (its object is damaged): as an
                        # application would, skip the record (aiokafka only logs it)
                        positions[tp] += 1
                        consumer.seek(tp, positions[tp])
            for tp in partitions:
                scan = ScanCompleted(
                    self.now_us(),
                    requested_us,
                    name,
                    tp.topic,
                    tp.partition,
                    starts[tp].offset,
                    min(positions[tp], ends[tp].offset),
                    read_committed=read_committed,
                    leader_epoch=_same_epoch(starts[tp], ends[tp]),
                )
                self.record(name, scan)
            return all(positions[tp] >= ends[tp].offset for tp in partitions)
        finally:
            await consumer.stop()


def _last_failed(history: History, client: str, tp: ClientPartition) -> FetchFailed | None:
    for event in reversed(history.of_type(FetchFailed)):
        if event.client == client and (event.topic, event.partition) == (tp.topic, tp.partition):
            return event
    return None


def _same_epoch(start: Listed, end: Listed) -> int | None:
    """The leader epoch both listings were answered in, if it is one."""
    return start.leader_epoch if start.leader_epoch == end.leader_epoch else None


async def _listed(consumer: Any, tp: ClientPartition, timestamp: int) -> Listed:
    """ListOffsets v4 (`sim.listing`) with retries while metadata settles."""
    for attempt in range(LIST_ATTEMPTS_MAX):
        try:
            return await list_offset(consumer._client, tp, timestamp)
        except KafkaError:
            if attempt == LIST_ATTEMPTS_MAX - 1:
                raise
            await asyncio.sleep(POLL_TIMEOUT_MS / 1000)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class _Acked:
    """Where a producer's answers go: its capture watcher, and its read-backs (acks=1)."""

    watcher: Watcher
    readback: ReadBack | None


async def stop_consumer(consumer: Any) -> None:
    """`consumer.stop()`, finished if aiokafka leaves it half done: its fetcher's close
    cancels the fetch requests in flight and awaits each, so the first one's CancelledError
    escapes stop() before the client is closed, whose tasks then run on to the simulation's
    end (and are cancelled there in an order set by addresses). A real cancellation of the
    calling task is passed on. (The group members and the final scan predate this and
    still call stop() alone: changing them would change the default profile's runs.)"""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise
        await consumer._client.close()


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
