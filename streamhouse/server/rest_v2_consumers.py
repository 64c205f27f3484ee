"""Confluent REST Proxy API v2 consumers: /consumers/{group}/instances/{instance} and its
subscription, assignments, positions, records and offsets, over the engine's consumer
instances (engine/consumer_instances.py holds every rule: membership, positions, auto commit,
idle expiry).

Refusals in Confluent's shape: an unknown, deleted or expired instance is 404/40403 on every
route; a duplicate name 409/40902; a call that does not fit the instance's state (subscribing
while assigned, seeking a partition not assigned, no offset with auto.offset.reset none) and
a `topic_pattern` subscription (not served: list the topics) 409/40903; a config value that
does not fit 422/42204; records asked in an embedded format other than the instance's (the
Accept header) 406/40601; an agent already holding its most instances 429/42901 (Confluent
has no code for it). Groups and topics are the caller's org's: another org's instance (or a
group name reading as another org's) is 40403 like a missing one, a topic the caller's org
does not have 40401 when subscribed to or assigned. The ACLs asked are the Kafka door's: READ
on the group to be a member or commit, READ on each topic to subscribe, assign, read or
commit it, DESCRIBE on the group and topics to fetch committed offsets.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from streamhouse.engine.consume import ConsumedRecord
from streamhouse.engine.consumer_instances import (
    RECORDS_BYTES_MAX,
    ConsumerInstance,
    ConsumerInstanceExists,
    ConsumerInstanceNotFound,
    ConsumerStateConflict,
    InstanceConfig,
    TooManyConsumerInstances,
)
from streamhouse.engine.embedded_formats import EmbeddedFormat
from streamhouse.errors import ErrorCode, StreamHouseError, UnknownTopicOrPartition
from streamhouse.names import TopicPartition
from streamhouse.server.rest_common import (
    CONSUMER_INSTANCE_NOT_FOUND,
    UNPROCESSABLE,
    V2_CONTENT_TYPE,
    Caller,
    RestError,
    RestServices,
    body_bytes,
    caller_in,
    engine_refusal,
    field,
    json_object,
    partition_not_found,
    topic_not_found,
)
from streamhouse.server.rest_formats import decode, visible_schemas
from streamhouse.tenancy.acls import AclOperation, ResourceType

Op = AclOperation
TOPIC = ResourceType.TOPIC
GROUP = ResourceType.GROUP
INSTANCE_PATH = "/consumers/{group}/instances/{instance}"

# Confluent's codes of the consumer API
CONSUMER_FORMAT_MISMATCH = 40601
CONSUMER_ALREADY_EXISTS = 40902
ILLEGAL_STATE = 40903
INVALID_CONSUMER_CONFIG = 42204
TOO_MANY_CONSUMERS = 42901  # ours: Confluent has no limit on instances
CONFIG_NAMES = (
    "auto.offset.reset",
    "auto.commit.enable",
    "fetch.min.bytes",
    "consumer.request.timeout.ms",
    "isolation.level",
)
# The v2 formats a consumer instance answers in (the schema ones decoded through the registry)
CONSUMED_FORMATS = (
    EmbeddedFormat.BINARY,
    EmbeddedFormat.JSON,
    EmbeddedFormat.AVRO,
    EmbeddedFormat.PROTOBUF,
    EmbeddedFormat.JSONSCHEMA,
)
ACCEPT_PREFIX = "application/vnd.kafka."
ACCEPT_SUFFIX = ".v2+json"


def _answer(body: Any, media_type: str = V2_CONTENT_TYPE) -> JSONResponse:
    return JSONResponse(body, media_type=media_type)


def _no_content() -> Response:
    return Response(status_code=204)


def _refusal(error: StreamHouseError) -> RestError:
    """The Confluent answer of a consumer instance's refusal."""
    if isinstance(error, ConsumerInstanceNotFound):
        return RestError(404, CONSUMER_INSTANCE_NOT_FOUND, "Consumer instance not found.")
    if isinstance(error, ConsumerInstanceExists):
        return RestError(409, CONSUMER_ALREADY_EXISTS, str(error))
    if isinstance(error, TooManyConsumerInstances):
        return RestError(429, TOO_MANY_CONSUMERS, str(error))
    if isinstance(error, ConsumerStateConflict):
        if error.code is ErrorCode.INVALID_CONFIG:
            return RestError(UNPROCESSABLE, INVALID_CONSUMER_CONFIG, str(error))
        return RestError(409, ILLEGAL_STATE, f"Illegal state: {error}")
    return engine_refusal(error)


