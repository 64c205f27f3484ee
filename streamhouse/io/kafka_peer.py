"""Kafka requests to another agent's listener over asyncio streams: WriteTxnMarkers for the
transaction coordinator, Produce, Fetch and ListOffsets for the REST and gRPC doors serving a
partition another agent leads, and the consumer group requests for their consumers in a group
another agent coordinates (and for describing such a group).

One connection per call, closed after the answers (a call's requests are written at once and
answered in order), every wait bounded. Only asyncio streams (asyncio.open_connection): the
simulator runs agents on a simulated network behind the event loop's create_connection. The
connection is plain and unauthenticated: agents hold no credentials of their own, so a
listener requiring SASL or TLS refuses them (engine/forwarding.py does not try).

Per call rather than pooled: calls are rare next to a Kafka client's (a door's client asked
for a partition led elsewhere), a fresh connection cannot carry a stale answer or a broken
stream from an earlier call, and nothing needs bounding or closing when an agent goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streamhouse.errors import ErrorCode, NotCoordinator, PeerUnreachable, StreamHouseError
from streamhouse.kafka import codec
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.client_frames import (
    SIZE,
    SIZE_PREFIX_BYTES,
    UnexpectedResponse,
    request_frame,
    response_body,
)
from streamhouse.kafka.control_records import TxnMarker
from streamhouse.kafka.entities import build
from streamhouse.kafka.sentinels import NO_LEADER_EPOCH, READ_COMMITTED, READ_UNCOMMITTED
from streamhouse.log.group_state import (
    GroupState,
    GroupSummary,
    JoinedMember,
    JoinRequest,
    JoinResponse,
    MemberLeave,
    MemberSummary,
    SyncRequest,
    SyncResponse,
)
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import OffsetToCommit
from streamhouse.ports.peers import (
    GroupCalls,
    GroupOffset,
    OffsetQuery,
    PeerFetched,
    PeerGroups,
    PeerOffset,
    PeerProduced,
    PeerRequests,
)
from streamhouse.ports.txn_markers import MarkerSender

WRITE_TXN_MARKERS_VERSION = 1  # every agent serves v1 (the first version kio knows)
# Versions every agent serves that name topics by name and carry what forwarding needs: Produce
# v8 (record errors and a message), Fetch v11 (isolation, log start, aborted transactions),
# ListOffsets v4 (isolation, leader epochs)
PRODUCE_VERSION = 8
FETCH_VERSION = 11
LIST_OFFSETS_VERSION = 4
MARKERS_RESPONSE_BYTES_MAX = 1024 * 1024  # one code per partition: far below this
MARKERS_CLIENT_ID = "streamhouse-txn-coordinator"
DOORS_CLIENT_ID = "streamhouse-door-forward"
# The longest a peer takes to answer, on top of the wait the request itself asks for (a
# Produce's ack timeout, a Fetch's max wait)
PEER_REQUEST_TIMEOUT_MS = 10_000
CONSUMER_REPLICA_ID = -1  # a Fetch or ListOffsets from a client, not a follower
NO_SESSION = 0  # a Fetch outside any fetch session (with the final epoch)
SESSIONLESS_EPOCH = -1
MIN_BYTES_TO_WAIT = 1  # a waiting Fetch is answered by the first byte
# Group request versions every agent serves (server/kafka_handlers.py) and kio has, with what
# the group coordinator takes: JoinGroup v5 (instance ids; a first join is sent back for a
# member id, KIP-394), SyncGroup v5 (protocol type and name), Heartbeat and LeaveGroup v4
# (instance ids, members in a batch), OffsetCommit v8 (instance ids), OffsetFetch v7 (one group;
# null topics: every partition), DescribeGroups v5 (instance ids)
JOIN_GROUP_VERSION = 5
SYNC_GROUP_VERSION = 5
HEARTBEAT_VERSION = 4
LEAVE_GROUP_VERSION = 4
OFFSET_COMMIT_VERSION = 8
OFFSET_FETCH_VERSION = 7
DESCRIBE_GROUPS_VERSION = 5
GROUPS_CLIENT_ID = "streamhouse-door-group"


@dataclass(frozen=True)
class KafkaCall:
    """One request of a call: the API, its version and its values (kio field names)."""

    api_key: ApiKey
    version: int
    values: Mapping[str, Any]


_correlation_ids = itertools.count(1)


async def call_agent(
    host: str,
    port: int,
    calls: Sequence[KafkaCall],
    *,
    client_id: str,
    timeout_ms: int,
    response_bytes_max: int,
) -> list[Any]:
    """The answers (kio response entities) of the agent at host:port to `calls`, sent over one
    fresh connection within `timeout_ms` in all. Raises PeerUnreachable."""
    sent = [(call, next(_correlation_ids)) for call in calls]
    frames = [
        request_frame(build(codec.request_schema(c.api_key, c.version), c.values), cid, client_id)
        for c, cid in sent
    ]
    try:
        async with asyncio.timeout(timeout_ms / 1000):
            payloads = await _exchange(host, port, frames, response_bytes_max)
        return [
            response_body(payload, c.api_key, c.version, cid)
            for payload, (c, cid) in zip(payloads, sent, strict=True)
        ]
    except (OSError, EOFError, TimeoutError, UnexpectedResponse) as error:
        names = "+".join(sorted({c.api_key.name for c in calls}))
        raise PeerUnreachable(f"{names} to the agent at {host}:{port} failed: {error!r}") from error


async def _exchange(
    host: str, port: int, frames: Sequence[bytes], response_bytes_max: int
) -> list[bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"".join(frames))
        await writer.drain()
        payloads = []
        for _ in frames:
            (size,) = SIZE.unpack(await reader.readexactly(SIZE_PREFIX_BYTES))
            if not 0 < size <= response_bytes_max:
                raise UnexpectedResponse(f"a response frame of {size} bytes")
            payloads.append(await reader.readexactly(size))
        return payloads
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class StreamsMarkerSender(MarkerSender):
    """WriteTxnMarkers over a fresh asyncio connection per request."""

    def __init__(self, timeout_ms: int) -> None:
        self._timeout_ms = timeout_ms

    async def send_markers(
        self, host: str, port: int, marker: TxnMarker, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        values = {
            "markers": [
                {
                    "producer_id": marker.producer_id,
                    "producer_epoch": marker.producer_epoch,
                    "transaction_result": marker.committed,
                    "coordinator_epoch": marker.coordinator_epoch,
                    "topics": [
                        {"name": name, "partition_indexes": indexes}
                        for name, indexes in _by_topic(partitions).items()
                    ],
                }
            ]
        }
        (body,) = await call_agent(
            host,
            port,
            [KafkaCall(ApiKey.WRITE_TXN_MARKERS, WRITE_TXN_MARKERS_VERSION, values)],
            client_id=MARKERS_CLIENT_ID,
            timeout_ms=self._timeout_ms,
            response_bytes_max=MARKERS_RESPONSE_BYTES_MAX,
        )
        return {
            TopicPartition(topic.name, part.partition_index): int(part.error_code)
            for answer in body.markers
            for topic in answer.topics
            for part in topic.partitions
        }


class StreamsPeerRequests(PeerRequests):
    """Produce, Fetch and ListOffsets over a fresh asyncio connection per call; answers up to
    `response_bytes_max` (the agent's own frame bound) each."""

    def __init__(self, response_bytes_max: int) -> None:
        self._response_bytes_max = response_bytes_max

    async def produce(
        self, host: str, port: int, tp: TopicPartition, batch: bytes, acks: int, timeout_ms: int
    ) -> PeerProduced:
        assert acks != 0, "an acks=0 Produce is not answered: nothing to tell the door's client"
        values = {
            "acks": acks,
            "timeout": timeout_ms,
            "topic_data": [
                {"name": tp.topic, "partition_data": [{"index": tp.partition, "records": batch}]}
            ],
        }
        (body,) = await self._call(
            host, port, [KafkaCall(ApiKey.PRODUCE, PRODUCE_VERSION, values)], timeout_ms
        )
        for topic in body.responses:
            for part in topic.partition_responses:
                if (topic.name, part.index) == (tp.topic, tp.partition):
                    message = part.error_message or "; ".join(
                        f"record {e.batch_index}: {e.batch_index_error_message}"
                        for e in part.record_errors
                    )
                    return PeerProduced(int(part.error_code), int(part.base_offset), message)
        raise PeerUnreachable(f"Produce to the agent at {host}:{port} did not answer for {tp}")

    async def fetch(
        self,
        host: str,
        port: int,
        positions: Sequence[tuple[TopicPartition, int]],
        max_bytes: int,
        *,
        read_committed: bool,
        max_wait_ms: int,
    ) -> dict[TopicPartition, PeerFetched]:
        by_topic: dict[str, list[dict[str, int]]] = {}
        for tp, offset in positions:
            by_topic.setdefault(tp.topic, []).append(
                {
                    "partition": tp.partition,
                    "current_leader_epoch": NO_LEADER_EPOCH,
                    "fetch_offset": offset,
                    "log_start_offset": -1,
                    "partition_max_bytes": max_bytes,
                }
            )
        values = {
            "replica_id": CONSUMER_REPLICA_ID,
            "max_wait": max_wait_ms,
            "min_bytes": MIN_BYTES_TO_WAIT,
            "max_bytes": max_bytes,
            "isolation_level": READ_COMMITTED if read_committed else READ_UNCOMMITTED,
            "session_id": NO_SESSION,
            "session_epoch": SESSIONLESS_EPOCH,
            "topics": [{"topic": name, "partitions": parts} for name, parts in by_topic.items()],
        }
        (body,) = await self._call(
            host, port, [KafkaCall(ApiKey.FETCH, FETCH_VERSION, values)], max_wait_ms
        )
        if body.error_code:
            raise PeerUnreachable(
                f"Fetch to the agent at {host}:{port} refused: {int(body.error_code)}"
            )
        return {
            TopicPartition(topic.topic, part.partition_index): PeerFetched(
                int(part.error_code),
                int(part.high_watermark),
                int(part.last_stable_offset),
                int(part.log_start_offset),
                bytes(part.records or b""),
                None
                if part.aborted_transactions is None
                else tuple(
                    (int(a.producer_id), int(a.first_offset)) for a in part.aborted_transactions
                ),
            )
            for topic in body.responses
            for part in topic.partitions
        }

    async def list_offsets(
        self, host: str, port: int, tp: TopicPartition, queries: Sequence[OffsetQuery]
    ) -> list[PeerOffset]:
        calls = [
            KafkaCall(
                ApiKey.LIST_OFFSETS,
                LIST_OFFSETS_VERSION,
                {
                    "replica_id": CONSUMER_REPLICA_ID,
                    "isolation_level": READ_COMMITTED if q.read_committed else READ_UNCOMMITTED,
                    "topics": [
                        {
                            "name": tp.topic,
                            "partitions": [
                                {
                                    "partition_index": tp.partition,
                                    "current_leader_epoch": NO_LEADER_EPOCH,
                                    "timestamp": q.timestamp,
                                }
                            ],
                        }
                    ],
                },
            )
            for q in queries
        ]
        answers = []
        for body in await self._call(host, port, calls, 0):
            parts = [p for t in body.topics for p in t.partitions]
            if len(parts) != 1:
                raise PeerUnreachable(
                    f"ListOffsets to the agent at {host}:{port}: {len(parts)} answers for {tp}"
                )
            answers.append(PeerOffset(int(parts[0].error_code), int(parts[0].offset)))
        return answers

    async def _call(
        self, host: str, port: int, calls: Sequence[KafkaCall], asked_wait_ms: int
    ) -> list[Any]:
        return await call_agent(
            host,
            port,
            calls,
            client_id=DOORS_CLIENT_ID,
            timeout_ms=asked_wait_ms + PEER_REQUEST_TIMEOUT_MS,
            response_bytes_max=self._response_bytes_max,
        )


class StreamsPeerGroups(PeerGroups):
    """Group requests over a fresh asyncio connection per call; answers up to
    `response_bytes_max` (the agent's own frame bound) each."""

    def __init__(self, response_bytes_max: int) -> None:
        self._response_bytes_max = response_bytes_max

    def at(self, host: str, port: int) -> GroupCalls:
        return StreamsGroupCalls(host, port, self._response_bytes_max)


class StreamsGroupCalls(GroupCalls):
    """The group coordinator of the agent at host:port. A join or sync waits up to the
    rebalance timeout for its answer, every call PEER_REQUEST_TIMEOUT_MS beyond; an agent that
    cannot be reached (or answers what does not decode) is answered COORDINATOR_NOT_AVAILABLE,
    as a Kafka client takes it, and an offsets fetch or a describe raises PeerUnreachable."""

    def __init__(self, host: str, port: int, response_bytes_max: int) -> None:
        self._host = host
        self._port = port
        self._response_bytes_max = response_bytes_max

    async def join(self, group_id: str, request: JoinRequest) -> JoinResponse:
        values = {
            "group_id": group_id,
            "session_timeout": request.session_timeout_ms,
            "rebalance_timeout": request.rebalance_timeout_ms,
            "member_id": request.member_id,
            "group_instance_id": request.instance_id,
            "protocol_type": request.protocol_type,
            "protocols": [{"name": name, "metadata": data} for name, data in request.protocols],
        }
        call = KafkaCall(ApiKey.JOIN_GROUP, JOIN_GROUP_VERSION, values)
        try:
            body = await self._call(call, request.rebalance_timeout_ms, request.client_id)
        except PeerUnreachable:
            return JoinResponse(ErrorCode.COORDINATOR_NOT_AVAILABLE, member_id=request.member_id)
        return JoinResponse(
            _code(body.error_code),
            member_id=body.member_id,
            generation=int(body.generation_id),
            protocol_type=request.protocol_type,  # v5 answers only the protocol name
            protocol_name=body.protocol_name or None,
            leader=body.leader,
            members=tuple(
                JoinedMember(m.member_id, m.group_instance_id, bytes(m.metadata))
                for m in body.members
            ),
        )

    async def sync(
        self, group_id: str, request: SyncRequest, *, rebalance_timeout_ms: int
    ) -> SyncResponse:
        values = {
            "group_id": group_id,
            "generation_id": request.generation,
            "member_id": request.member_id,
            "group_instance_id": request.instance_id,
            "protocol_type": request.protocol_type,
            "protocol_name": request.protocol_name,
            "assignments": [
                {"member_id": member, "assignment": data}
                for member, data in request.assignments.items()
            ],
        }
        call = KafkaCall(ApiKey.SYNC_GROUP, SYNC_GROUP_VERSION, values)
        try:
            body = await self._call(call, rebalance_timeout_ms)
        except PeerUnreachable:
            return SyncResponse(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        return SyncResponse(
            _code(body.error_code), body.protocol_type, body.protocol_name, bytes(body.assignment)
        )

    async def heartbeat(
        self, group_id: str, member_id: str, instance_id: str | None, generation: int
    ) -> ErrorCode:
        values = {
            "group_id": group_id,
            "generation_id": generation,
            "member_id": member_id,
            "group_instance_id": instance_id,
        }
        try:
            body = await self._call(KafkaCall(ApiKey.HEARTBEAT, HEARTBEAT_VERSION, values))
        except PeerUnreachable:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        return _code(body.error_code)

    async def leave(
        self, group_id: str, leaving: Sequence[tuple[str, str | None]]
    ) -> list[MemberLeave]:
        members = [{"member_id": m, "group_instance_id": i} for m, i in leaving]
        values = {"group_id": group_id, "members": members}
        try:
            body = await self._call(KafkaCall(ApiKey.LEAVE_GROUP, LEAVE_GROUP_VERSION, values))
        except PeerUnreachable:
            return [MemberLeave(m, i, ErrorCode.COORDINATOR_NOT_AVAILABLE) for m, i in leaving]
        if body.error_code:  # the whole request refused (NOT_COORDINATOR, …)
            return [MemberLeave(m, i, _code(body.error_code)) for m, i in leaving]
        return [
            MemberLeave(m.member_id, m.group_instance_id, _code(m.error_code)) for m in body.members
        ]

    async def commit_offsets(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        instance_id: str | None,
        offsets: Mapping[TopicPartition, OffsetToCommit],
    ) -> dict[TopicPartition, ErrorCode]:
        by_topic: dict[str, list[dict[str, Any]]] = {}
        for tp, wanted in offsets.items():
            by_topic.setdefault(tp.topic, []).append(
                {
                    "partition_index": tp.partition,
                    "committed_offset": wanted.offset,
                    "committed_leader_epoch": wanted.leader_epoch,
                    "committed_metadata": wanted.metadata,
                }
            )
        values = {
            "group_id": group_id,
            "generation_id_or_member_epoch": generation,
            "member_id": member_id,
            "group_instance_id": instance_id,
            "topics": [{"name": name, "partitions": parts} for name, parts in by_topic.items()],
        }
        try:
            body = await self._call(KafkaCall(ApiKey.OFFSET_COMMIT, OFFSET_COMMIT_VERSION, values))
        except PeerUnreachable:
            return dict.fromkeys(offsets, ErrorCode.COORDINATOR_NOT_AVAILABLE)
        answers = {
            TopicPartition(topic.name, part.partition_index): _code(part.error_code)
            for topic in body.topics
            for part in topic.partitions
        }
        # a partition left unanswered is not taken for committed
        return {tp: answers.get(tp, ErrorCode.UNKNOWN_SERVER_ERROR) for tp in offsets}

    async def fetch_offsets(
        self, group_id: str, partitions: Sequence[TopicPartition] | None
    ) -> dict[TopicPartition, GroupOffset]:
        topics = None
        if partitions is not None:
            topics = [{"name": t, "partition_indexes": i} for t, i in _by_topic(partitions).items()]
        values = {"group_id": group_id, "topics": topics, "require_stable": False}
        body = await self._call(KafkaCall(ApiKey.OFFSET_FETCH, OFFSET_FETCH_VERSION, values))
        self._check(
            group_id,
            [_code(body.error_code)]
            + [_code(part.error_code) for topic in body.topics for part in topic.partitions],
        )
        return {
            TopicPartition(topic.name, part.partition_index): GroupOffset(
                int(part.committed_offset), int(part.committed_leader_epoch), part.metadata
            )
            for topic in body.topics
            for part in topic.partitions
            if part.committed_offset >= 0
        }

    async def describe(self, group_id: str) -> GroupSummary:
        values = {"groups": [group_id], "include_authorized_operations": False}
        body = await self._call(KafkaCall(ApiKey.DESCRIBE_GROUPS, DESCRIBE_GROUPS_VERSION, values))
        described = next((g for g in body.groups if g.group_id == group_id), None)
        if described is None:
            raise PeerUnreachable(f"{self._where(group_id)}: DescribeGroups did not answer it")
        self._check(group_id, [_code(described.error_code)])
        try:
            state = GroupState(described.group_state)
        except ValueError:
            raise StreamHouseError(
                f"{self._where(group_id)}: an unknown group state {described.group_state!r}",
                ErrorCode.UNKNOWN_SERVER_ERROR,
            ) from None
        return GroupSummary(
            group_id,
            state,
            described.protocol_type,
            described.protocol_data,
            tuple(
                MemberSummary(
                    m.member_id,
                    m.group_instance_id,
                    m.client_id,
                    m.client_host,
                    bytes(m.member_metadata),
                    bytes(m.member_assignment),
                )
                for m in described.members
            ),
        )

    def _where(self, group_id: str) -> str:
        return f"group {group_id!r} at its coordinator, the agent at {self._host}:{self._port}"

    def _check(self, group_id: str, errors: Sequence[ErrorCode]) -> None:
        """Raise the first refusal among an answer's error codes (NotCoordinator for
        NOT_COORDINATOR)."""
        refused = next((code for code in errors if code is not ErrorCode.NONE), None)
        if refused is ErrorCode.NOT_COORDINATOR:
            raise NotCoordinator(f"{self._where(group_id)}: NOT_COORDINATOR")
        if refused is not None:
            raise StreamHouseError(f"{self._where(group_id)}: {refused.name}", refused)

    async def _call(
        self, call: KafkaCall, asked_wait_ms: int = 0, client_id: str = GROUPS_CLIENT_ID
    ) -> Any:
        (body,) = await call_agent(
            self._host,
            self._port,
            [call],
            client_id=client_id or GROUPS_CLIENT_ID,
            timeout_ms=asked_wait_ms + PEER_REQUEST_TIMEOUT_MS,
            response_bytes_max=self._response_bytes_max,
        )
        return body


def _code(value: Any) -> ErrorCode:
    """An answer's error code as the engine knows it (one it does not: UNKNOWN_SERVER_ERROR)."""
    try:
        return ErrorCode(int(value))
    except ValueError:
        return ErrorCode.UNKNOWN_SERVER_ERROR


def _by_topic(partitions: Sequence[TopicPartition]) -> dict[str, list[int]]:
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return by_topic
