"""Kafka request handlers: each turns a decoded request into version-agnostic response values.

A handler returns a coroutine that yields the response values, or a future they are set
on (server/kafka_context.py); Produce lives in server/kafka_produce.py.
"""

from __future__ import annotations

from typing import Any

from streamhouse.engine.consume import check_leader_epoch
from streamhouse.engine.coordinators import is_internal
from streamhouse.engine.waiting import (
    CLIENT_RETRY_BACKOFF_MS,
)
from streamhouse.errors import ErrorCode, StreamHouseError
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.connection import Request
from streamhouse.kafka.encoded import EncodedBody
from streamhouse.kafka.fetch_response import FetchedPartition, encode_fetch_response
from streamhouse.kafka.fetch_sessions import (
    FINAL_EPOCH,
    NO_SESSION,
    Resolved,
)
from streamhouse.kafka.sentinels import (
    AUTHORIZED_OPERATIONS_OMITTED,
    EARLIEST_TIMESTAMP,
    LATEST_TIERED_TIMESTAMP,
    LATEST_TIMESTAMP,
    NO_LEADER_EPOCH,
    NO_OFFSET,
    READ_COMMITTED,
    READ_UNCOMMITTED,
)
from streamhouse.names import TopicPartition
from streamhouse.ports.topics import TopicRecord
from streamhouse.server.kafka_acls import ACL_HANDLERS
from streamhouse.server.kafka_admin import (
    alter_configs,
    create_partitions,
    create_topics,
    delete_topics,
    describe_cluster,
    describe_configs,
    incremental_alter_configs,
)
from streamhouse.server.kafka_cluster import broker, partition_metadata
from streamhouse.server.kafka_cluster_admin import (
    alter_partition_reassignments,
    alter_replica_log_dirs,
    describe_log_dirs,
    describe_quorum,
    describe_topic_partitions,
    elect_leaders,
    list_partition_reassignments,
)
from streamhouse.server.kafka_context import Completion, Handler, KafkaContext, Values, done
from streamhouse.server.kafka_describe_producers import describe_producers
from streamhouse.server.kafka_groups import (
    delete_groups,
    describe_groups,
    find_coordinator,
    heartbeat,
    join_group,
    leave_group,
    list_groups,
    offset_commit,
    offset_delete,
    offset_fetch,
    sync_group,
)
from streamhouse.server.kafka_offsets import delete_records, offset_for_leader_epoch
from streamhouse.server.kafka_orgs import answer_topic, is_visible
from streamhouse.server.kafka_produce import produce
from streamhouse.server.kafka_producers import init_producer_id
from streamhouse.server.kafka_quotas import QUOTA_HANDLERS
from streamhouse.server.kafka_scram import SCRAM_HANDLERS
from streamhouse.server.kafka_throttle import throttle_of
from streamhouse.server.kafka_transactions import TRANSACTION_HANDLERS, TRANSACTION_MAX_VERSIONS
from streamhouse.tenancy.quotas import CONSUMER_BYTE_RATE

FETCH_PARTITION_BYTES_MIN = 1


def _named_epoch(partition: Any) -> int:
    """The leader epoch a request names for a partition (older versions name none)."""
    return int(getattr(partition, "current_leader_epoch", NO_LEADER_EPOCH))


# --- ApiVersions ---------------------------------------------------------------------------


async def api_versions(ctx: KafkaContext, request: Request) -> Completion:
    keys = [
        {"api_key": api.key, "min_version": api.min_version, "max_version": api.max_version}
        for api in ctx.apis
    ]
    return done({"error_code": 0, "api_keys": keys, "throttle_time": 0})


# --- Metadata --------------------------------------------------------------------------------