def install_v2_consumers(app: FastAPI, services: RestServices) -> None:
    """The v2 consumer instance routes."""
    _lifecycle_routes(app, services)
    _subscription_routes(app, services)
    _position_routes(app, services)
    _records_route(app, services)
    _offset_routes(app, services)


@contextlib.contextmanager
def _refused() -> Iterator[None]:
    """An engine refusal inside answered in Confluent's shape."""
    try:
        yield
    except StreamHouseError as error:
        raise _refusal(error) from None


def _target(
    services: RestServices, request: Request, group: str, name: str
) -> tuple[Caller, ConsumerInstance]:
    """The caller and its instance (READ on its group, as a member is asked)."""
    caller = caller_in(request)
    caller.require(Op.READ, GROUP, group)
    try:
        internal = caller.internal_group(group)
    except RestError:  # a name reading as another org's group: none of the caller's instances
        raise _refusal(ConsumerInstanceNotFound(group)) from None
    with _refused():
        return caller, services.consumers.get(internal, name)


async def _document(request: Request, required: bool = True) -> dict[str, Any]:
    raw = await body_bytes(request)
    if not raw.strip() and not required:
        return {}
    return json_object(raw)


def _lifecycle_routes(app: FastAPI, services: RestServices) -> None:
    @app.post("/consumers/{group}", tags=["v2 consumers"], summary="Create a consumer instance")
    async def create(request: Request, group: str) -> JSONResponse:
        caller = caller_in(request)
        caller.require(Op.READ, GROUP, group)
        internal = caller.internal_group(group)
        document = await _document(request, required=False)
        name = field(document, "name", str)
        fmt = _format(document.get("format"))
        values: dict[str, str | int | bool | None] = {}
        for key in CONFIG_NAMES:
            value = document.get(key)
            if value is not None and not isinstance(value, (str, int, bool)):
                raise RestError(
                    UNPROCESSABLE, INVALID_CONSUMER_CONFIG, f"'{key}' must be a string or number"
                )
            values[key] = value
        with _refused():
            config = InstanceConfig.parse(values)
            config = dataclasses.replace(config, embedded_format=fmt.value)
            instance = services.consumers.create(internal, name or None, config)
        base = str(request.base_url).rstrip("/")
        path = f"/consumers/{quote(group, safe='')}/instances/{quote(instance.name, safe='')}"
        return _answer({"instance_id": instance.name, "base_uri": base + path})

    @app.delete(INSTANCE_PATH, tags=["v2 consumers"], summary="Delete a consumer instance")
    async def delete(request: Request, group: str, instance: str) -> Response:
        _, found = _target(services, request, group, instance)
        with _refused():
            await services.consumers.delete(found.group_id, instance)
        return _no_content()


def _format(value: Any) -> EmbeddedFormat:
    if value is None:
        return EmbeddedFormat.BINARY
    try:
        fmt = EmbeddedFormat(str(value).lower())
    except ValueError:
        fmt = None
    if fmt not in CONSUMED_FORMATS:
        served = ", ".join(f.value for f in CONSUMED_FORMATS)
        raise RestError(
            UNPROCESSABLE,
            INVALID_CONSUMER_CONFIG,
            f"format {value!r} is not one this proxy consumes in; use one of {served}",
        )
    assert fmt is not None
    return fmt


