"""Kafka's replica-placement admin handlers: ElectLeaders, DescribeLogDirs, AlterReplicaLogDirs,
DescribeQuorum, ListPartitionReassignments, AlterPartitionReassignments and
DescribeTopicPartitions (KIP-966), over the admin service.

Each decodes its request, calls `engine.admin.AdminService` and encodes the answer (a
StreamHouseError becomes the error code and message of what it refused); the rules of a cluster
whose one replica is the object store are in `engine.cluster_shape`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from streamhouse.engine.admin import (
    LogDir,
    PartitionPage,
    TopicDescription,
    TopicRefusal,
)
from streamhouse.engine.cluster_shape import (
    NO_DIRECTORY_ID,
    VOLUME_BYTES_UNKNOWN,
    ElectionType,
    PageCursor,
    QuorumDescription,
    QuorumReplica,
)
from streamhouse.errors import StreamHouseError
from streamhouse.kafka.connection import Request
from streamhouse.kafka.sentinels import AUTHORIZED_OPERATIONS_OMITTED
from streamhouse.names import TopicPartition
from streamhouse.server.kafka_cluster import LISTENER_NAME, partition_metadata
from streamhouse.server.kafka_context import Completion, KafkaContext, Values, done

NO_TOPIC_ID = uuid.UUID(int=0)  # DescribeTopicPartitions: the id of a topic that does not exist


def _by_topic(pairs: Iterable[tuple[str, Iterable[int]]]) -> dict[str, list[int]]:
    """Partitions a request names, by topic (a topic named twice gets both lists)."""
    wanted: dict[str, list[int]] = {}
    for topic, partitions in pairs:
        wanted.setdefault(topic, []).extend(partitions)
    return wanted


def _partition_error(error: StreamHouseError) -> Values:
    return {"error_code": error.code, "error_message": str(error)}


# --- ElectLeaders ----------------------------------------------------------------------------


async def elect_leaders(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    named = body.topic_partitions
    wanted = None if named is None else _by_topic((t.topic, t.partitions) for t in named)
    election = int(getattr(body, "election_type", ElectionType.PREFERRED))
    try:
        results = await ctx.admin.elect_leaders(election, wanted)
    except StreamHouseError as error:  # the whole request: every partition named gets it too
        refused = {name: dict.fromkeys(parts, error) for name, parts in (wanted or {}).items()}
        return done(_elect_leaders_response(refused, error))
    return done(_elect_leaders_response(results, None))


def _elect_leaders_response(
    results: dict[str, dict[int, StreamHouseError]], error: StreamHouseError | None
) -> Values:
    return {
        "throttle_time": 0,
        "error_code": error.code if error else 0,
        "replica_election_results": [
            {
                "topic": name,
                "partition_result": [
                    {"partition_id": index, **_partition_error(answer)}
                    for index, answer in answers.items()
                ],
            }
            for name, answers in results.items()
        ],
    }


# --- DescribeLogDirs and AlterReplicaLogDirs -------------------------------------------------


async def describe_log_dirs(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    named = body.topics
    wanted = None if named is None else _by_topic((t.topic, t.partitions) for t in named)
    log_dir = await ctx.admin.describe_log_dir(wanted)
    return done({"throttle_time": 0, "error_code": 0, "results": [_log_dir(log_dir)]})


def _log_dir(log_dir: LogDir) -> Values:
    by_topic: dict[str, list[Values]] = {}
    for partition in log_dir.partitions:
        by_topic.setdefault(partition.tp.topic, []).append(
            {
                "partition_index": partition.tp.partition,
                "partition_size": partition.size_bytes,
                "offset_lag": partition.durable_lag,
                "is_future_key": False,
            }
        )
    return {
        "error_code": 0,
        "log_dir": log_dir.path,
        "topics": [{"name": name, "partitions": parts} for name, parts in by_topic.items()],
        "total_bytes": VOLUME_BYTES_UNKNOWN,
        "usable_bytes": VOLUME_BYTES_UNKNOWN,
        "is_cordoned": False,
    }


async def alter_replica_log_dirs(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    answers: dict[str, list[Values]] = {}
    for log_dir in body.dirs:
        for topic in log_dir.topics:
            for index in topic.partitions:
                answers.setdefault(topic.name, []).append(
                    await _move_replica(ctx, log_dir.path, TopicPartition(topic.name, index))
                )
    results = [{"topic_name": name, "partitions": parts} for name, parts in answers.items()]
    return done({"throttle_time": 0, "results": results})


async def _move_replica(ctx: KafkaContext, path: str, tp: TopicPartition) -> Values:
    try:
        await ctx.admin.alter_replica_log_dir(path, tp)
    except StreamHouseError as error:
        return {"partition_index": tp.partition, "error_code": error.code}
    return {"partition_index": tp.partition, "error_code": 0}


# --- DescribeQuorum --------------------------------------------------------------------------


async def describe_quorum(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    named = [
        TopicPartition(topic.topic_name, partition.partition_index)
        for topic in body.topics
        for partition in topic.partitions
    ]
    try:
        quorum = ctx.admin.describe_quorum(named)
    except StreamHouseError as error:  # Kafka's answer: the error on every partition named
        return done(_quorum_refused(named, error))
    return done(_quorum(named[0], quorum))


def _quorum(tp: TopicPartition, quorum: QuorumDescription) -> Values:
    partition = {
        "partition_index": tp.partition,
        "error_code": 0,
        "leader_id": quorum.leader_id,
        "leader_epoch": quorum.leader_epoch,
        "high_watermark": quorum.high_watermark,
        "current_voters": [_replica(voter) for voter in quorum.voters],
        "observers": [_replica(observer) for observer in quorum.observers],
    }
    nodes = [
        {
            "node_id": agent.node_id,
            "listeners": [{"name": LISTENER_NAME, "host": agent.host, "port": agent.port}],
        }
        for agent in quorum.voter_addresses
    ]
    return {
        "error_code": 0,
        "topics": [{"topic_name": tp.topic, "partitions": [partition]}],
        "nodes": nodes,
    }


def _replica(replica: QuorumReplica) -> Values:
    return {
        "replica_id": replica.node_id,
        "replica_directory_id": NO_DIRECTORY_ID,
        "log_end_offset": replica.log_end_offset,
        "last_fetch_timestamp": replica.last_fetch_ms,
        "last_caught_up_timestamp": replica.last_caught_up_ms,
    }


def _quorum_refused(named: list[TopicPartition], error: StreamHouseError) -> Values:
    by_topic = _by_topic((tp.topic, [tp.partition]) for tp in named)
    topics = [
        {
            "topic_name": name,
            "partitions": [
                {"partition_index": index, **_partition_error(error)} for index in indexes
            ],
        }
        for name, indexes in by_topic.items()
    ]
    return {"error_code": 0, "topics": topics, "nodes": []}


# --- List- and AlterPartitionReassignments ---------------------------------------------------


async def list_partition_reassignments(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    asked = (
        None
        if body.topics is None
        else {TopicPartition(t.name, index) for t in body.topics for index in t.partition_indexes}
    )
    by_topic: dict[str, list[Values]] = {}
    for ongoing in await ctx.admin.list_reassignments():
        if asked is not None and ongoing.tp not in asked:
            continue
        by_topic.setdefault(ongoing.tp.topic, []).append(
            {
                "partition_index": ongoing.tp.partition,
                "replicas": list(ongoing.replicas),
                "adding_replicas": list(ongoing.adding),
                "removing_replicas": list(ongoing.removing),
            }
        )
    topics = [{"name": name, "partitions": parts} for name, parts in by_topic.items()]
    return done({"throttle_time": 0, "error_code": 0, "error_message": None, "topics": topics})


async def alter_partition_reassignments(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    responses = [
        {
            "name": topic.name,
            "partitions": [
                await _reassign(ctx, TopicPartition(topic.name, p.partition_index), p.replicas)
                for p in topic.partitions
            ],
        }
        for topic in body.topics
    ]
    return done(
        {"throttle_time": 0, "error_code": 0, "error_message": None, "responses": responses}
    )


async def _reassign(ctx: KafkaContext, tp: TopicPartition, replicas: Any) -> Values:
    target = None if replicas is None else [int(node) for node in replicas]
    try:
        await ctx.admin.reassign_partition(tp, target)
    except StreamHouseError as error:
        return {"partition_index": tp.partition, **_partition_error(error)}
    return {"partition_index": tp.partition, "error_code": 0, "error_message": None}


# --- DescribeTopicPartitions -----------------------------------------------------------------


async def describe_topic_partitions(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    named = [topic.name for topic in body.topics]
    cursor = body.cursor
    start = None if cursor is None else PageCursor(cursor.topic_name, cursor.partition_index)
    try:
        page = await ctx.admin.describe_topic_partitions(
            named, start, body.response_partition_limit
        )
    except StreamHouseError as error:  # Kafka's answer: the error on every topic named
        topics = [_topic_refused(TopicRefusal(name, error)) for name in named]
        return done({"throttle_time": 0, "topics": topics, "next_cursor": None})
    return done(_page(page))


def _page(page: PartitionPage) -> Values:
    topics = [
        _topic_refused(topic) if isinstance(topic, TopicRefusal) else _topic_partitions(topic)
        for topic in page.topics
    ]
    cursor = page.next_cursor
    next_cursor = (
        None
        if cursor is None
        else {"topic_name": cursor.topic, "partition_index": cursor.partition}
    )
    return {"throttle_time": 0, "topics": topics, "next_cursor": next_cursor}


def _topic_partitions(topic: TopicDescription) -> Values:
    partitions = [
        {**partition_metadata(p), "eligible_leader_replicas": [], "last_known_elr": []}
        for p in topic.partitions
    ]
    return {
        "error_code": 0,
        "name": topic.name,
        "topic_id": topic.topic_id,
        "is_internal": False,
        "partitions": partitions,
        "topic_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
    }


def _topic_refused(topic: TopicRefusal) -> Values:
    return {
        "error_code": topic.error.code,
        "name": topic.name,
        "topic_id": NO_TOPIC_ID,
        "is_internal": False,
        "partitions": [],
        "topic_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
    }
