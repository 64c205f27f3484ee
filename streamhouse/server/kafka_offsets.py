"""Kafka handlers for OffsetForLeaderEpoch, DeleteRecords and DescribeCluster.

Like the handlers in `kafka_handlers`, each returns a coroutine yielding
version-agnostic response values.
"""

from __future__ import annotations

from typing import Any

from streamhouse.errors import StreamHouseError, UnknownTopicOrPartition
from streamhouse.kafka.connection import Request
from streamhouse.names import TopicPartition
from streamhouse.server.kafka_context import Completion, KafkaContext, Values, done

NO_EPOCH = -1
NO_OFFSET = -1
UNKNOWN_AUTHORIZED_OPERATIONS = -2147483648


async def _check_exists(ctx: KafkaContext, tp: TopicPartition) -> None:
    topic = await ctx.topics.get_topic(tp.topic)
    if topic is None or not 0 <= tp.partition < topic.partition_count:
        raise UnknownTopicOrPartition(f"{tp} does not exist")


# --- OffsetForLeaderEpoch --------------------------------------------------------------------


async def offset_for_leader_epoch(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    topics = []
    for topic in body.topics:
        parts = [await _epoch_end_offset(ctx, topic.topic, p) for p in topic.partitions]
        topics.append({"topic": topic.topic, "partitions": parts})
    return done({"throttle_time": 0, "topics": topics})


async def _epoch_end_offset(ctx: KafkaContext, topic: str, partition: Any) -> Values:
    """Kafka's answer for one partition.

    The current epoch ends at the high watermark. Where older epochs ended is not
    tracked yet, so an older epoch is answered with the current epoch and the high
    watermark: clients then truncate nothing. An epoch newer than ours is undefined.
    """
    answer: Values = {
        "partition": partition.partition,
        "leader_epoch": NO_EPOCH,
        "end_offset": NO_OFFSET,
    }
    tp = TopicPartition(topic, partition.partition)
    try:
        await _check_exists(ctx, tp)
        state = (await ctx.log.partition(tp)).state
    except StreamHouseError as error:
        return {**answer, "error_code": error.code}
    stale = state.epoch_error(int(getattr(partition, "current_leader_epoch", NO_EPOCH)))
    if stale is not None:
        return {**answer, "error_code": stale}
    if partition.leader_epoch > state.leader_epoch:
        return {**answer, "error_code": 0}
    return {
        **answer,
        "error_code": 0,
        "leader_epoch": state.leader_epoch,
        "end_offset": state.high_watermark,
    }


# --- DeleteRecords ---------------------------------------------------------------------------


async def delete_records(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    topics = []
    for topic in body.topics:
        parts = [
            await _delete_partition(ctx, TopicPartition(topic.name, p.partition_index), p.offset)
            for p in topic.partitions
        ]
        topics.append({"name": topic.name, "partitions": parts})
    return done({"throttle_time": 0, "topics": topics})


async def _delete_partition(ctx: KafkaContext, tp: TopicPartition, offset: int) -> Values:
    try:
        await _check_exists(ctx, tp)
        low_watermark = await ctx.log.delete_records(tp, offset)
    except StreamHouseError as error:
        return {
            "partition_index": tp.partition,
            "low_watermark": NO_OFFSET,
            "error_code": error.code,
        }
    return {"partition_index": tp.partition, "low_watermark": low_watermark, "error_code": 0}


# --- DescribeCluster -------------------------------------------------------------------------


async def describe_cluster(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    node = ctx.settings.node_id
    broker = {
        "broker_id": node,
        "host": ctx.advertised_host,
        "port": ctx.advertised_port,
        "rack": None,
        "is_fenced": False,
    }
    return done(
        {
            "throttle_time": 0,
            "error_code": 0,
            "error_message": None,
            "endpoint_type": int(getattr(body, "endpoint_type", 1)),
            "cluster_id": ctx.cluster_id,
            "controller_id": node,
            "brokers": [broker],
            "cluster_authorized_operations": UNKNOWN_AUTHORIZED_OPERATIONS,
        }
    )
