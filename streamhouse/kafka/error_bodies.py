"""The response Kafka sends for a request failed as a whole (each API's `getErrorResponse`).

Every item the request names (topics, partitions, config resources, groups, transactional
ids...) is answered with the error, carrying its identity fields, nested arrays too; the
top-level error code is set where the response has one; everything else is empty or zero.
Clients match answers to what they asked by item: an empty array is not an answer
(librdkafka: "Received 0 ConfigResources in response when 1 were requested").

One generic walk does it: a response array whose items carry an error code is answered
from the request array of the same name, unless `ECHOES` names another for that API.
Produce keeps its own path (its body is ours; v0..v2 are below kio's schemas).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, Field, dataclass, fields, is_dataclass, replace
from functools import cache
from types import MappingProxyType
from typing import Any, cast, get_args, get_origin

from kio.schema.errors import ErrorCode as KioErrorCode
from kio.static.protocol import ResponsePayload

from streamhouse.errors import ErrorCode
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.codec import (
    PRODUCE_LEGACY_VERSIONS,
    default_entity,
    is_optional,
    response_schema,
)
from streamhouse.kafka.sentinels import NO_OFFSET

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")


@dataclass(frozen=True, slots=True)
class Echo:
    """Where one response array's items come from in the request item answered."""

    sources: tuple[str, ...]
    """Request arrays, relative to the request item; a dotted path flattens nested arrays
    (`dirs.topics`); each present contributes its items in turn (null or absent: none)."""
    field: str = ""
    """The response field a plain request item (a name, an index) fills."""


IDENTITY_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "name": ("name",),
        "topic": ("topic",),
        "topic_id": ("topic_id",),
        "topic_name": ("topic_name", "name"),  # AlterReplicaLogDirs
        "index": ("index",),
        "partition": ("partition",),
        "partition_index": ("partition_index", "partition"),  # Fetch asks by `partition`
        "partition_id": ("partition_id",),
        "resource_type": ("resource_type",),
        "resource_name": ("resource_name",),
        "group_id": ("group_id",),
        "member_id": ("member_id",),
        "group_instance_id": ("group_instance_id",),
        "transactional_id": ("transactional_id",),
        "producer_id": ("producer_id",),
        "user": ("user", "name"),  # SCRAM credentials
        "entity_type": ("entity_type",),
        "entity_name": ("entity_name",),
    }
)
"""A response item's identity field → the request item's fields it is copied from, in order."""

_PARTITION_INDEXES = Echo(("partition_indexes",), "partition_index")
_INT_PARTITIONS = Echo(("partitions",), "partition_index")
ECHOES: Mapping[ApiKey, Mapping[str, Echo]] = MappingProxyType(
    {
        ApiKey.FETCH: {"responses": Echo(("topics",))},
        ApiKey.OFFSET_FETCH: {"partitions": _PARTITION_INDEXES},
        ApiKey.FIND_COORDINATOR: {"coordinators": Echo(("coordinator_keys",), "key")},
        ApiKey.DESCRIBE_GROUPS: {"groups": Echo(("groups",), "group_id")},
        ApiKey.DELETE_TOPICS: {"responses": Echo(("topic_names", "topics"), "name")},
        ApiKey.ADD_PARTITIONS_TO_TXN: {
            "results_by_topic_v3_and_below": Echo(("v3_and_below_topics",)),
            "results_by_transaction": Echo(("transactions",)),
            "topic_results": Echo(("topics",)),
            "results_by_partition": _INT_PARTITIONS,
        },
        ApiKey.WRITE_TXN_MARKERS: {"partitions": _PARTITION_INDEXES},
        ApiKey.CREATE_ACLS: {"results": Echo(("creations",))},
        ApiKey.DELETE_ACLS: {"filter_results": Echo(("filters",))},
        ApiKey.ALTER_CLIENT_QUOTAS: {"entries": Echo(("entries",)), "entity": Echo(("entity",))},
        ApiKey.DESCRIBE_CONFIGS: {"results": Echo(("resources",))},
        ApiKey.ALTER_CONFIGS: {"responses": Echo(("resources",))},
        ApiKey.ALTER_REPLICA_LOG_DIRS: {
            "results": Echo(("dirs.topics",)),
            "partitions": _INT_PARTITIONS,
        },
        ApiKey.CREATE_PARTITIONS: {"results": Echo(("topics",))},
        ApiKey.DELETE_GROUPS: {"results": Echo(("groups_names",), "group_id")},
        ApiKey.ELECT_LEADERS: {
            "replica_election_results": Echo(("topic_partitions",)),
            "partition_result": Echo(("partitions",), "partition_id"),
        },
        ApiKey.INCREMENTAL_ALTER_CONFIGS: {"responses": Echo(("resources",))},
        ApiKey.ALTER_PARTITION_REASSIGNMENTS: {"responses": Echo(("topics",))},
        ApiKey.LIST_PARTITION_REASSIGNMENTS: {  # no error per item, yet Kafka names them
            "topics": Echo(("topics",)),
            "partitions": _PARTITION_INDEXES,
        },
        ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS: {"results": Echo(("users",))},
        ApiKey.ALTER_USER_SCRAM_CREDENTIALS: {"results": Echo(("deletions", "upsertions"))},
        ApiKey.DESCRIBE_PRODUCERS: {"partitions": _PARTITION_INDEXES},
        ApiKey.DESCRIBE_TRANSACTIONS: {
            "transaction_states": Echo(("transactional_ids",), "transactional_id")
        },
    }
)
"""Per API, the response arrays answered from another request array than their namesake,
or answered though their items carry no error code."""


