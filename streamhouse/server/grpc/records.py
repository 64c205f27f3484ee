"""The gRPC Records service: produce, consume and commit offsets in the caller's org, through
the engine's ProduceService, FetchService and group coordinator (the rules every door shares).

Every bound is named below with its answer on breach. Deadlines are honoured: a produce waits
for its acknowledgement at most until the call's deadline, and gRPC cancels a call whose
deadline passed (a Consume stream ends there too).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence

from grpc import StatusCode

from streamhouse.engine.admin import AdminService
from streamhouse.engine.consume import ConsumedRecord, FetchService
from streamhouse.engine.consumer_instances import (
    ConsumerInstanceNotFound,
    ConsumerInstances,
    InstanceConfig,
    OffsetReset,
)
from streamhouse.engine.produce import PRODUCE_TIMEOUT_MS, Ack, NewRecord, ProduceService
from streamhouse.errors import ErrorCode, UnknownTopicOrPartition
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import OffsetToCommit
from streamhouse.ports.peers import GroupCalls
from streamhouse.server.grpc import streamhouse_pb2 as pb
from streamhouse.server.grpc.caller import Caller
from streamhouse.server.grpc.methods import Context
from streamhouse.server.grpc.status import CallRefused, code_message, error_message
from streamhouse.tenancy.acls import AclOperation, ResourceType

Op = AclOperation
# Records of one Produce request: the engine's RECORDS_PER_CALL_MAX (more: RECORD_LIST_TOO_LARGE,
# answered RESOURCE_EXHAUSTED)
# Records, and requests, of one ProduceStream; more: RESOURCE_EXHAUSTED (open another stream)
PRODUCE_STREAM_RECORDS_MAX = 100_000
PRODUCE_STREAM_REQUESTS_MAX = 10_000
# Record bytes in one Consume response message: the default, and the most a request may ask
# (a message stays under gRPC clients' default 4 MiB receive limit; a single record larger
# than the asked size still comes, alone in its message)
CONSUME_MESSAGE_BYTES_DEFAULT = 1024 * 1024
CONSUME_MESSAGE_BYTES_MAX = 3 * 1024 * 1024
# How long one wait for new records lasts before the stream looks at its idle bound again
CONSUME_WAIT_MS = 500
RECORD_OVERHEAD_BYTES = 32  # a consumed record's fields besides key, value and headers
# Offsets of one Commit; more: RESOURCE_EXHAUSTED
COMMIT_OFFSETS_MAX = 10_000
STANDALONE_GENERATION = -1  # a commit outside any group generation (manually assigned consumers)

ACKS = {
    pb.ACK_UNSPECIFIED: Ack.DURABLE,
    pb.ACK_NONE: Ack.NONE,
    pb.ACK_LEADER: Ack.LEADER,
    pb.ACK_DURABLE: Ack.DURABLE,
}


class RecordsServicer:
    """streamhouse.v1.Records over the engine's produce, fetch and group rules."""

    def __init__(
        self,
        admin: AdminService,
        produce: ProduceService,
        fetch: FetchService,
        groups: GroupCalls,
        consumers: ConsumerInstances,
    ) -> None:
        self._admin = admin
        self._produce = produce
        self._fetch = fetch
        self._groups = groups
        self._consumers = consumers

    # --- produce ---------------------------------------------------------------------------

    async def produce(
        self, request: pb.ProduceRequest, caller: Caller, context: Context
    ) -> pb.ProduceResponse:
        return await self._produced(request, caller, context)

    async def produce_stream(
        self, requests: AsyncIterator[pb.ProduceRequest], caller: Caller, context: Context
    ) -> pb.ProduceStreamResponse:
        summary = pb.ProduceStreamResponse()
        records = 0
        async for request in requests:
            records += len(request.records)
            if records > PRODUCE_STREAM_RECORDS_MAX or (
                len(summary.responses) >= PRODUCE_STREAM_REQUESTS_MAX
            ):
                raise CallRefused(
                    StatusCode.RESOURCE_EXHAUSTED,
                    f"one stream takes at most {PRODUCE_STREAM_RECORDS_MAX} records in at most "
                    f"{PRODUCE_STREAM_REQUESTS_MAX} requests; the first "
                    f"{summary.records_produced} records were produced (their results are "
                    "not returned): open a new stream for the rest",
                )
            answer = await self._produced(request, caller, context)
            refused = sum(1 for result in answer.results if result.HasField("error"))
            summary.records_refused += refused
            summary.records_produced += len(answer.results) - refused
            summary.responses.append(answer)
        return summary

    async def _produced(
        self, request: pb.ProduceRequest, caller: Caller, context: Context
    ) -> pb.ProduceResponse:
        internal = caller.internal(request.topic)
        caller.require(Op.WRITE, ResourceType.TOPIC, request.topic)
        ack = ACKS.get(request.ack)
        if ack is None:
            raise CallRefused(StatusCode.INVALID_ARGUMENT, f"unknown ack mode {request.ack}")
        answer = pb.ProduceResponse(topic=request.topic)
        if not request.records:
            return answer
        produced = await self._produce.produce(
            internal, [_new_record(r) for r in request.records], ack, _timeout_ms(context)
        )
        assert len(produced) == len(request.records), "one result per record"
        for result in produced:
            item = answer.results.add(
                partition=result.partition, offset=result.offset, timestamp_ms=result.timestamp_ms
            )
            if result.error is not None:
                item.error.CopyFrom(error_message(result.error))
        return answer

    # --- consume ---------------------------------------------------------------------------

    async def consume(
        self, request: pb.ConsumeRequest, caller: Caller, context: Context
    ) -> AsyncIterator[pb.ConsumeResponse]:
        if request.group:
            async for message in self._consume_in_group(request, caller):
                yield message
            return
        internal = caller.internal(request.topic)
        caller.require(Op.READ, ResourceType.TOPIC, request.topic)
        max_bytes = _message_bytes(request.max_bytes)
        if request.max_idle_ms < 0:
            raise CallRefused(StatusCode.INVALID_ARGUMENT, "max_idle_ms must not be negative")
        read_committed = not request.read_uncommitted
        partitions = await self._partitions(internal, request.partitions)
        positions = {tp: await self._start(tp, request, read_committed) for tp in partitions}
        idle = _Idle(request.max_idle_ms)
        while True:
            records = await self._read(positions, max_bytes, read_committed)
            if records:
                for message in _messages(request.topic, records, max_bytes):
                    yield message
                idle.restart()
                continue
            wait_ms = idle.wait_ms()
            if wait_ms is None:
                return
            await self._fetch.wait_for_data(positions, wait_ms, read_committed=read_committed)

    async def _consume_in_group(
        self, request: pb.ConsumeRequest, caller: Caller
    ) -> AsyncIterator[pb.ConsumeResponse]:
        """A stream of one member of `request.group` (a consumer instance of the engine's,
        subscribed to the topic), which leaves the group when the stream ends."""
        group = caller.internal(request.group, "group")
        caller.require(Op.READ, ResourceType.GROUP, request.group)
        internal = caller.internal(request.topic)
        caller.require(Op.READ, ResourceType.TOPIC, request.topic)
        max_bytes = _message_bytes(request.max_bytes)
        if request.max_idle_ms < 0:
            raise CallRefused(StatusCode.INVALID_ARGUMENT, "max_idle_ms must not be negative")
        if request.partitions or request.WhichOneof("start") == "offset":
            raise CallRefused(
                StatusCode.INVALID_ARGUMENT,
                "with a group, the group assigns the partitions and each starts at its committed "
                "offset: name no partitions and no offset (a position says where a partition "
                "without a committed offset starts)",
            )
        config = InstanceConfig(
            auto_offset_reset=_offset_reset(request),
            auto_commit_enable=request.auto_commit,
            read_committed=not request.read_uncommitted,
        )
        await self._admin.topic(internal)  # an unknown topic is NOT_FOUND, not an empty stream
        instance = self._consumers.create(group, None, config)
        try:
            await instance.subscribe([internal])
            yield pb.ConsumeResponse(member=instance.name)
            idle = _Idle(request.max_idle_ms)
            while (wait_ms := idle.wait_ms()) is not None:
                records = await instance.records(wait_ms, max_bytes)
                if records:
                    for message in _messages(request.topic, [r for _, r in records], max_bytes):
                        yield message
                    idle.restart()
        finally:
            with contextlib.suppress(ConsumerInstanceNotFound):  # swept while idle
                await asyncio.shield(self._consumers.delete(group, instance.name))

    async def _partitions(self, topic: str, wanted: Sequence[int]) -> list[TopicPartition]:
        count = (await self._admin.topic(topic)).partition_count
        indexes = sorted(set(wanted)) if wanted else range(count)
        for index in indexes:
            if not 0 <= index < count:
                raise UnknownTopicOrPartition(
                    f"the topic has partitions 0 to {count - 1}; there is no partition {index}"
                )
        return [TopicPartition(topic, index) for index in indexes]

    async def _start(
        self, tp: TopicPartition, request: pb.ConsumeRequest, read_committed: bool
    ) -> int:
        """Where the stream starts reading `tp`."""
        if request.WhichOneof("start") == "offset":
            if request.offset < 0:
                raise CallRefused(StatusCode.INVALID_ARGUMENT, "offset must not be negative")
            return request.offset
        offsets = await self._fetch.offsets(tp)
        if request.position == pb.START_EARLIEST:
            return offsets.log_start_offset
        if request.position not in (pb.START_UNSPECIFIED, pb.START_LATEST):
            raise CallRefused(StatusCode.INVALID_ARGUMENT, f"unknown position {request.position}")
        return offsets.last_stable_offset if read_committed else offsets.high_watermark

    async def _read(
        self, positions: dict[TopicPartition, int], max_bytes: int, read_committed: bool
    ) -> list[ConsumedRecord]:
        """Up to about `max_bytes` of records from the partitions in turn, positions moved on."""
        records: list[ConsumedRecord] = []
        budget = max_bytes
        for tp, offset in positions.items():
            if budget <= 0:
                break
            read = await self._fetch.read(tp, offset, budget, read_committed=read_committed)
            positions[tp] = read.next_offset
            records.extend(read.records)
            budget -= sum(_record_bytes(record) for record in read.records)
        return records

    # --- commit ----------------------------------------------------------------------------

    async def commit(
        self, request: pb.CommitRequest, caller: Caller, context: Context
    ) -> pb.CommitResponse:
        group = caller.internal(request.group, "group")
        caller.require(Op.READ, ResourceType.GROUP, request.group)
        if len(request.offsets) > COMMIT_OFFSETS_MAX:
            raise CallRefused(
                StatusCode.RESOURCE_EXHAUSTED,
                f"{len(request.offsets)} offsets in one commit; at most {COMMIT_OFFSETS_MAX}",
            )
        wanted: dict[TopicPartition, OffsetToCommit] = {}
        names: dict[str, str] = {}  # internal topic name -> the caller's
        for item in request.offsets:
            internal = caller.internal(item.topic)
            caller.require(Op.READ, ResourceType.TOPIC, item.topic)
            if item.offset < 0 or item.partition < 0:
                raise CallRefused(
                    StatusCode.INVALID_ARGUMENT,
                    f"{item.topic}-{item.partition}: offsets and partitions are not negative",
                )
            names[internal] = item.topic
            metadata = item.metadata if item.HasField("metadata") else None
            wanted[TopicPartition(internal, item.partition)] = OffsetToCommit(
                item.offset, -1, metadata
            )
        response = pb.CommitResponse()
        if request.member:  # a Consume stream's member: its generation, refused whole if fenced
            try:  # another org's member is in another group: not found, as a missing one
                instance = self._consumers.get(group, request.member)
            except ConsumerInstanceNotFound:
                raise CallRefused(
                    StatusCode.NOT_FOUND,
                    f"group {request.group!r} has no member {request.member!r} of a Consume "
                    "stream (it ended, or never was); commit without a member, or from the "
                    "stream's own",
                ) from None
            await instance.commit({tp: wanted[tp].offset for tp in wanted})
            for tp in wanted:
                response.results.add(topic=names[tp.topic], partition=tp.partition)
            return response
        answers = await self._groups.commit_offsets(group, STANDALONE_GENERATION, "", None, wanted)
        for tp, code in answers.items():
            result = response.results.add(topic=names[tp.topic], partition=tp.partition)
            if code is not ErrorCode.NONE:
                result.error.CopyFrom(code_message(code, _commit_refusal(code, request.group)))
        return response


