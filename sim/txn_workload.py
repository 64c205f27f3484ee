"""Transactional clients: real aiokafka transactional producers and a consume-transform-produce
client, recording what they did into the run's History (`sim.history` conventions).

`TxnClients` works beside `sim.workload.Clients` (same History, clock, capture):
`producer` runs transactions of a few records over the partitions of the workload's topic,
each committed or aborted as the seed decides; `transformer` reads the topic read_committed
in a consumer group and, per poll, writes one record per record read to the output topic in
a transaction that also commits the group's offsets (`send_offsets_to_transaction`).

Every record is a `ProduceAttempt` with `txn` (the workload's transaction number, unique in
the history) and `idempotent` (a transactional producer is idempotent); every transaction
ends with one `TxnEnded`: True when EndTxn(commit) was acknowledged, False when it was
aborted or its commit was never asked for (the coordinator aborts it when the producer is
fenced or its timeout passes), None when the commit was asked for and its answer never came
(the client failed, was fenced or timed out while committing). After any error the producer
is closed and a new one is started with the same transactional id: its InitProducerId fences
the old one and ends whatever it left open before anything else is written.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
)
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from aiokafka.structs import TopicPartition as ClientPartition  # type: ignore[import-untyped]

from sim.history import ACKS_ALL, TxnEnded, TxnProducerStarted, TxnRead
from sim.options import TxnOptions
from sim.rng import SeededRng
from sim.workload import (
    HEARTBEAT_INTERVAL_MS,
    MAX_POLL_INTERVAL_MS,
    METADATA_MAX_AGE_MS,
    POLL_TIMEOUT_MS,
    REQUEST_TIMEOUT_MS,
    SESSION_TIMEOUT_MS,
    Clients,
    _Acked,
    started,
    stop_consumer,
)

T = TypeVar("T")

# A client call that outlives this is given up on (aiokafka retries EndTxn and InitProducerId
# on coordinator errors forever).
CALL_TIMEOUT_S = 20.0
RESTARTS_MAX = 8  # a client gives up after this many producers in a row fail to start
# The second transaction of each "...-1" producer is a zombie's (`TxnClients._zombie`); its
# successor instance is the client "<name>~successor" (on the same host: `Clients.record`).
ZOMBIE_TRANSACTION = 2
ZOMBIE_PRODUCER = "-1"
ZOMBIE_SUCCESSOR = "~successor"


class _Broken(Exception):
    """The producer cannot go on: close it and start another with the same id."""


@dataclass
class TxnClients:
    clients: Clients
    options: TxnOptions
    _txns: int = 0

    async def _begin(self, producer: Any) -> int:
        """Begin a transaction; its number (unique in the history)."""
        _not_fatal(producer)
        try:
            await _within(producer.begin_transaction())
        except (KafkaError, TimeoutError) as error:
            raise _Broken() from error
        self._txns += 1
        return self._txns

    async def _producer(self, name: str, transactional_id: str) -> tuple[Any, _Acked]:
        """A started transactional producer (its InitProducerId answered) and its recorder;
        one that does not start in time is stopped (TimeoutError)."""
        clients = self.clients
        producer = AIOKafkaProducer(
            bootstrap_servers=clients.bootstrap,
            client_id=name,
            acks="all",
            enable_idempotence=True,
            transactional_id=transactional_id,
            transaction_timeout_ms=self.options.timeout_ms,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
        )
        acked = _Acked(clients._watch(producer.client, name), None)
        requested_us = clients.now_us()
        try:
            await _within(producer.start())
        except (KafkaError, TimeoutError):
            await _closed(producer)
            raise
        began = TxnProducerStarted(clients.now_us(), requested_us, name, transactional_id)
        clients.record(name, began)
        return producer, acked

    async def producer(
        self, name: str, rng: SeededRng, count: int | None = None, aborts: bool = True
    ) -> int:
        """Run `count` transactions (`txns_per_producer`), each aborted with `abort_rate` if
        `aborts`; returns how many committed. Gives up after RESTARTS_MAX producers in a row
        failed to start."""
        options = self.options
        committed, failed_starts, index, done = 0, 0, 0, 0
        producer: Any = None
        acked: _Acked | None = None
        try:
            while done < (options.txns_per_producer if count is None else count):
                if producer is None:
                    try:
                        producer, acked = await self._producer(name, f"{name}-tid")
                        failed_starts = 0
                    except (KafkaError, TimeoutError):
                        failed_starts += 1
                        if failed_starts >= RESTARTS_MAX:
                            return committed
                        await asyncio.sleep(POLL_TIMEOUT_MS / 1000)
                        continue
                assert acked is not None
                size = rng.randint(1, options.records_per_txn_max)
                partitions = [rng.randint(0, self.clients.partitions - 1) for _ in range(size)]
                commit = not (aborts and rng.chance(options.abort_rate))
                done += 1
                try:
                    if done == ZOMBIE_TRANSACTION and name.endswith(ZOMBIE_PRODUCER):
                        producer, acked = await self._zombie(
                            producer, acked, partitions, index, rng.chance(0.5)
                        )
                    else:
                        ended = await self._transaction(producer, acked, partitions, index, commit)
                        committed += int(ended)
                except _Broken:
                    await _closed(producer)
                    producer = None
                index += size
                await asyncio.sleep(options.txn_interval_ms / 1000)
        finally:
            if producer is not None:
                await _closed(producer)
        return committed

    async def _transaction(
        self, producer: Any, acked: _Acked, partitions: list[int], index: int, commit: bool
    ) -> bool:
        """One transaction of a record per entry of `partitions`; True if it committed."""
        txn = await self._begin(producer)
        sent = await self._send_all(producer, acked, partitions, index, txn)
        all_sent = len(sent) == len(partitions)
        return await self._end(producer, acked.watcher.name, txn, sent, commit, all_sent)

    async def _send_all(
        self, producer: Any, acked: _Acked, partitions: list[int], index: int, txn: int
    ) -> list[asyncio.Future[Any]]:
        """A record of `txn` to each of `partitions`: the answers of those handed over
        (none once the transaction failed: aiokafka refuses to send outside one)."""
        sent: list[asyncio.Future[Any]] = []
        for offset, partition in enumerate(partitions):
            if not producer._txn_manager.is_in_transaction():
                break
            future = await self.clients._send(
                producer, acked, ACKS_ALL, True, index + offset, partition=partition, txn=txn
            )
            sent += [] if future is None else [future]
        return sent

    async def _zombie(
        self, zombie: Any, acked: _Acked, partitions: list[int], index: int, write_late: bool
    ) -> tuple[Any, _Acked]:
        """A transaction whose producer becomes a zombie midway: once its records are
        answered, a successor instance of the same transactional id starts (its
        InitProducerId aborts the open transaction and fences the zombie); then the zombie
        (if `write_late`) writes once more into a partition of its transaction and asks to
        commit, which must not commit. Returns the successor, the producer from then on
        (the zombie's own one if the successor could not start: its transaction aborted)."""
        clients, name = self.clients, acked.watcher.name
        txn = await self._begin(zombie)
        sent = await self._send_all(zombie, acked, partitions, index, txn)
        if sent:
            await asyncio.wait(sent, timeout=CALL_TIMEOUT_S)
        try:
            successor = await self._producer(f"{name}{ZOMBIE_SUCCESSOR}", f"{name}-tid")
        except (KafkaError, TimeoutError):
            await self._end(zombie, name, txn, sent, False, True)
            return zombie, acked
        if write_late and zombie._txn_manager.is_in_transaction():
            late = await clients._send(
                zombie,
                acked,
                ACKS_ALL,
                True,
                index + len(partitions),
                partition=partitions[0],
                txn=txn,
            )
            sent += [] if late is None else [late]
        with contextlib.suppress(_Broken):
            await self._end(zombie, name, txn, sent, True, True, insist=True)
        await _closed(zombie)
        return successor

    async def _end(
        self,
        producer: Any,
        name: str,
        txn: int,
        sent: list[asyncio.Future[Any]],
        commit: bool,
        all_sent: bool,
        insist: bool = False,
    ) -> bool:
        """Wait for the records' answers, then commit or abort `txn` and record its end
        (`insist`: ask to commit even if a record failed)."""
        clients = self.clients
        requested_us = clients.now_us()
        outcome: bool | None = False
        try:
            if sent:  # waited for, never cancelled: their answers are recorded as they come
                _, pending = await asyncio.wait(sent, timeout=CALL_TIMEOUT_S)
                if pending:
                    raise TimeoutError("records unanswered")
            failed = not all_sent or any(f.exception() is not None for f in sent)
            if failed and not insist:
                commit = False  # aiokafka would refuse the commit: abort instead
            requested_us = clients.now_us()
            _not_fatal(producer)  # aiokafka can then neither commit nor abort
            if commit:
                outcome = None  # asked for: unknown until answered
                await _within(producer.commit_transaction())
                outcome = True
            else:
                await _within(producer.abort_transaction())
        except (KafkaError, TimeoutError, _Broken) as error:
            self._ended(name, txn, requested_us, outcome)
            raise _Broken() from error
        self._ended(name, txn, requested_us, outcome)
        return outcome is True

    def _ended(self, name: str, txn: int, requested_us: int, committed: bool | None) -> None:
        clients = self.clients
        clients.record(name, TxnEnded(clients.now_us(), requested_us, name, txn, committed))

    # --- consume-transform-produce ---------------------------------------------------------

    async def transformer(self, name: str, polls: int, rng: SeededRng) -> None:
        """Read the topic read_committed in the group; per poll, one transaction writes a
        record per record read to the output topic and commits the offsets read up to."""
        clients, options = self.clients, self.options
        consumer = await started(
            lambda: AIOKafkaConsumer(
                bootstrap_servers=clients.bootstrap,
                client_id=name,
                group_id=options.group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                request_timeout_ms=REQUEST_TIMEOUT_MS,
                metadata_max_age_ms=METADATA_MAX_AGE_MS,
                session_timeout_ms=SESSION_TIMEOUT_MS,
                heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
                max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
            )
        )
        clients._watch(consumer._client, name)
        rebalances = _Rebalances()
        consumer.subscribe([clients.topic], listener=rebalances)
        producer: Any = None
        acked: _Acked | None = None
        index, positioned = 0, True
        try:
            for _ in range(polls):
                if producer is None:
                    try:
                        producer, acked = await self._producer(name, f"{name}-tid")
                    except (KafkaError, TimeoutError):
                        await asyncio.sleep(POLL_TIMEOUT_MS / 1000)
                        continue
                    positioned = False  # the new producer's init ended what the old one left
                if not positioned:  # back to what the last committed transaction read up to
                    positioned = await _rewind(consumer)
                    if not positioned:
                        continue
                assert acked is not None
                polled = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
                if not polled:
                    continue
                commit = not rng.chance(options.abort_rate)
                assigned = rebalances.count
                try:
                    positioned = await self._transform(producer, acked, polled, index, commit)
                except _Broken:
                    await _closed(producer)
                    producer = None
                # a rebalance meanwhile moved the positions back to the offsets committed
                # then, without this transaction's: move them to the committed offsets now
                positioned = positioned and rebalances.count == assigned
                index += sum(len(messages) for messages in polled.values())
        finally:
            if producer is not None:
                await _closed(producer)
            await stop_consumer(consumer)

    async def _transform(
        self, producer: Any, acked: _Acked, polled: dict[Any, list[Any]], index: int, commit: bool
    ) -> bool:
        """One transaction writing what `polled` read, with the offsets; True if committed."""
        clients, options = self.clients, self.options
        txn = await self._begin(producer)
        sent: list[asyncio.Future[Any]] = []
        offsets: dict[Any, int] = {}
        count = 0
        for tp, messages in sorted(polled.items()):
            for _message in messages:
                future = await clients._send(
                    producer,
                    acked,
                    ACKS_ALL,
                    True,
                    index + count,
                    topic=options.output_topic,
                    partition=tp.partition,
                    txn=txn,
                )
                count += 1
                if future is not None:
                    sent.append(future)
            offsets[tp] = messages[-1].offset + 1
            read = TxnRead(
                clients.now_us(),
                acked.watcher.name,
                txn,
                options.group,
                tp.topic,
                tp.partition,
                messages[0].offset,
                offsets[tp],
            )
            clients.record(acked.watcher.name, read)
        all_sent = len(sent) == count
        try:
            await _within(producer.send_offsets_to_transaction(offsets, options.group))
        except (KafkaError, TimeoutError):
            all_sent = False  # the offsets are not in it: abort
        return await self._end(producer, acked.watcher.name, txn, sent, commit, all_sent)


class _Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    """Counts the assignments the consumer received (each resets its positions to the
    group's committed offsets)."""

    def __init__(self) -> None:
        self.count = 0

    async def on_partitions_revoked(self, revoked: object) -> None:
        pass

    async def on_partitions_assigned(self, assigned: object) -> None:
        self.count += 1


async def _rewind(consumer: Any) -> bool:
    """Move every assigned partition back to the group's committed offset (or the start if
    none): after an abort, what the aborted transaction read is read again. False if the
    committed offsets could not be read (nothing moved)."""
    committed: dict[Any, int | None] = {}
    for tp in sorted(consumer.assignment()):
        try:
            committed[tp] = await _within(consumer.committed(tp))
        except (KafkaError, TimeoutError):
            return False
    for tp, offset in committed.items():
        if offset is None:
            await consumer.seek_to_beginning(ClientPartition(tp.topic, tp.partition))
        else:
            consumer.seek(tp, offset)
    return True


def _not_fatal(producer: Any) -> None:
    """Raise _Broken if the producer hit a fatal error (fenced, its sender failed)."""
    if producer._txn_manager.is_fatal_error():
        raise _Broken()


async def _within(call: Awaitable[T]) -> T:
    return await asyncio.wait_for(call, CALL_TIMEOUT_S)


async def _closed(producer: Any) -> None:
    """Stop a producer, giving up after a while (a broken one may never flush)."""
    with contextlib.suppress(KafkaError, TimeoutError):
        await asyncio.wait_for(producer.stop(), CALL_TIMEOUT_S)