def error_body(
    api_key: int, api_version: int, request: Any, code: ErrorCode
) -> ResponsePayload | bytes:
    """The response to `request` failed as a whole with `code` (bytes for Produce v0..v2)."""
    error = KioErrorCode(int(code))
    if api_key == ApiKey.PRODUCE and api_version in PRODUCE_LEGACY_VERSIONS:
        return legacy_produce_error(request, code, api_version)
    schema = response_schema(api_key, api_version)
    if api_key == ApiKey.PRODUCE:
        return cast(ResponsePayload, _produce_error(schema, request, error))
    echoes = ECHOES.get(ApiKey(api_key), {})
    return cast(ResponsePayload, _answer(schema, request, error, echoes, identity=False))


# ---------------------------------------------------------------- the generic walk


def _answer(
    entity: type[Any], asked: Any, error: KioErrorCode, echoes: Mapping[str, Echo], identity: bool
) -> Any:
    """`entity` answering the request item `asked`: its item arrays echoed, its identity
    copied (not at the top level: JoinGroup's member_id there is the answer, not the ask)."""
    values: dict[str, Any] = {}
    for field in fields(entity):
        item = _item_entity(field)
        if item is not None and (field.name in echoes or _carries_error(item)):
            echo = echoes.get(field.name, Echo((field.name,)))
            values[field.name] = tuple(
                _answer_item(item, one, error, echoes, echo) for one in _asked_items(asked, echo)
            )
        elif field.metadata.get("kafka_type") == "error_code":  # kio's default may be NONE
            values[field.name] = error
        elif identity and field.name in IDENTITY_FIELDS:
            value = _identity(asked, IDENTITY_FIELDS[field.name], field)
            if value is not MISSING:
                values[field.name] = value
    return default_entity(entity, error, values)


def _answer_item(
    item: type[Any], asked: Any, error: KioErrorCode, echoes: Mapping[str, Echo], echo: Echo
) -> Any:
    if is_dataclass(asked):
        return _answer(item, asked, error, echoes, identity=True)
    answer = _answer(item, None, error, echoes, identity=False)  # a plain name or index
    return replace(answer, **{echo.field: asked})


def _asked_items(asked: Any, echo: Echo) -> Iterable[Any]:
    for source in echo.sources:
        level = [asked]
        for step in source.split("."):
            level = [one for parent in level for one in getattr(parent, step, None) or ()]
        yield from level


def _identity(asked: Any, names: tuple[str, ...], field: Field[Any]) -> Any:
    """The first of the request item's `names` it has; a null only where the response
    field is nullable (Metadata v10 asks by topic id with a null name, answers a string)."""
    for name in names:
        value = getattr(asked, name, MISSING)
        if value is not MISSING and (value is not None or is_optional(field.type)[0]):
            return value
    return MISSING


def _item_entity(field: Field[Any]) -> type | None:
    """The item class of an array-of-entities field; None for any other field."""
    inner = is_optional(field.type)[1]
    if get_origin(inner) is not tuple:
        return None
    item = get_args(inner)[0]
    return cast(type, item) if is_dataclass(item) else None


@cache
def _carries_error(entity: type) -> bool:
    """Whether `entity` or an item nested in it has an error code: an answer per item
    (CreateTopics' echoed configs, Metadata's brokers are data, not answers)."""
    for field in fields(entity):
        if field.metadata.get("kafka_type") == "error_code":
            return True
        item = _item_entity(field)
        if item is not None and _carries_error(item):
            return True
    return False


# ---------------------------------------------------------------- Produce


def _produce_error(schema: type[Any], request: Any, error: KioErrorCode) -> Any:
    """Every partition of the produce request answered with `error`."""
    topic_type = _array_item(schema, "responses")
    partition_type = _array_item(topic_type, "partition_responses")
    topics = tuple(
        default_entity(
            topic_type,
            error,
            _topic_identity(topic),
            partition_responses=tuple(
                default_entity(
                    partition_type, error, {"index": partition.index, "base_offset": NO_OFFSET}
                )
                for partition in topic.partition_data
            ),
        )
        for topic in request.topic_data
    )
    return default_entity(schema, error, {"responses": topics})


def _array_item(entity: type[Any], name: str) -> type[Any]:
    """The element class of the array field `name` of `entity`."""
    item = _item_entity(next(field for field in fields(entity) if field.name == name))
    assert item is not None, (entity, name)
    return item


def _topic_identity(topic: Any) -> dict[str, Any]:
    return {name: getattr(topic, name) for name in ("name", "topic_id") if hasattr(topic, name)}


def legacy_produce_error(request: Any, code: ErrorCode, api_version: int) -> bytes:
    """Produce v0..v2 response bytes: every partition gets `code` (kio has no such schema)."""
    parts = [_INT32.pack(len(request.topic_data))]
    for topic in request.topic_data:
        name = topic.name.encode()
        parts += [_INT16.pack(len(name)), name, _INT32.pack(len(topic.partition_data))]
        for partition in topic.partition_data:
            parts.append(struct.pack(">ihq", partition.index, int(code), NO_OFFSET))
            if api_version >= 2:
                parts.append(struct.pack(">q", -1))  # log_append_time
    if api_version >= 1:
        parts.append(_INT32.pack(0))  # throttle_time_ms
    return b"".join(parts)
