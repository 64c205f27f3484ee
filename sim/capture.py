"""What aiokafka clients receive, below what they hand to the application: the fetch and
produce answers as the broker sent them, recorded for the checkers.

aiokafka decodes every Fetch response and then drops what the checkers need:
the leader epoch of each record batch (bytes 12..15 of its RecordBatch v2
header, stamped by the leader that appended it), the producer id, epoch and
sequence of each batch, control batches, the log start offset, which agent
answered, and the errors it retries on its own. While `captured_aiokafka()`
is active, `AIOKafkaClient.send` is wrapped: for a client the workload
watches (`watch`), every Fetch answer becomes, per partition, a
`FetchObserved` (or `FetchFailed`) of `sim.history`, stamped with the time
the request was handed to the client and the time the answer came back, and
every Produce answer is remembered as the agent and log start of the records
it acknowledged (`Watcher.acked_by`), and every OffsetCommit the coordinator
accepted as the generation and member id that attempt carried
(`Watcher.commit_accepted_as`): aiokafka rebuilds a retried commit with the
generation it holds at the retry, not the one the application committed in,
which it holds from its JoinGroup answer on (each one a `GenerationJoined`).
The wrapper awaits the original call
and only reads its answer, so the clients behave, and are timed, exactly as
without it. The installed package is not modified.
"""

from __future__ import annotations

import struct
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiokafka.client import AIOKafkaClient  # type: ignore[import-untyped]
from aiokafka.protocol.commit import OffsetCommitRequest  # type: ignore[import-untyped]
from aiokafka.protocol.fetch import FetchRequest  # type: ignore[import-untyped]
from aiokafka.protocol.group import JoinGroupRequest  # type: ignore[import-untyped]
from aiokafka.protocol.produce import ProduceRequest  # type: ignore[import-untyped]
from aiokafka.record.default_records import DefaultRecordBatch  # type: ignore[import-untyped]

from sim.history import (
    CONTROL_ABORT,
    CONTROL_COMMIT,
    Event,
    FetchFailed,
    FetchObserved,
    GenerationJoined,
    ObservedRecord,
)

LOG_OVERHEAD = 12  # base offset (8) + batch length (4): what the length does not count
EPOCH_AT = 12  # partitionLeaderEpoch, int32
MAGIC_AT = 16
CONTROL_TYPES = {0: CONTROL_ABORT, 1: CONTROL_COMMIT}
READ_UNCOMMITTED = 0
READ_COMMITTED = 1
NO_VALUE = -1

_WATCHED: weakref.WeakKeyDictionary[Any, Watcher] = weakref.WeakKeyDictionary()


@dataclass
class Watcher:
    """Turns one client's answers into history events (`record` decides what is kept)."""

    name: str
    now_us: Callable[[], int]
    record: Callable[[Event], None]
    agent_of: Callable[[int], str | None]
    _acks: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    _commits: dict[tuple[str, str, int], tuple[int, str]] = field(default_factory=dict)

    def answered(self, node_id: int, request: Any, response: Any, requested_us: int) -> None:
        if isinstance(request, FetchRequest):
            self._fetched(node_id, request, response, requested_us)
        elif isinstance(request, ProduceRequest) and response is not None:
            for topic, partitions in response.topics:
                for partition, error_code, offset, *_ in partitions:
                    if error_code == 0:
                        self._acks[(topic, partition)] = (offset, node_id)
        elif isinstance(request, OffsetCommitRequest) and response is not None:
            self._commit_answered(request, response)
        elif isinstance(request, JoinGroupRequest) and _succeeded(response):
            joined = (request._group, response.generation_id, response.member_id)
            self.record(GenerationJoined(self.now_us(), self.name, *joined))

    def acked_by(self, topic: str, partition: int, offset: int) -> int | None:
        """The node id whose Produce answer acknowledged `offset` (the latest answer for the
        partition: aiokafka has one produce request per partition in flight)."""
        base_offset, node_id = self._acks.get((topic, partition), (offset + 1, -1))
        return node_id if base_offset <= offset else None

    def commit_accepted_as(self, group: str, topic: str, partition: int) -> tuple[int, str] | None:
        """(generation, member id) of the latest accepted OffsetCommit attempt for the
        partition (aiokafka has one commit of a group in flight at a time)."""
        return self._commits.get((group, topic, partition))

    def _commit_answered(self, request: Any, response: Any) -> None:
        sent_as = (request._consumer_group_generation_id, request._consumer_id)
        for topic, partitions in response.topics:
            for partition, error_code in partitions:
                if error_code == 0:
                    self._commits[(request._consumer_group, topic, partition)] = sent_as

    def _fetched(self, node_id: int, request: Any, response: Any, requested_us: int) -> None:
        read_committed = request._isolation_level == READ_COMMITTED
        offsets = {
            (topic, partition): offset
            for topic, partitions in request.topics
            for partition, offset, _ in partitions
        }
        version = response.API_VERSION
        for topic, partitions in response.topics:
            for partition, error_code, high_watermark, *rest in partitions:
                fetch_offset = offsets[(topic, partition)]
                now_us = self.now_us()
                agent = self.agent_of(node_id)
                if error_code != 0:
                    where = (self.name, topic, partition, fetch_offset, error_code, agent)
                    self.record(FetchFailed(now_us, requested_us, *where))
                    continue
                # v4: lso, aborted, records; v5+: lso, log start, aborted, (v11+: preferred
                # read replica,) records
                aborted = (rest[2 if version >= 5 else 1] or []) if read_committed else None
                records, next_offset = observed_records(rest[-1], fetch_offset, aborted)
                fetch = FetchObserved(
                    now_us,
                    requested_us,
                    self.name,
                    topic,
                    partition,
                    fetch_offset,
                    records,
                    read_committed=read_committed,
                    next_offset=next_offset,
                    high_watermark=high_watermark,
                    last_stable_offset=_known(rest[0]) if version >= 4 else None,
                    log_start_offset=_known(rest[1]) if version >= 5 else None,
                    agent=agent,
                )
                self.record(fetch)