def _subscription_routes(app: FastAPI, services: RestServices) -> None:
    @app.post(INSTANCE_PATH + "/subscription", tags=["v2 consumers"], summary="Subscribe")
    async def subscribe(request: Request, group: str, instance: str) -> Response:
        caller, found = _target(services, request, group, instance)
        document = await _document(request)
        if document.get("topic_pattern") is not None:
            raise RestError(
                409,
                ILLEGAL_STATE,
                "Illegal state: topic_pattern subscriptions are not served; list the topics",
            )
        topics = field(document, "topics", list)
        if topics is None or not all(isinstance(topic, str) for topic in topics):
            raise RestError(
                UNPROCESSABLE, UNPROCESSABLE, "the body needs 'topics', a list of names"
            )
        for topic in topics:
            caller.require(Op.READ, TOPIC, topic)
        internal = [caller.internal(topic) for topic in topics]
        for name in internal:  # an unknown topic (or another org's) is 40401, not no records
            await _partition_count(services, caller, name)
        with _refused():
            await found.subscribe(internal)
        return _no_content()

    @app.get(INSTANCE_PATH + "/subscription", tags=["v2 consumers"], summary="Subscribed topics")
    async def subscription(request: Request, group: str, instance: str) -> JSONResponse:
        caller, found = _target(services, request, group, instance)
        with _refused():
            topics = found.subscription()
        return _answer({"topics": sorted(_shown_names(caller, topics))})

    @app.delete(INSTANCE_PATH + "/subscription", tags=["v2 consumers"], summary="Unsubscribe")
    async def unsubscribe(request: Request, group: str, instance: str) -> Response:
        _, found = _target(services, request, group, instance)
        with _refused():
            await found.unsubscribe()
        return _no_content()

    @app.post(INSTANCE_PATH + "/assignments", tags=["v2 consumers"], summary="Assign partitions")
    async def assign(request: Request, group: str, instance: str) -> Response:
        caller, found = _target(services, request, group, instance)
        partitions = _partitions(caller, await _document(request), "partitions")
        await _check_partitions(services, caller, partitions)
        with _refused():
            await found.assign([tp for tp, _ in partitions])
        return _no_content()

    @app.get(INSTANCE_PATH + "/assignments", tags=["v2 consumers"], summary="Assigned partitions")
    async def assignments(request: Request, group: str, instance: str) -> JSONResponse:
        caller, found = _target(services, request, group, instance)
        with _refused():
            assigned = found.assignments()
        listed = [
            {"topic": shown, "partition": tp.partition}
            for tp in sorted(assigned)
            if (shown := caller.shown(tp.topic)) is not None
        ]
        return _answer({"partitions": listed})


def _shown_names(caller: Caller, internal: Iterable[str]) -> list[str]:
    return [shown for name in internal if (shown := caller.shown(name)) is not None]


def _partitions(
    caller: Caller,
    document: dict[str, Any],
    key: str,
    *,
    offsets: bool = False,
    operation: AclOperation = Op.READ,
) -> list[tuple[TopicPartition, int]]:
    """The (partition, offset) pairs a body lists under `key`, each {topic, partition[,
    offset]}; `operation` on each topic (offset 0 when `offsets` is not asked)."""
    items = field(document, key, list)
    if items is None:
        raise RestError(UNPROCESSABLE, UNPROCESSABLE, f"the body needs a '{key}' list")
    found: list[tuple[TopicPartition, int]] = []
    for item in items:
        if not isinstance(item, dict):
            raise RestError(UNPROCESSABLE, UNPROCESSABLE, f"each of '{key}' must be an object")
        topic = field(item, "topic", str)
        partition = field(item, "partition", int)
        offset = field(item, "offset", int) if offsets else 0
        if topic is None or partition is None or offset is None:
            needed = "topic, partition and offset" if offsets else "topic and partition"
            raise RestError(UNPROCESSABLE, UNPROCESSABLE, f"each of '{key}' needs {needed}")
        caller.require(operation, TOPIC, topic)
        found.append((TopicPartition(caller.internal(topic), partition), offset))
    return found


async def _check_partitions(
    services: RestServices, caller: Caller, partitions: Iterable[tuple[TopicPartition, int]]
) -> None:
    """40401 / 40402 for a topic or partition the caller's org does not have."""
    counts: dict[str, int] = {}
    for tp, _ in partitions:
        if tp.topic not in counts:
            counts[tp.topic] = await _partition_count(services, caller, tp.topic)
        if not 0 <= tp.partition < counts[tp.topic]:
            raise partition_not_found(caller.shown(tp.topic) or tp.topic, tp.partition)


async def _partition_count(services: RestServices, caller: Caller, internal: str) -> int:
    """The partitions of the caller's topic `internal`; 40401 when its org has no such topic."""
    shown = caller.shown(internal) or internal
    try:
        return (await services.admin.topic(internal)).partition_count
    except UnknownTopicOrPartition:
        raise topic_not_found(shown) from None
    except StreamHouseError as error:
        raise engine_refusal(error, shown) from None


def _position_routes(app: FastAPI, services: RestServices) -> None:
    @app.post(INSTANCE_PATH + "/positions", tags=["v2 consumers"], summary="Seek to offsets")
    async def seek(request: Request, group: str, instance: str) -> Response:
        caller, found = _target(services, request, group, instance)
        offsets = _partitions(caller, await _document(request), "offsets", offsets=True)
        with _refused():
            for tp, offset in offsets:
                await found.seek(tp, offset)
        return _no_content()

    for where in ("beginning", "end"):
        _seek_to_route(app, services, where)


