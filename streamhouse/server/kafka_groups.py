"""Kafka handlers of the consumer group APIs, over the group coordinator and admin services.

FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit and OffsetFetch
go to the coordinator; DescribeGroups, ListGroups, DeleteGroups and OffsetDelete to the
admin service. Like the handlers in `kafka_handlers`, each returns a coroutine yielding
version-agnostic response values; JoinGroup and SyncGroup's coroutines wait for the
rebalance.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

from streamhouse.engine.coordinators import slot_of
from streamhouse.engine.waiting import CLIENT_RETRY_BACKOFF_MS
from streamhouse.errors import ErrorCode, StorageError, StreamHouseError
from streamhouse.kafka.connection import Request
from streamhouse.kafka.sentinels import (
    AUTHORIZED_OPERATIONS_OMITTED,
    NO_LEADER_EPOCH,
    NO_NODE_ID,
    NO_OFFSET,
    NO_PORT,
)
from streamhouse.log.group_state import (
    GroupState,
    GroupSummary,
    JoinRequest,
    JoinResponse,
    SyncResponse,
)
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import CommittedOffset, OffsetToCommit
from streamhouse.server.kafka_context import Completion, KafkaContext, Values, done

KEY_TYPE_GROUP = 0
KEY_TYPE_TRANSACTION = 1
NOT_COORDINATOR_WAIT_MS = CLIENT_RETRY_BACKOFF_MS
NO_COORDINATOR: Values = {"node_id": NO_NODE_ID, "host": "", "port": NO_PORT}
CLIENT_HOST: ContextVar[str] = ContextVar("client_host", default="")
"""The peer address of the connection a request came on, as Kafka shows it ("/10.0.0.7");
set by the listener for each connection's task."""


def _ms(value: Any) -> int:
    return int(value.total_seconds() * 1000)


# --- FindCoordinator -------------------------------------------------------------------------