class _Idle:
    """A Consume stream's idle bound: how long the next wait for records may last; None once
    max_idle_ms passed without records (0: never)."""

    def __init__(self, max_idle_ms: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._max_idle_ms = max_idle_ms
        self.restart()

    def restart(self) -> None:
        self._since = self._loop.time()

    def wait_ms(self) -> int | None:
        if not self._max_idle_ms:
            return CONSUME_WAIT_MS
        idle_ms = (self._loop.time() - self._since) * 1000
        if idle_ms >= self._max_idle_ms:
            return None
        return min(CONSUME_WAIT_MS, max(1, int(self._max_idle_ms - idle_ms)))


def _offset_reset(request: pb.ConsumeRequest) -> OffsetReset:
    if request.position == pb.START_EARLIEST:
        return OffsetReset.EARLIEST
    if request.position not in (pb.START_UNSPECIFIED, pb.START_LATEST):
        raise CallRefused(StatusCode.INVALID_ARGUMENT, f"unknown position {request.position}")
    return OffsetReset.LATEST


def _new_record(record: pb.Record) -> NewRecord:
    return NewRecord(
        key=record.key if record.HasField("key") else None,
        value=record.value if record.HasField("value") else None,
        headers=tuple(
            (header.key, header.value if header.HasField("value") else None)
            for header in record.headers
        ),
        partition=record.partition if record.HasField("partition") else None,
        timestamp_ms=record.timestamp_ms if record.HasField("timestamp_ms") else None,
    )


def _timeout_ms(context: Context) -> int:
    """The produce timeout: the engine's, or less when the call's deadline comes first."""
    remaining_s = context.time_remaining()
    if remaining_s is None:
        return PRODUCE_TIMEOUT_MS
    if remaining_s <= 0:
        raise CallRefused(StatusCode.DEADLINE_EXCEEDED, "the call's deadline passed")
    return max(1, min(PRODUCE_TIMEOUT_MS, int(remaining_s * 1000)))


def _message_bytes(asked: int) -> int:
    if asked < 0:
        raise CallRefused(StatusCode.INVALID_ARGUMENT, "max_bytes must not be negative")
    return min(asked or CONSUME_MESSAGE_BYTES_DEFAULT, CONSUME_MESSAGE_BYTES_MAX)


def _record_bytes(record: ConsumedRecord) -> int:
    headers = sum(len(key) + len(value or b"") for key, value in record.headers)
    return RECORD_OVERHEAD_BYTES + len(record.key or b"") + len(record.value or b"") + headers


def _messages(
    topic: str, records: Iterable[ConsumedRecord], max_bytes: int
) -> Iterator[pb.ConsumeResponse]:
    """The records in messages of at most `max_bytes` (a larger record alone in its own)."""
    message = pb.ConsumeResponse()
    size = 0
    for record in records:
        record_bytes = _record_bytes(record)
        if message.records and size + record_bytes > max_bytes:
            yield message
            message, size = pb.ConsumeResponse(), 0
        _add(message, topic, record)
        size += record_bytes
    if message.records:
        yield message


def _add(message: pb.ConsumeResponse, topic: str, record: ConsumedRecord) -> None:
    item = message.records.add(
        topic=topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp_ms,
    )
    if record.key is not None:
        item.key = record.key
    if record.value is not None:
        item.value = record.value
    for key, value in record.headers:
        header = item.headers.add(key=key)
        if value is not None:
            header.value = value


def _commit_refusal(code: ErrorCode, group: str) -> str:
    if code in (ErrorCode.ILLEGAL_GENERATION, ErrorCode.UNKNOWN_MEMBER_ID):
        return f"group {group!r} has active members: only they commit its offsets while it does"
    if code is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
        return "no such topic or partition"
    return f"the offset was not committed ({code.name})"
