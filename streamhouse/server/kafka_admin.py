"""Kafka admin handlers: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs (topics
and brokers), AlterConfigs, IncrementalAlterConfigs and DescribeCluster, over the admin service.

Each decodes its request, calls `engine.admin.AdminService` once per resource and
encodes the answer (a StreamHouseError becomes that resource's error code and message);
like the handlers in `kafka_handlers`, each returns a coroutine yielding
version-agnostic response values.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from streamhouse.engine.admin import ConfigChange, ConfigOperation, topic_id
from streamhouse.engine.broker_configs import REPLICATION_FACTOR
from streamhouse.errors import ErrorCode, StreamHouseError, UnknownTopicOrPartition
from streamhouse.kafka.connection import Request
from streamhouse.kafka.sentinels import AUTHORIZED_OPERATIONS_OMITTED
from streamhouse.log.topic_configs import ConfigEntry
from streamhouse.server.kafka_cluster import broker
from streamhouse.server.kafka_context import Completion, KafkaContext, Values, done
from streamhouse.server.kafka_orgs import is_visible

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
NO_TOPIC_ID = uuid.UUID(int=0)
ENDPOINT_TYPE_BROKERS = 1


def _failed(answer: Values, error: StreamHouseError) -> Values:
    return {**answer, "error_code": error.code, "error_message": str(error)}


# --- CreateTopics ----------------------------------------------------------------------------


async def create_topics(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    results = [await _create_topic(ctx, topic, bool(body.validate_only)) for topic in body.topics]
    return done({"throttle_time": 0, "topics": results})


async def _create_topic(ctx: KafkaContext, topic: Any, validate_only: bool) -> Values:
    answer: Values = {
        "name": topic.name,
        "num_partitions": ctx.admin.partition_count(topic.num_partitions),
        "replication_factor": REPLICATION_FACTOR,
        "configs": [],
    }
    configs = {c.name: c.value for c in topic.configs if c.value is not None}
    try:
        await ctx.admin.create_topic(
            topic.name, topic.num_partitions, configs, validate_only=validate_only
        )
    except StreamHouseError as error:
        return _failed(answer, error)
    return {**answer, "error_code": 0}


# --- DeleteTopics ----------------------------------------------------------------------------


async def delete_topics(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    wanted: list[tuple[str | None, uuid.UUID | None]]
    if getattr(body, "topics", None) is not None:
        wanted = [(t.name, t.topic_id) for t in body.topics]
    else:
        wanted = [(name, None) for name in body.topic_names]
    responses = [await _delete_topic(ctx, name, named_id) for name, named_id in wanted]
    return done({"throttle_time": 0, "responses": responses})


async def _delete_topic(ctx: KafkaContext, name: str | None, named_id: uuid.UUID | None) -> Values:
    answer: Values = {"name": name, "topic_id": named_id or NO_TOPIC_ID}
    try:
        if name is None:
            name = (await ctx.admin.topic_by_id(named_id or NO_TOPIC_ID)).name
            if not is_visible(name):  # another org's topic: as unknown as any other id
                raise UnknownTopicOrPartition(f"no topic has id {named_id}")
            answer["name"] = name
        answer["topic_id"] = topic_id(await ctx.admin.delete_topic(name))
    except StreamHouseError as error:
        return _failed(answer, error)
    return {**answer, "error_code": 0}


# --- CreatePartitions ------------------------------------------------------------------------


async def create_partitions(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    validate_only = bool(body.validate_only)
    results = []
    for topic in body.topics:
        try:
            await ctx.admin.add_partitions(topic.name, topic.count, validate_only=validate_only)
            results.append({"name": topic.name, "error_code": 0})
        except StreamHouseError as error:
            results.append(_failed({"name": topic.name}, error))
    return done({"throttle_time": 0, "results": results})


# --- DescribeConfigs -------------------------------------------------------------------------


async def describe_configs(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    shown = _Shown(
        bool(getattr(body, "include_synonyms", False)),
        bool(getattr(body, "include_documentation", False)),
    )
    results = [await _describe_resource(ctx, resource, shown) for resource in body.resources]
    return done({"throttle_time": 0, "results": results})


@dataclass(frozen=True)
class _Shown:
    """What a DescribeConfigs request asks to see of each config besides its value."""

    synonyms: bool
    documentation: bool


async def _describe_resource(ctx: KafkaContext, resource: Any, shown: _Shown) -> Values:
    answer: Values = {
        "resource_type": resource.resource_type,
        "resource_name": resource.resource_name,
        "configs": [],
    }
    names = resource.configuration_keys or ()
    try:
        if resource.resource_type == RESOURCE_BROKER:
            entries = ctx.admin.describe_broker_configs(resource.resource_name, names)
        else:
            _check_topic_resource(resource, "described")
            entries = await ctx.admin.describe_configs(resource.resource_name, names)
    except StreamHouseError as error:
        return _failed(answer, error)
    configs = [_config_entry(entry, shown) for entry in entries]
    return {**answer, "error_code": 0, "configs": configs}


def _check_topic_resource(resource: Any, what: str) -> None:
    if resource.resource_type != RESOURCE_TOPIC:
        raise StreamHouseError(
            f"configs of resource type {resource.resource_type} cannot be {what}; "
            f"only topics ({RESOURCE_TOPIC}) can",
            ErrorCode.INVALID_REQUEST,
        )


def _config_entry(entry: ConfigEntry, shown: _Shown) -> Values:
    synonyms = [
        {"name": synonym.name, "value": synonym.value, "source": synonym.source}
        for synonym in entry.synonyms
    ]
    return {
        "name": entry.name,
        "value": entry.value,
        "read_only": entry.read_only,
        "config_source": entry.source,
        "is_sensitive": False,
        "synonyms": synonyms if shown.synonyms else [],
        "config_type": entry.type,
        "documentation": entry.documentation if shown.documentation else None,
    }


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
    name = resource.resource_name
    try:
        _check_topic_resource(resource, "altered")
        if incremental:
            changes = [_config_change(config) for config in resource.configs]
            await ctx.admin.alter_configs(name, changes, validate_only=validate_only)
        else:
            configs = {config.name: config.value for config in resource.configs}
            await ctx.admin.replace_configs(name, configs, validate_only=validate_only)
    except StreamHouseError as error:
        return _failed(answer, error)
    return {**answer, "error_code": 0}


def _config_change(config: Any) -> ConfigChange:
    try:
        operation = ConfigOperation(int(config.config_operation))
    except ValueError:
        raise StreamHouseError(
            f"unknown config operation {config.config_operation}", ErrorCode.INVALID_REQUEST
        ) from None
    return ConfigChange(config.name, operation, config.value)


# --- DescribeCluster -------------------------------------------------------------------------


async def describe_cluster(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    cluster = ctx.admin.describe_cluster()
    return done(
        {
            "throttle_time": 0,
            "error_code": 0,
            "error_message": None,
            "endpoint_type": int(getattr(body, "endpoint_type", ENDPOINT_TYPE_BROKERS)),
            "cluster_id": cluster.cluster_id,
            "controller_id": cluster.controller_id,
            "brokers": [
                {**broker(agent, "broker_id"), "is_fenced": False} for agent in cluster.agents
            ],
            "cluster_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
        }
    )