async def find_coordinator(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    key_type = int(getattr(body, "key_type", KEY_TYPE_GROUP))
    error = (
        ErrorCode.NONE
        if key_type in (KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION)
        else ErrorCode.INVALID_REQUEST
    )

    def found(key: str) -> Values:
        if error is not ErrorCode.NONE:
            unknown = f"unknown key type {key_type}"
            return {"error_code": error, "error_message": unknown, **NO_COORDINATOR}
        agent = ctx.admin.cluster.coordinator(slot_of(key))
        return {
            "error_code": error,
            "error_message": None,
            "node_id": agent.node_id,
            "host": agent.host,
            "port": agent.port,
        }

    keys = getattr(body, "coordinator_keys", None)
    if keys is None:  # v0-v3: one key, answered at the top level
        return done({"throttle_time": 0, **found(body.key)})
    return done({"throttle_time": 0, "coordinators": [{"key": key, **found(key)} for key in keys]})


async def pace(ctx: KafkaContext, *codes: int) -> None:
    """A NOT_COORDINATOR answer leaves NOT_COORDINATOR_WAIT_MS late: answered at once, a
    client that looks its coordinator up again without a backoff (aiokafka) asks again at
    once, forever on a network without delay (the simulator's), while the slot is between
    two holders."""
    if ErrorCode.NOT_COORDINATOR in codes:
        await ctx.clock.sleep_ms(NOT_COORDINATOR_WAIT_MS)


async def _paced(ctx: KafkaContext, codes: Iterable[int], values: Values) -> Values:
    await pace(ctx, *codes)
    return values


# --- JoinGroup, SyncGroup, Heartbeat, LeaveGroup ---------------------------------------------


async def join_group(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    session_timeout_ms = _ms(body.session_timeout)
    rebalance = getattr(body, "rebalance_timeout", None)
    rebalance_timeout_ms = session_timeout_ms if rebalance is None else _ms(rebalance)
    join = JoinRequest(
        member_id=body.member_id,
        instance_id=getattr(body, "group_instance_id", None),
        client_id=request.client_id or "",
        client_host=CLIENT_HOST.get(),
        session_timeout_ms=session_timeout_ms,
        rebalance_timeout_ms=max(rebalance_timeout_ms, 0),
        protocol_type=body.protocol_type,
        protocols=tuple((p.name, bytes(p.metadata)) for p in body.protocols),
        version=request.api_version,
    )
    return _joined(ctx, ctx.groups.join(body.group_id, join))


async def _joined(ctx: KafkaContext, answer: Any) -> Values:
    response: JoinResponse = await answer
    await pace(ctx, response.error)
    return {
        "throttle_time": 0,
        "error_code": response.error,
        "generation_id": response.generation,
        "protocol_type": response.protocol_type,
        "protocol_name": response.protocol_name or "",  # nullable only from v7
        "leader": response.leader,
        "skip_assignment": response.skip_assignment,
        "member_id": response.member_id,
        "members": [
            {"member_id": m.member_id, "group_instance_id": m.instance_id, "metadata": m.metadata}
            for m in response.members
        ],
    }


async def sync_group(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    answer = ctx.groups.sync(
        body.group_id,
        body.member_id,
        getattr(body, "group_instance_id", None),
        body.generation_id,
        getattr(body, "protocol_type", None),
        getattr(body, "protocol_name", None),
        {a.member_id: bytes(a.assignment) for a in body.assignments},
    )
    return _synced(ctx, answer)


async def _synced(ctx: KafkaContext, answer: Any) -> Values:
    response: SyncResponse = await answer
    await pace(ctx, response.error)
    return {
        "throttle_time": 0,
        "error_code": response.error,
        "protocol_type": response.protocol_type,
        "protocol_name": response.protocol_name,
        "assignment": response.assignment,
    }


async def heartbeat(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    error = ctx.groups.heartbeat(
        body.group_id, body.member_id, getattr(body, "group_instance_id", None), body.generation_id
    )
    return _paced(ctx, [error], {"throttle_time": 0, "error_code": error})


async def leave_group(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    members = getattr(body, "members", None)
    if members is None:  # v0-v2: one member, answered at the top level
        (answer,) = ctx.groups.leave(body.group_id, [(body.member_id, None)])
        return _paced(ctx, [answer.error], {"throttle_time": 0, "error_code": answer.error})
    answers = ctx.groups.leave(body.group_id, [(m.member_id, m.group_instance_id) for m in members])
    return _paced(
        ctx,
        [a.error for a in answers],
        {
            "throttle_time": 0,
            "error_code": 0,
            "members": [
                {
                    "member_id": a.member_id,
                    "group_instance_id": a.instance_id,
                    "error_code": a.error,
                }
                for a in answers
            ],
        },
    )


# --- OffsetCommit, OffsetFetch ---------------------------------------------------------------


def offsets_to_commit(body: Any) -> dict[TopicPartition, OffsetToCommit]:
    """The offsets an OffsetCommit or TxnOffsetCommit request names, by partition."""
    return {
        TopicPartition(topic.name, p.partition_index): OffsetToCommit(
            p.committed_offset,
            int(getattr(p, "committed_leader_epoch", NO_LEADER_EPOCH)),
            p.committed_metadata,
        )
        for topic in body.topics
        for p in topic.partitions
    }


async def offset_commit(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    wanted = offsets_to_commit(body)
    try:
        answers = await ctx.groups.commit_offsets(
            body.group_id,
            body.generation_id_or_member_epoch,
            body.member_id,
            getattr(body, "group_instance_id", None),
            wanted,
        )
    except StreamHouseError as failed:
        # Answered on every partition: a response without partitions reads as success to
        # clients that check only partition errors (aiokafka), and the commit is lost.
        answers = dict.fromkeys(wanted, retriable_code(failed))
    await pace(ctx, *answers.values())
    by_topic: dict[str, list[Values]] = {}
    for tp, error in answers.items():
        by_topic.setdefault(tp.topic, []).append(
            {"partition_index": tp.partition, "error_code": error}
        )
    topics = [{"name": name, "partitions": parts} for name, parts in by_topic.items()]
    return done({"throttle_time": 0, "topics": topics})


async def offset_fetch(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    groups = getattr(body, "groups", None)
    if groups is None:  # v1-v7: one group, answered at the top level
        error, found = await _fetch_group(ctx, body.group_id, body.topics, _stable(body))
        await pace(ctx, error)
        return done({"throttle_time": 0, "error_code": error, "topics": found})
    answers = []
    for group in groups:
        error, found = await _fetch_group(ctx, group.group_id, group.topics, _stable(body))
        await pace(ctx, error)
        answers.append({"group_id": group.group_id, "error_code": error, "topics": found})
    return done({"throttle_time": 0, "groups": answers})


def _stable(body: Any) -> bool:
    """OffsetFetch v7+'s require_stable (KIP-447): offsets pending in an open transaction
    are answered UNSTABLE_OFFSET_COMMIT, which the client retries, until it ends."""
    return bool(getattr(body, "require_stable", False))


async def _fetch_group(
    ctx: KafkaContext, group_id: str, topics: Any, require_stable: bool
) -> tuple[int, list[Values]]:
    """The group's error code and its committed offsets by topic. A failed read is also
    answered on every requested partition: clients that read only partition errors
    (aiokafka) must not take it for "no committed offset" and reset their position."""
    wanted = None
    if topics is not None:
        wanted = [TopicPartition(t.name, index) for t in topics for index in t.partition_indexes]
    try:
        committed = await ctx.groups.fetch_offsets(group_id, wanted)
        unstable = await ctx.groups.pending_partitions(group_id) if require_stable else set()
    except StreamHouseError as error:
        code = retriable_code(error)
        failed = [_fetched(tp.partition, None, code) for tp in wanted or []]
        return int(code), _by_topic(wanted or [], failed)
    wanted = sorted(committed) if wanted is None else wanted  # None: every one it has
    answers = [
        _fetched(tp.partition, None, ErrorCode.UNSTABLE_OFFSET_COMMIT)
        if tp in unstable
        else _fetched(tp.partition, committed.get(tp))
        for tp in wanted
    ]
    return 0, _by_topic(wanted, answers)


def retriable_code(error: StreamHouseError) -> ErrorCode:
    """A storage hiccup is "the coordinator is loading, try again shortly", which every
    client retries; other errors keep their code."""
    return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS if isinstance(error, StorageError) else error.code


def _by_topic(partitions: list[TopicPartition], answers: list[Values]) -> list[Values]:
    by_topic: dict[str, list[Values]] = {}
    for tp, answer in zip(partitions, answers, strict=True):
        by_topic.setdefault(tp.topic, []).append(answer)
    return [{"name": name, "partitions": parts} for name, parts in by_topic.items()]


def _fetched(
    partition: int, offset: CommittedOffset | None, error: ErrorCode = ErrorCode.NONE
) -> Values:
    if offset is None:
        return {
            "partition_index": partition,
            "committed_offset": NO_OFFSET,
            "committed_leader_epoch": NO_LEADER_EPOCH,
            "metadata": "",
            "error_code": error,
        }
    return {
        "partition_index": partition,
        "committed_offset": offset.offset,
        "committed_leader_epoch": offset.leader_epoch,
        "metadata": offset.metadata or "",
        "error_code": 0,
    }


# --- DescribeGroups, ListGroups, DeleteGroups, OffsetDelete ---------------------------------


async def describe_groups(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    described = []
    for group_id in body.groups:
        try:
            described.append(_described(await ctx.admin.describe_group(group_id)))
        except StreamHouseError as error:  # NOT_COORDINATOR: the client finds it again
            described.append(_refused_describe(group_id, retriable_code(error), str(error)))
    await pace(ctx, *(int(group["error_code"]) for group in described))
    return done({"throttle_time": 0, "groups": described})


def _refused_describe(group_id: str, code: ErrorCode, message: str) -> Values:
    return {
        **_described(GroupSummary(group_id, GroupState.DEAD, "", "")),
        "error_code": code,
        "error_message": message,
    }


def _described(summary: GroupSummary) -> Values:
    return {
        "error_code": 0,
        "error_message": None,
        "group_id": summary.group_id,
        "group_state": summary.state.value,
        "protocol_type": summary.protocol_type,
        "protocol_data": summary.protocol_name,
        "members": [
            {
                "member_id": m.member_id,
                "group_instance_id": m.instance_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
                "member_metadata": m.metadata,
                "member_assignment": m.assignment,
            }
            for m in summary.members
        ],
        "authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
    }


async def list_groups(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    listings = await ctx.admin.list_groups(
        getattr(body, "states_filter", ()), getattr(body, "types_filter", ())
    )
    listed = [
        {
            "group_id": g.group_id,
            "protocol_type": g.protocol_type,
            "group_state": g.state.value,
            "group_type": g.group_type,
        }
        for g in listings
    ]
    return done({"throttle_time": 0, "error_code": 0, "groups": listed})


async def delete_groups(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    results = []
    for group_id in body.groups_names:
        try:
            await ctx.admin.delete_group(group_id)
            results.append({"group_id": group_id, "error_code": 0})
        except StreamHouseError as error:
            results.append({"group_id": group_id, "error_code": error.code})
    return done({"throttle_time": 0, "results": results})


async def offset_delete(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    wanted = [
        TopicPartition(topic.name, p.partition_index)
        for topic in body.topics
        for p in topic.partitions
    ]
    try:
        answers = await ctx.admin.delete_offsets(body.group_id, wanted)
    except StreamHouseError as error:
        return done({"throttle_time": 0, "error_code": error.code, "topics": []})
    parts = [{"partition_index": tp.partition, "error_code": _code(answers[tp])} for tp in wanted]
    return done({"throttle_time": 0, "error_code": 0, "topics": _by_topic(wanted, parts)})


def _code(error: StreamHouseError | None) -> int:
    return ErrorCode.NONE if error is None else error.code