def _known(value: int) -> int | None:
    return None if value == NO_VALUE else value


def observed_records(
    data: bytes | None, fetch_offset: int, aborted: list[tuple[int, int]] | None = None
) -> tuple[tuple[ObservedRecord, ...], int]:
    """The records of a Fetch answer's record set at or after `fetch_offset` (control records
    too), each with its batch's leader epoch and producer, and the position after them.

    `aborted` is the answer's aborted-transaction list (producer id, first offset) of a
    read_committed fetch: the data batches it names are left out as the client leaves them
    out (`_Aborted`, aiokafka's rule), so the records are those a read_committed consumer
    delivers, and the control records."""
    observed: list[ObservedRecord] = []
    position = fetch_offset
    skipping = None if aborted is None else _Aborted(aborted)
    for epoch, batch in _batches(data or b""):
        position = max(position, batch.next_offset)
        records = list(batch)  # a batch iterates once
        if skipping is not None and skipping.skips(batch, records):
            continue
        for record in records:
            if record.offset >= fetch_offset:
                observed.append(_observed(batch, epoch, record))
    return tuple(observed), position


class _Aborted:
    """Which batches a read_committed Kafka client drops, batch by batch in log order: a
    transactional batch of a producer whose aborted transaction (from the answer's list)
    began at or below it, until that producer's ABORT marker (aiokafka's PartitionRecords;
    the Java client's rule)."""

    def __init__(self, aborted: list[tuple[int, int]]) -> None:
        self._pending = sorted(aborted, key=lambda entry: entry[1])
        self._producers: set[int] = set()

    def skips(self, batch: Any, records: list[Any]) -> bool:
        while self._pending and self._pending[0][1] <= batch.base_offset:
            self._producers.add(self._pending.pop(0)[0])
        if batch.is_control_batch:
            if records and _control_type(records[0]) == CONTROL_ABORT:
                self._producers.discard(batch.producer_id)
            return False
        return bool(batch.is_transactional) and batch.producer_id in self._producers


def _control_type(record: Any) -> str:
    """The marker kind of a control record (from its key: version, then type)."""
    assert record.key is not None
    return CONTROL_TYPES[struct.unpack_from(">h", bytes(record.key), 2)[0]]


def _batches(data: bytes) -> Iterator[tuple[int, Any]]:
    """The complete v2 record batches of a record set with their partitionLeaderEpoch; a
    batch cut short by the fetch size limit at the end is left out, as clients do."""
    view = memoryview(data)
    position = 0
    while position + LOG_OVERHEAD <= len(data):
        (length,) = struct.unpack_from(">i", data, position + 8)
        end = position + LOG_OVERHEAD + length
        if end > len(data):
            return
        assert data[position + MAGIC_AT] == 2, "only RecordBatch v2 is captured"
        (epoch,) = struct.unpack_from(">i", data, position + EPOCH_AT)
        yield epoch, DefaultRecordBatch(view[position:end])
        position = end


def _observed(batch: Any, epoch: int, record: Any) -> ObservedRecord:
    key = None if record.key is None else bytes(record.key)
    value = None if record.value is None else bytes(record.value)
    control = None
    if batch.is_control_batch:
        control = _control_type(record)
        key = value = None
    sequence = NO_VALUE
    if batch.base_sequence >= 0:
        sequence = batch.base_sequence + record.offset - batch.base_offset
    return ObservedRecord(
        record.offset,
        key,
        value,
        epoch,
        control,
        batch.producer_id,
        batch.producer_epoch,
        sequence,
    )


def watch(client: Any, watcher: Watcher) -> Watcher:
    """Report `client`'s answers to `watcher` while the capture is active."""
    _WATCHED[client] = watcher
    return watcher


def agents_of(client: Any) -> Callable[[int], str | None]:
    """A node id of `client`'s cluster metadata -> the host name of that agent."""

    def agent_of(node_id: int) -> str | None:
        broker = client.cluster.broker_metadata(node_id)
        return None if broker is None else str(broker.host)

    return agent_of


def _succeeded(response: Any) -> bool:
    """Whether a single-error answer (JoinGroup's) is there and took the request."""
    return response is not None and response.error_code == 0


@contextmanager
def captured_aiokafka() -> Iterator[None]:
    """Within the block, watched aiokafka clients report what they receive."""
    original = AIOKafkaClient.send

    async def send(self: Any, node_id: int, request: Any, **options: Any) -> Any:
        watcher = _WATCHED.get(self)
        if watcher is None:
            return await original(self, node_id, request, **options)
        requested_us = watcher.now_us()
        response = await original(self, node_id, request, **options)
        watcher.answered(node_id, request, response, requested_us)
        return response

    AIOKafkaClient.send = send
    try:
        yield
    finally:
        AIOKafkaClient.send = original