async def metadata(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    names = None if body.topics is None else [t.name for t in body.topics if t.name]
    if names is None:
        topics = [await _topic_metadata(ctx, t) for t in await ctx.admin.list_topics()]
    else:
        auto_create = bool(getattr(body, "allow_auto_topic_creation", True))
        topics = [await _named_topic_metadata(ctx, name, auto_create) for name in names]
    cluster = ctx.admin.describe_cluster()
    return done(
        {
            "throttle_time": 0,
            "brokers": [broker(agent) for agent in cluster.agents],
            "cluster_id": cluster.cluster_id,
            "controller_id": cluster.controller_id,
            "topics": topics,
            "cluster_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
        }
    )


async def _named_topic_metadata(ctx: KafkaContext, name: str, auto_create: bool) -> Values:
    try:
        topic = await ctx.admin.find_topic(name, auto_create=auto_create)
    except StreamHouseError as error:
        return {
            "error_code": error.code,
            "name": name,
            "partitions": [],
            "topic_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
        }
    return await _topic_metadata(ctx, topic)


async def _topic_metadata(ctx: KafkaContext, topic: TopicRecord) -> Values:
    described = await ctx.admin.describe_topic(topic)
    partitions = [partition_metadata(p) for p in described.partitions]
    return {
        "error_code": 0,
        "name": topic.name,
        "topic_id": described.topic_id,
        "is_internal": is_internal(topic.name),
        "partitions": partitions,
        "topic_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
    }


# --- Fetch -----------------------------------------------------------------------------------


async def fetch(ctx: KafkaContext, request: Request) -> Completion:
    """Fetch, answered in wire form straight away: record batches pass through as read."""
    body: Any = request.body
    requested = [
        (TopicPartition(t.topic, p.partition), p.fetch_offset, p.partition_max_bytes)
        for t in body.topics
        for p in t.partitions
    ]
    # Partitions only the fetch session remembers were named without an epoch this time.
    epochs = {
        TopicPartition(t.topic, p.partition): _named_epoch(p)
        for t in body.topics
        for p in t.partitions
    }
    forgotten = [
        TopicPartition(t.topic, partition)
        for t in getattr(body, "forgotten_topics_data", ())
        for partition in t.partitions
    ]
    session_id = getattr(body, "session_id", NO_SESSION)
    epoch = getattr(body, "session_epoch", FINAL_EPOCH)
    resolved = ctx.fetch_sessions.resolve(session_id, epoch, requested, forgotten)
    if resolved.error:
        return _ready(encode_fetch_response(request.api_version, [], error_code=resolved.error))
    if not all(is_visible(tp.topic) for tp, _, _ in resolved.wanted):
        # a session id another org's consumer made: as unknown to this one as to a stranger
        return _ready(
            encode_fetch_response(
                request.api_version, [], error_code=ErrorCode.FETCH_SESSION_ID_NOT_FOUND
            )
        )
    wanted = resolved.wanted
    max_bytes = min(body.max_bytes, ctx.settings.fetch_bytes_max)
    committed = getattr(body, "isolation_level", READ_UNCOMMITTED) == READ_COMMITTED
    answers = await _read_all(ctx, wanted, epochs, max_bytes, committed)
    total_bytes = sum(a.records_bytes for a in answers.values())
    max_wait_ms = int(body.max_wait.total_seconds() * 1000)
    if total_bytes == 0 and _has_lasting_errors(answers):  # nothing but a lasting failure
        await ctx.clock.sleep_ms(min(max_wait_ms, CLIENT_RETRY_BACKOFF_MS))
    if total_bytes < body.min_bytes and max_wait_ms > 0 and not _has_errors(answers):
        positions = {tp: offset for tp, offset, _ in wanted}
        if await ctx.log.reads.wait_for_data(positions, max_wait_ms, read_committed=committed):
            answers = await _read_all(ctx, wanted, epochs, max_bytes, committed)
    fetched_bytes = sum(a.records_bytes for a in answers.values())
    # Kafka answers a throttled Fetch with no records; this one carries what it read (the
    # mute keeps the rate within the quota all the same, and nothing is read twice)
    throttle_ms = await throttle_of(ctx, request, CONSUMER_BYTE_RATE, fetched_bytes)
    return _ready(_fetch_response(request.api_version, resolved, answers, throttle_ms))


async def _ready(body: EncodedBody) -> EncodedBody:
    """A completion for a body encoded already."""
    return body


def _has_errors(answers: dict[TopicPartition, FetchedPartition]) -> bool:
    return any(a.error_code for a in answers.values())


# Errors that asking again at once will not cure: the store down (KAFKA_STORAGE_ERROR), the
# offsets' object missing or corrupt (CORRUPT_MESSAGE: aiokafka only logs it and fetches again
# at once, for ever, found by the simulator's object nemesis).
LASTING_FETCH_ERRORS = frozenset({ErrorCode.KAFKA_STORAGE_ERROR, ErrorCode.CORRUPT_MESSAGE})


def _has_lasting_errors(answers: dict[TopicPartition, FetchedPartition]) -> bool:
    return any(a.error_code in LASTING_FETCH_ERRORS for a in answers.values())


async def _read_all(
    ctx: KafkaContext,
    wanted: list[tuple[TopicPartition, int, int]],
    epochs: dict[TopicPartition, int],
    max_bytes: int,
    read_committed: bool,
) -> dict[TopicPartition, FetchedPartition]:
    """Each partition in turn, within the response's `max_bytes` as Kafka bounds it (KIP-74):
    a partition's first batch comes even if larger than its share, so consumers progress,
    but once earlier partitions filled the response the later ones return no records."""
    answers: dict[TopicPartition, FetchedPartition] = {}
    budget = max_bytes
    filled = False
    for tp, offset, partition_max in wanted:
        bytes_max = 0 if filled else max(min(partition_max, budget), FETCH_PARTITION_BYTES_MIN)
        epoch = epochs.get(tp, NO_LEADER_EPOCH)
        answer = await _read_partition(ctx, tp, offset, bytes_max, epoch, read_committed)
        answers[tp] = answer
        budget -= answer.records_bytes
        filled = filled or (budget <= 0 and answer.records_bytes > 0)
    return answers


async def _read_partition(
    ctx: KafkaContext,
    tp: TopicPartition,
    offset: int,
    bytes_max: int,
    current_leader_epoch: int,
    read_committed: bool,
) -> FetchedPartition:
    try:
        result = await ctx.fetch.read_batches(
            tp,
            offset,
            bytes_max,
            read_committed=read_committed,
            current_leader_epoch=current_leader_epoch,
        )
    except StreamHouseError as error:
        # Empty records, not null: librdkafka cannot parse a null records field (size -1).
        plog = ctx.log.led_partition(tp)
        high_watermark = plog.state.high_watermark if plog else NO_OFFSET
        stable = plog.last_stable_offset if plog else NO_OFFSET
        log_start = plog.state.log_start_offset if plog else NO_OFFSET
        return FetchedPartition(tp.partition, error.code, high_watermark, stable, log_start)
    aborted = None
    if result.aborted is not None:
        aborted = [(a.producer_id, a.first_offset) for a in result.aborted]
    return FetchedPartition(
        tp.partition,
        0,
        result.high_watermark,
        result.last_stable_offset,
        result.log_start_offset,
        result.batches,
        aborted,
    )


def _fetch_response(
    version: int,
    resolved: Resolved,
    answers: dict[TopicPartition, FetchedPartition],
    throttle_ms: int,
) -> EncodedBody:
    session = resolved.session
    shown = [
        tp
        for tp, _, _ in resolved.wanted
        if session is None or session.worth_mentioning(tp, answers[tp]) or not resolved.incremental
    ]
    if session is not None:
        session.served_last([tp for tp in shown if answers[tp].records])
    by_topic: dict[str, list[FetchedPartition]] = {}
    for tp in shown:
        name = answer_topic(tp.topic)
        assert name is not None, f"{tp} was checked visible"
        by_topic.setdefault(name, []).append(answers[tp])
    session_id = session.session_id if session is not None else NO_SESSION
    return encode_fetch_response(
        version, list(by_topic.items()), session_id=session_id, throttle_time_ms=throttle_ms
    )


# --- ListOffsets -----------------------------------------------------------------------------


async def list_offsets(ctx: KafkaContext, request: Request) -> Completion:
    topics = []
    body: Any = request.body
    committed = getattr(body, "isolation_level", READ_UNCOMMITTED) == READ_COMMITTED
    for topic in body.topics:
        parts = [
            await _list_offset(
                ctx,
                TopicPartition(topic.name, p.partition_index),
                p.timestamp,
                _named_epoch(p),
                committed,
            )
            for p in topic.partitions
        ]
        topics.append({"name": topic.name, "partitions": parts})
    return done({"throttle_time": 0, "topics": topics})


async def _list_offset(
    ctx: KafkaContext,
    tp: TopicPartition,
    timestamp_ms: int,
    current_leader_epoch: int,
    read_committed: bool,
) -> Values:
    answer: Values = {"partition_index": tp.partition, "timestamp": NO_OFFSET, "offset": NO_OFFSET}
    try:
        await ctx.admin.check_partition(tp)
        plog = await ctx.log.partition(tp)
        state = plog.state
        check_leader_epoch(state, current_leader_epoch)
        answer["leader_epoch"] = state.leader_epoch
        if timestamp_ms == EARLIEST_TIMESTAMP:
            return {**answer, "error_code": 0, "offset": state.log_start_offset}
        if timestamp_ms == LATEST_TIMESTAMP:
            latest = plog.last_stable_offset if read_committed else state.high_watermark
            return {**answer, "error_code": 0, "offset": latest}
        if timestamp_ms == LATEST_TIERED_TIMESTAMP:  # the object store is the remote storage
            return {**answer, "error_code": 0, "offset": state.durable_end_offset - 1}
        found = await ctx.log.reads.offset_for_timestamp(tp, timestamp_ms)
    except StreamHouseError as error:
        return {**answer, "error_code": error.code}
    if found is None:
        return {**answer, "error_code": 0}
    return {**answer, "error_code": 0, "offset": found[0], "timestamp": found[1]}


HANDLERS: dict[ApiKey, Handler] = {
    ApiKey.INIT_PRODUCER_ID: init_producer_id,
    ApiKey.API_VERSIONS: api_versions,
    ApiKey.METADATA: metadata,
    ApiKey.PRODUCE: produce,
    ApiKey.FETCH: fetch,
    ApiKey.LIST_OFFSETS: list_offsets,
    ApiKey.DESCRIBE_PRODUCERS: describe_producers,
    ApiKey.CREATE_TOPICS: create_topics,
    ApiKey.OFFSET_FOR_LEADER_EPOCH: offset_for_leader_epoch,
    ApiKey.DELETE_RECORDS: delete_records,
    ApiKey.DESCRIBE_CLUSTER: describe_cluster,
    ApiKey.DELETE_TOPICS: delete_topics,
    ApiKey.DESCRIBE_CONFIGS: describe_configs,
    ApiKey.CREATE_PARTITIONS: create_partitions,
    ApiKey.ALTER_CONFIGS: alter_configs,
    ApiKey.INCREMENTAL_ALTER_CONFIGS: incremental_alter_configs,
    ApiKey.FIND_COORDINATOR: find_coordinator,
    ApiKey.JOIN_GROUP: join_group,
    ApiKey.SYNC_GROUP: sync_group,
    ApiKey.HEARTBEAT: heartbeat,
    ApiKey.LEAVE_GROUP: leave_group,
    ApiKey.OFFSET_COMMIT: offset_commit,
    ApiKey.OFFSET_FETCH: offset_fetch,
    ApiKey.DESCRIBE_GROUPS: describe_groups,
    ApiKey.LIST_GROUPS: list_groups,
    ApiKey.DELETE_GROUPS: delete_groups,
    ApiKey.OFFSET_DELETE: offset_delete,
    ApiKey.ELECT_LEADERS: elect_leaders,
    ApiKey.DESCRIBE_LOG_DIRS: describe_log_dirs,
    ApiKey.ALTER_REPLICA_LOG_DIRS: alter_replica_log_dirs,
    ApiKey.DESCRIBE_QUORUM: describe_quorum,
    ApiKey.LIST_PARTITION_REASSIGNMENTS: list_partition_reassignments,
    ApiKey.ALTER_PARTITION_REASSIGNMENTS: alter_partition_reassignments,
    ApiKey.DESCRIBE_TOPIC_PARTITIONS: describe_topic_partitions,
    **TRANSACTION_HANDLERS,
    **SCRAM_HANDLERS,
    **ACL_HANDLERS,
    **QUOTA_HANDLERS,
}
MAX_VERSIONS = {  # later versions name topics by id
    ApiKey.PRODUCE: 12,
    ApiKey.FETCH: 12,
    ApiKey.OFFSET_COMMIT: 9,
    ApiKey.OFFSET_FETCH: 9,
    **TRANSACTION_MAX_VERSIONS,
}
