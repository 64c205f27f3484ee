"""Kafka admin handlers: DeleteTopics, DescribeConfigs, CreatePartitions, AlterConfigs and
IncrementalAlterConfigs.

Like the handlers in `kafka_handlers`, each returns a coroutine yielding
version-agnostic response values.

A deleted topic's partitions led by this agent stay in the LogStore's memory
until their next flush commit is fenced (the partition rows are gone), which
drops them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from streamhouse.errors import (
    ErrorCode,
    InvalidConfig,
    InvalidPartitions,
    StreamHouseError,
    UnknownTopicOrPartition,
)
from streamhouse.kafka.connection import Request
from streamhouse.log.topics import validate_partition_count
from streamhouse.ports.metadata import TopicRecord
from streamhouse.server.kafka_context import Completion, KafkaContext, Values, done

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
SOURCE_TOPIC_CONFIG = 1
SOURCE_DEFAULT_CONFIG = 5
TYPE_INT, TYPE_LONG, TYPE_LIST = 3, 5, 7
OP_SET, OP_DELETE, OP_APPEND, OP_SUBTRACT = 0, 1, 2, 3

CONFIG_TYPES = {
    "cleanup.policy": TYPE_LIST,
    "retention.ms": TYPE_LONG,
    "retention.bytes": TYPE_LONG,
    "segment.bytes": TYPE_INT,
    "segment.ms": TYPE_LONG,
    "max.message.bytes": TYPE_INT,
}


def topic_config_defaults(batch_bytes_max: int) -> dict[str, str]:
    """The Kafka-named topic configs we honour, with their defaults."""
    return {
        "cleanup.policy": "delete",
        "retention.ms": "604800000",
        "retention.bytes": "-1",
        "segment.bytes": "1073741824",
        "segment.ms": "604800000",
        "max.message.bytes": str(batch_bytes_max),
    }


def _topic_id(topic: TopicRecord) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"streamhouse:{topic.name}:{topic.created_ms}")


# --- DeleteTopics ----------------------------------------------------------------------------


async def delete_topics(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    wanted: list[tuple[str | None, uuid.UUID | None]]
    if getattr(body, "topics", None) is not None:
        wanted = [(t.name, t.topic_id) for t in body.topics]
    else:
        wanted = [(name, None) for name in body.topic_names]
    responses = [await _delete_topic(ctx, name, topic_id) for name, topic_id in wanted]
    return done({"throttle_time": 0, "responses": responses})


async def _delete_topic(ctx: KafkaContext, name: str | None, topic_id: uuid.UUID | None) -> Values:
    answer: Values = {"name": name, "topic_id": topic_id or uuid.UUID(int=0)}
    try:
        if name is None:
            name = await _name_of(ctx, topic_id)
            answer["name"] = name
        topic = await ctx.metadata.get_topic(name)
        if topic is None:
            raise UnknownTopicOrPartition(f"topic {name!r} does not exist")
        answer["topic_id"] = _topic_id(topic)
        await ctx.metadata.delete_topic(name)
        ctx.log.forget_topic(name)
    except StreamHouseError as error:
        return {**answer, "error_code": error.code, "error_message": str(error)}
    return {**answer, "error_code": 0}


async def _name_of(ctx: KafkaContext, topic_id: uuid.UUID | None) -> str:
    for topic in await ctx.metadata.list_topics():
        if _topic_id(topic) == topic_id:
            return topic.name
    raise StreamHouseError(f"no topic has id {topic_id}", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)


# --- DescribeConfigs -------------------------------------------------------------------------


async def describe_configs(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    results = [await _describe_resource(ctx, resource) for resource in body.resources]
    return done({"throttle_time": 0, "results": results})


async def _describe_resource(ctx: KafkaContext, resource: Any) -> Values:
    answer: Values = {
        "resource_type": resource.resource_type,
        "resource_name": resource.resource_name,
        "configs": [],
    }
    if resource.resource_type == RESOURCE_BROKER:
        return {**answer, "error_code": 0}
    if resource.resource_type != RESOURCE_TOPIC:
        return {
            **answer,
            "error_code": ErrorCode.INVALID_REQUEST,
            "error_message": f"resource type {resource.resource_type} is not supported",
        }
    try:
        topic = await ctx.metadata.get_topic(resource.resource_name)
        if topic is None:
            raise UnknownTopicOrPartition(f"topic {resource.resource_name!r} does not exist")
    except StreamHouseError as error:
        return {**answer, "error_code": error.code, "error_message": str(error)}
    keys = resource.configuration_keys
    configs = [
        entry
        for entry in _config_entries(topic, ctx.settings.batch_bytes_max)
        if not keys or entry["name"] in keys
    ]
    return {**answer, "error_code": 0, "configs": configs}


def _config_entries(topic: TopicRecord, batch_bytes_max: int) -> list[Values]:
    values: dict[str, tuple[str, int]] = {
        name: (value, SOURCE_DEFAULT_CONFIG)
        for name, value in topic_config_defaults(batch_bytes_max).items()
    }
    values.update({name: (value, SOURCE_TOPIC_CONFIG) for name, value in topic.configs.items()})
    return [
        {
            "name": name,
            "value": value,
            "read_only": False,
            "config_source": source,
            "is_sensitive": False,
            "synonyms": [],
            "config_type": CONFIG_TYPES.get(name, 0),
            "documentation": None,
        }
        for name, (value, source) in sorted(values.items())
    ]


def check_configs(configs: Mapping[str, str | None]) -> None:
    """Raise InvalidConfig for names we do not honour or values that do not parse."""
    for name, value in configs.items():
        if name not in CONFIG_TYPES:
            raise InvalidConfig(f"unknown topic config {name!r}")
        if value is None or CONFIG_TYPES[name] == TYPE_LIST:
            continue
        try:
            int(value)
        except ValueError:
            raise InvalidConfig(f"config {name!r} needs an integer, got {value!r}") from None
    policy = configs.get("cleanup.policy")
    if policy is not None and not set(policy.split(",")) <= {"delete", "compact"}:
        raise InvalidConfig(f"cleanup.policy {policy!r} is not delete and/or compact")


# --- CreatePartitions ------------------------------------------------------------------------


async def create_partitions(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    validate_only = bool(body.validate_only)
    results = [await _create_partitions(ctx, topic, validate_only) for topic in body.topics]
    return done({"throttle_time": 0, "results": results})


async def _create_partitions(ctx: KafkaContext, topic: Any, validate_only: bool) -> Values:
    answer: Values = {"name": topic.name}
    try:
        record = await ctx.metadata.get_topic(topic.name)
        if record is None:
            raise UnknownTopicOrPartition(f"topic {topic.name!r} does not exist")
        if topic.count <= record.partition_count:
            raise InvalidPartitions(
                f"topic {topic.name!r} has {record.partition_count} partitions; "
                f"asked for {topic.count}, which is not more"
            )
        validate_partition_count(topic.count, ctx.settings.topic_partitions_max)
        if not validate_only:
            await ctx.metadata.add_partitions(topic.name, topic.count)
    except StreamHouseError as error:
        return {**answer, "error_code": error.code, "error_message": str(error)}
    return {**answer, "error_code": 0}


# --- AlterConfigs and IncrementalAlterConfigs ------------------------------------------------


async def alter_configs(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    responses = [
        await _alter_resource(ctx, resource, bool(body.validate_only), incremental=False)
        for resource in body.resources
    ]
    return done({"throttle_time": 0, "responses": responses})


async def incremental_alter_configs(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    responses = [
        await _alter_resource(ctx, resource, bool(body.validate_only), incremental=True)
        for resource in body.resources
    ]
    return done({"throttle_time": 0, "responses": responses})


async def _alter_resource(
    ctx: KafkaContext, resource: Any, validate_only: bool, *, incremental: bool
) -> Values:
    answer: Values = {
        "resource_type": resource.resource_type,
        "resource_name": resource.resource_name,
    }
    try:
        if resource.resource_type != RESOURCE_TOPIC:
            raise StreamHouseError(
                f"configs of resource type {resource.resource_type} cannot be altered",
                ErrorCode.INVALID_REQUEST,
            )
        topic = await ctx.metadata.get_topic(resource.resource_name)
        if topic is None:
            raise UnknownTopicOrPartition(f"topic {resource.resource_name!r} does not exist")
        if incremental:
            changes = _incremental_changes(topic, resource.configs, ctx.settings.batch_bytes_max)
        else:
            changes = {config.name: config.value for config in resource.configs}
        check_configs(changes)
        if not validate_only:
            await ctx.metadata.set_topic_configs(topic.name, changes, incremental=incremental)
    except StreamHouseError as error:
        return {**answer, "error_code": error.code, "error_message": str(error)}
    return {**answer, "error_code": 0}


def _incremental_changes(
    topic: TopicRecord, configs: Any, batch_bytes_max: int
) -> dict[str, str | None]:
    changes: dict[str, str | None] = {}
    for config in configs:
        operation = int(config.config_operation)
        if operation == OP_SET:
            changes[config.name] = config.value
        elif operation == OP_DELETE:
            changes[config.name] = None
        elif operation in (OP_APPEND, OP_SUBTRACT):
            changes[config.name] = _list_change(topic, config, operation, batch_bytes_max)
        else:
            raise StreamHouseError(
                f"unknown config operation {operation}", ErrorCode.INVALID_REQUEST
            )
    return changes


def _list_change(topic: TopicRecord, config: Any, operation: int, batch_bytes_max: int) -> str:
    if CONFIG_TYPES.get(config.name) != TYPE_LIST:
        raise StreamHouseError(
            f"config {config.name!r} is not a list: it cannot be appended to or subtracted from",
            ErrorCode.INVALID_REQUEST,
        )
    current = topic.configs.get(config.name, topic_config_defaults(batch_bytes_max)[config.name])
    items = [item for item in current.split(",") if item]
    given = [item for item in (config.value or "").split(",") if item]
    if operation == OP_APPEND:
        items += [item for item in given if item not in items]
    else:
        items = [item for item in items if item not in given]
    return ",".join(items)
