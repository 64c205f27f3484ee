"""Kafka handler for DescribeProducers: the producers each partition's leader remembers, with
the offset where each one's open transaction began (what finds a hanging transaction)."""

from __future__ import annotations

from typing import Any

from streamhouse.errors import StreamHouseError
from streamhouse.kafka.connection import Request
from streamhouse.names import TopicPartition
from streamhouse.server.kafka_context import Completion, KafkaContext, Values, done

NO_COORDINATOR_EPOCH = -1  # the partition does not track which coordinator wrote last


async def describe_producers(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    topics = []
    for topic in body.topics:
        parts = [
            await _partition_producers(ctx, TopicPartition(topic.name, index))
            for index in topic.partition_indexes
        ]
        topics.append({"name": topic.name, "partitions": parts})
    return done({"throttle_time": 0, "topics": topics})


async def _partition_producers(ctx: KafkaContext, tp: TopicPartition) -> Values:
    answer: Values = {"partition_index": tp.partition, "error_message": None}
    try:
        await ctx.admin.check_partition(tp)
        producers = await ctx.log.describe_producers(tp)
    except StreamHouseError as error:
        return {**answer, "error_code": error.code, "error_message": str(error)}
    active = [
        {
            "producer_id": producer.producer_id,
            "producer_epoch": producer.producer_epoch,
            "last_sequence": producer.last_sequence,
            "last_timestamp": producer.last_timestamp_ms,
            "coordinator_epoch": NO_COORDINATOR_EPOCH,
            "current_txn_start_offset": producer.current_txn_start_offset,
        }
        for producer in producers
    ]
    return {**answer, "error_code": 0, "active_producers": active}
