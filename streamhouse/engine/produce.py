"""Produce for every door: a batch appended under the topic's rules, then acknowledged by mode.

The Kafka door hands over record batches its clients built; REST and gRPC hand over records,
which are placed in partitions as Kafka's clients place them (an explicit partition, else
murmur2 of the key, else spread round-robin), built into one batch per partition and appended
the same way. Either way one rule holds: `check_produce` (names, limits, compaction and schema
rules) then the log's append, and the answer waits for the ack mode's future (`leader`: the WAL
entry is fsynced; `durable`: the object holding it is committed; `none`: nothing).

REST and gRPC produce to every partition of the cluster: a partition's batch for a partition
another agent leads goes to that agent as a Kafka Produce (engine/forwarding.py), its records
answered from the leader's answer. With `none` the leader is asked for acks=1: Kafka does not
answer acks=0, and the door's client is told each record's offset (or refusal) all the same.
The Kafka door's `append` never forwards: Kafka clients find the leader themselves.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamhouse.engine.admin import AdminService
from streamhouse.engine.cluster import AgentAddress
from streamhouse.engine.forwarding import Forwarding, peer_error
from streamhouse.engine.log_store import AppendResult, LogStore
from streamhouse.engine.waiting import sleep_or_until
from streamhouse.errors import ErrorCode, RequestTimedOut, StreamHouseError, UnknownTopicOrPartition
from streamhouse.kafka.partitioner import partition_of_key
from streamhouse.kafka.records import SimpleRecord, build_batch
from streamhouse.kafka.sentinels import NO_OFFSET
from streamhouse.names import TopicPartition
from streamhouse.ports.clock import Clock
from streamhouse.ports.peers import PeerRequests

PRODUCE_TIMEOUT_MS = 30_000  # Kafka's request.timeout.ms default: the longest an ack is awaited
RECORDS_PER_CALL_MAX = 10_000  # records in one produce call (REST/gRPC bodies are bounded too)
ACKS_ALL = -1
ACKS_LEADER = 1


class Ack(enum.Enum):
    """When a produce call is answered: Kafka's acks=0, 1 and all."""

    NONE = "none"  # at once, before the WAL write
    LEADER = "leader"  # once the WAL entry holding the records is fsynced
    DURABLE = "durable"  # once the object holding them is in the bucket and committed

    @classmethod
    def parse(cls, text: str) -> Ack:
        """The mode named `text`; INVALID_REQUIRED_ACKS naming the choices otherwise."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            choices = "|".join(mode.value for mode in cls)
            raise StreamHouseError(
                f"ack must be one of {choices}, not {text!r}", ErrorCode.INVALID_REQUIRED_ACKS
            ) from None


# The Kafka acks a partition's leader is asked for, by mode (`none`: acks=1, as Kafka answers
# no acks=0 Produce)
KAFKA_ACKS = {Ack.NONE: ACKS_LEADER, Ack.LEADER: ACKS_LEADER, Ack.DURABLE: ACKS_ALL}


@dataclass(frozen=True)
class Forwarded:
    """A partition's batch appended and acknowledged by its leader, another agent."""

    base_offset: int