def _seek_to_route(app: FastAPI, services: RestServices, where: str) -> None:
    @app.post(
        f"{INSTANCE_PATH}/positions/{where}", tags=["v2 consumers"], summary=f"Seek to the {where}"
    )
    async def seek_to(request: Request, group: str, instance: str) -> Response:
        caller, found = _target(services, request, group, instance)
        partitions = [tp for tp, _ in _partitions(caller, await _document(request), "partitions")]
        with _refused():
            if where == "beginning":
                await found.seek_to_beginning(partitions)
            else:
                await found.seek_to_end(partitions)
        return _no_content()


def _require_assigned_topics(caller: Caller, instance: ConsumerInstance) -> None:
    """READ on every topic the instance reads now or may be assigned while a read waits (ACLs
    may have changed since it joined): Kafka's Fetch asks READ on each topic it reads."""
    with _refused():
        topics = {tp.topic for tp in instance.assignments()} | instance.subscription()
        for topic in topics:
            caller.require(Op.READ, TOPIC, caller.shown(topic) or topic)


def _accepted(request: Request, instance: ConsumerInstance) -> EmbeddedFormat:
    """The instance's format, refused 406/40601 when Accept names another embedded format."""
    fmt = EmbeddedFormat(instance.config.embedded_format)
    for part in request.headers.get("accept", "").split(","):
        media = part.split(";")[0].strip().lower()
        if media.startswith(ACCEPT_PREFIX) and media.endswith(ACCEPT_SUFFIX):
            if media != f"{ACCEPT_PREFIX}{fmt.value}{ACCEPT_SUFFIX}":
                raise RestError(
                    406,
                    CONSUMER_FORMAT_MISMATCH,
                    "The requested embedded data format does not match the deserializer for "
                    f"this consumer instance ({fmt.value})",
                )
            return fmt
    return fmt  # no embedded format asked (none, */*, application/json): the instance's


def _records_route(app: FastAPI, services: RestServices) -> None:
    @app.get(INSTANCE_PATH + "/records", tags=["v2 consumers"], summary="Read records")
    async def records(
        request: Request,
        group: str,
        instance: str,
        timeout: int | None = None,
        max_bytes: int = RECORDS_BYTES_MAX,
    ) -> JSONResponse:
        caller, found = _target(services, request, group, instance)
        fmt = _accepted(request, found)
        _require_assigned_topics(caller, found)
        with _refused():
            read = await found.records(timeout, max_bytes)
        body = await _records_of(services, caller, fmt, read)
        return _answer(body, f"{ACCEPT_PREFIX}{fmt.value}{ACCEPT_SUFFIX}")


async def _records_of(
    services: RestServices,
    caller: Caller,
    fmt: EmbeddedFormat,
    read: list[tuple[str, ConsumedRecord]],
) -> list[Any]:
    """The records of one answer with keys and values in the instance's format (the schema
    formats decoded through the registry, each schema id's visibility asked once)."""
    visible = visible_schemas(caller.org)
    return [
        {
            "topic": caller.shown(topic),
            "key": await decode(services, caller.org, fmt, record.key, visible),
            "value": await decode(services, caller.org, fmt, record.value, visible),
            "partition": record.partition,
            "offset": record.offset,
        }
        for topic, record in read
    ]


def _offset_routes(app: FastAPI, services: RestServices) -> None:
    @app.post(INSTANCE_PATH + "/offsets", tags=["v2 consumers"], summary="Commit offsets")
    async def commit(request: Request, group: str, instance: str) -> Response:
        caller, found = _target(services, request, group, instance)
        document = await _document(request, required=False)
        wanted = None
        if document.get("offsets") is not None:  # metadata is not kept (the engine takes none)
            wanted = dict(_partitions(caller, document, "offsets", offsets=True))
        else:
            _require_assigned_topics(caller, found)
        with _refused():
            await found.commit(wanted)
        return _no_content()

    @app.get(INSTANCE_PATH + "/offsets", tags=["v2 consumers"], summary="Committed offsets")
    async def committed(request: Request, group: str, instance: str) -> JSONResponse:
        caller, found = _target(services, request, group, instance)
        caller.require(Op.DESCRIBE, GROUP, group)
        document = await _document(request)
        partitions = _partitions(caller, document, "partitions", operation=Op.DESCRIBE)
        with _refused():
            offsets = await found.committed([tp for tp, _ in partitions])
        listed = [
            {
                "topic": caller.shown(tp.topic),
                "partition": tp.partition,
                "offset": at,
                "metadata": "",
            }
            for tp, at in sorted(offsets.items())
        ]
        return _answer({"offsets": listed})