@dataclass(frozen=True)
class NewRecord:
    """A record as a door hands it over."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    partition: int | None = None  # None: by key (murmur2), or spread when there is no key
    timestamp_ms: int | None = None  # None: the agent's clock now


@dataclass(frozen=True)
class RecordProduced:
    """Where one record landed, or why it did not."""

    partition: int
    offset: int  # NO_OFFSET when refused
    timestamp_ms: int
    error: StreamHouseError | None = None


class ProduceService:
    """The produce rule every door calls."""

    def __init__(
        self, clock: Clock, log: LogStore, admin: AdminService, forwarding: Forwarding
    ) -> None:
        self._clock = clock
        self._log = log
        self._admin = admin
        self._forwarding = forwarding
        self._spread = itertools.count()  # keyless records go round the partitions

    async def append(
        self, tp: TopicPartition, batch: bytes, ack: Ack
    ) -> AppendResult | StreamHouseError:
        """Check the batch against the topic's rules and append it; the refusal otherwise."""
        try:
            await self._admin.check_produce(tp, batch)
            return await self._log.append(tp, batch, durable=ack is Ack.DURABLE)
        except StreamHouseError as error:
            return error

    def acknowledged(self, outcome: AppendResult, ack: Ack) -> StreamHouseError | None:
        """Once `ack_wait(outcome, ack)` is done: None if the append is acknowledged, else
        the error it failed with. An acks=1 answer is checked against the lease deadline."""
        wait = ack_wait(outcome, ack)
        if wait is None:
            return None
        assert wait.done(), outcome
        try:
            wait.result()  # raises what the engine failed the ack with
            if ack is Ack.LEADER:
                self._log.confirm_leader_ack(outcome)
        except StreamHouseError as error:
            return error
        return None

    async def produce(
        self,
        topic: str,
        records: Sequence[NewRecord],
        ack: Ack = Ack.DURABLE,
        timeout_ms: int = PRODUCE_TIMEOUT_MS,
    ) -> list[RecordProduced]:
        """Place, append and acknowledge `records`; one answer per record, in their order.
        UnknownTopicOrPartition when the topic does not exist; refusals of a partition's
        batch (and ack timeouts) are answered per record."""
        if len(records) > RECORDS_PER_CALL_MAX:
            raise StreamHouseError(
                f"{len(records)} records in one call; at most {RECORDS_PER_CALL_MAX}",
                ErrorCode.RECORD_LIST_TOO_LARGE,
            )
        count = (await self._admin.topic(topic)).partition_count
        now_ms = self._clock.now_ms()
        started_ms = self._clock.monotonic_ms()
        placed: dict[int, list[int]] = {}
        for index, record in enumerate(records):
            placed.setdefault(self._partition(topic, record, count), []).append(index)
        stamps = [_stamp(record, now_ms) for record in records]
        outcomes = await asyncio.gather(
            *(
                self._place(
                    TopicPartition(topic, partition),
                    _batch([records[i] for i in indexes], [stamps[i] for i in indexes]),
                    ack,
                    timeout_ms,
                )
                for partition, indexes in placed.items()
            )
        )
        answers: dict[int, RecordProduced] = {}
        appended: list[tuple[int, list[int], AppendResult]] = []
        for (partition, indexes), outcome in zip(placed.items(), outcomes, strict=True):
            if isinstance(outcome, StreamHouseError):
                answers |= {
                    i: RecordProduced(partition, NO_OFFSET, stamps[i], outcome) for i in indexes
                }
            elif isinstance(outcome, Forwarded):
                answers |= {
                    i: RecordProduced(partition, outcome.base_offset + position, stamps[i])
                    for position, i in enumerate(indexes)
                }
            else:
                appended.append((partition, indexes, outcome))
        left_ms = timeout_ms - (self._clock.monotonic_ms() - started_ms)
        await self._await_acks([outcome for _, _, outcome in appended], ack, left_ms)
        for partition, indexes, outcome in appended:
            error = self._settled(outcome, ack, timeout_ms)
            for position, i in enumerate(indexes):
                offset = NO_OFFSET if error else outcome.base_offset + position
                answers[i] = RecordProduced(partition, offset, stamps[i], error)
        assert len(answers) == len(records)
        return [answers[i] for i in range(len(records))]

    async def _place(
        self, tp: TopicPartition, batch: bytes, ack: Ack, timeout_ms: int
    ) -> AppendResult | Forwarded | StreamHouseError:
        """Append a partition's batch here, or have its leader append it; the refusal
        otherwise."""

        async def here() -> AppendResult | Forwarded:
            outcome = await self.append(tp, batch, ack)
            if isinstance(outcome, StreamHouseError):
                raise outcome
            return outcome

        async def there(peers: PeerRequests, leader: AgentAddress) -> AppendResult | Forwarded:
            answer = await peers.produce(
                leader.host, leader.port, tp, batch, KAFKA_ACKS[ack], timeout_ms
            )
            if answer.error_code:
                raise peer_error(tp, leader, answer.error_code, answer.error_message)
            return Forwarded(answer.base_offset)

        try:
            return await self._forwarding.serve(tp, here, there)
        except StreamHouseError as error:
            return error

    def _partition(self, topic: str, record: NewRecord, count: int) -> int:
        if record.partition is not None:
            if not 0 <= record.partition < count:
                raise UnknownTopicOrPartition(
                    f"topic {topic!r} has partitions 0-{count - 1}, not {record.partition}"
                )
            return record.partition
        if record.key is not None:
            return partition_of_key(record.key, count)
        return next(self._spread) % count

    async def _await_acks(self, outcomes: list[AppendResult], ack: Ack, timeout_ms: int) -> None:
        waits = [w for o in outcomes if (w := ack_wait(o, ack)) is not None and not w.done()]
        if waits:
            every_ack = asyncio.gather(*waits, return_exceptions=True)
            await sleep_or_until(self._clock, max(timeout_ms, 1), every_ack)

    def _settled(self, outcome: AppendResult, ack: Ack, timeout_ms: int) -> StreamHouseError | None:
        wait = ack_wait(outcome, ack)
        if wait is not None and not wait.done():
            return RequestTimedOut(f"not acknowledged ({ack.value}) within {timeout_ms} ms")
        return self.acknowledged(outcome, ack)


def ack_wait(outcome: AppendResult, ack: Ack) -> asyncio.Future[Any] | None:
    """The future an append's answer waits on in this mode; None: answered at once."""
    if ack is Ack.NONE:
        return None
    wait = outcome.durable if ack is Ack.DURABLE else outcome.synced
    assert wait is not None, outcome
    return wait


def _stamp(record: NewRecord, now_ms: int) -> int:
    return now_ms if record.timestamp_ms is None else record.timestamp_ms


def _batch(records: Sequence[NewRecord], stamps: Sequence[int]) -> bytes:
    """One uncompressed, non-idempotent batch of `records` (a producer with acks and no id)."""
    return build_batch(
        [SimpleRecord(r.key, r.value, r.headers, t) for r, t in zip(records, stamps, strict=True)]
    )
