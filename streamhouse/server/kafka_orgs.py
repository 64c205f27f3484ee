"""The Kafka door's org view: the names in an authenticated principal's request mapped into its
org, the names in the answer mapped back, and other orgs' resources left out of the answer.

Handlers and the engine see internal names only (`tenancy.names.scoped`: `acme:orders` is org
acme's topic `orders`; the default org's names are bare). A table says, per API, where a request
and its answer name topics, groups and transactional ids; the mapping walks those paths in
the decoded request (kio's frozen entities) and in the answer values (dicts). An answer item
naming another org's resource (a listing: Metadata for every topic, ListGroups, …) is dropped.

Only authenticated connections are mapped: with authentication off every client is the
default org's and requests pass exactly as before tenancy. The one answer given in wire form,
Fetch's, maps its topic names in its handler (`answer_topic`).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from streamhouse.errors import ErrorCode, StreamHouseError
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.connection import Request
from streamhouse.server.kafka_context import PRINCIPAL, Values
from streamhouse.tenancy.names import DEFAULT_ORG, org_of, scoped, unscoped


class Kind(enum.Enum):
    """What a name in a request names, by the code refusing a name that is another org's:
    not authorized, whether or not that org has such a resource."""

    TOPIC = ErrorCode.TOPIC_AUTHORIZATION_FAILED
    GROUP = ErrorCode.GROUP_AUTHORIZATION_FAILED
    TRANSACTIONAL_ID = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


# DescribeConfigs and (Incremental)AlterConfigs name topics and groups beside brokers.
CONFIG_RESOURCE_TOPIC = 2
CONFIG_RESOURCE_GROUP = 32


@dataclass(frozen=True)
class NamePath:
    """Where a message names a resource: field names from the top, arrays walked through."""

    path: tuple[str, ...]
    kind: Kind = Kind.TOPIC
    # Only when this field of the entity holding the name has one of these values
    only_when: tuple[str, frozenset[int]] | None = None


def _topics(*dotted: str) -> tuple[NamePath, ...]:
    return tuple(NamePath(tuple(d.split("."))) for d in dotted)


def _groups(*dotted: str) -> tuple[NamePath, ...]:
    return tuple(NamePath(tuple(d.split(".")), Kind.GROUP) for d in dotted)


def _transactional_ids(*dotted: str) -> tuple[NamePath, ...]:
    return tuple(NamePath(tuple(d.split(".")), Kind.TRANSACTIONAL_ID) for d in dotted)


def _config_resources(field: str) -> tuple[NamePath, ...]:
    """The topics and groups among config resources (brokers are the cluster's)."""
    path = (field, "resource_name")
    return (
        NamePath(path, Kind.TOPIC, ("resource_type", frozenset({CONFIG_RESOURCE_TOPIC}))),
        NamePath(path, Kind.GROUP, ("resource_type", frozenset({CONFIG_RESOURCE_GROUP}))),
    )


# FindCoordinator's keys are groups or transactional ids: both scoped alike, refused alike.
_COORDINATOR_KEYS = _groups("key", "coordinator_keys")

REQUEST_NAMES: Mapping[ApiKey, tuple[NamePath, ...]] = {
    ApiKey.METADATA: _topics("topics.name"),
    ApiKey.PRODUCE: _topics("topic_data.name") + _transactional_ids("transactional_id"),
    ApiKey.FETCH: _topics("topics.topic", "forgotten_topics_data.topic"),
    ApiKey.LIST_OFFSETS: _topics("topics.name"),
    ApiKey.DESCRIBE_PRODUCERS: _topics("topics.name"),
    ApiKey.CREATE_TOPICS: _topics("topics.name"),
    ApiKey.OFFSET_FOR_LEADER_EPOCH: _topics("topics.topic"),
    ApiKey.DELETE_RECORDS: _topics("topics.name"),
    ApiKey.DELETE_TOPICS: _topics("topics.name", "topic_names"),
    ApiKey.DESCRIBE_CONFIGS: _config_resources("resources"),
    ApiKey.ALTER_CONFIGS: _config_resources("resources"),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: _config_resources("resources"),
    ApiKey.CREATE_PARTITIONS: _topics("topics.name"),
    ApiKey.FIND_COORDINATOR: _COORDINATOR_KEYS,
    ApiKey.JOIN_GROUP: _groups("group_id"),
    ApiKey.SYNC_GROUP: _groups("group_id"),
    ApiKey.HEARTBEAT: _groups("group_id"),
    ApiKey.LEAVE_GROUP: _groups("group_id"),
    ApiKey.OFFSET_COMMIT: _groups("group_id") + _topics("topics.name"),
    ApiKey.OFFSET_FETCH: _groups("group_id", "groups.group_id")
    + _topics("topics.name", "groups.topics.name"),
    ApiKey.DESCRIBE_GROUPS: _groups("groups"),
    ApiKey.DELETE_GROUPS: _groups("groups_names"),
    ApiKey.OFFSET_DELETE: _groups("group_id") + _topics("topics.name"),
    ApiKey.ELECT_LEADERS: _topics("topic_partitions.topic"),
    ApiKey.DESCRIBE_LOG_DIRS: _topics("topics.topic"),
    ApiKey.ALTER_REPLICA_LOG_DIRS: _topics("dirs.topics.name"),
    ApiKey.LIST_PARTITION_REASSIGNMENTS: _topics("topics.name"),
    ApiKey.ALTER_PARTITION_REASSIGNMENTS: _topics("topics.name"),
    ApiKey.DESCRIBE_TOPIC_PARTITIONS: _topics("topics.name", "cursor.topic_name"),
    ApiKey.INIT_PRODUCER_ID: _transactional_ids("transactional_id"),
    ApiKey.ADD_PARTITIONS_TO_TXN: _transactional_ids(
        "v3_and_below_transactional_id", "transactions.transactional_id"
    )
    + _topics("v3_and_below_topics.name", "transactions.topics.name"),
    ApiKey.ADD_OFFSETS_TO_TXN: _transactional_ids("transactional_id") + _groups("group_id"),
    ApiKey.END_TXN: _transactional_ids("transactional_id"),
    ApiKey.TXN_OFFSET_COMMIT: _transactional_ids("transactional_id")
    + _groups("group_id")
    + _topics("topics.name"),
    ApiKey.WRITE_TXN_MARKERS: _topics("markers.topics.name"),
    ApiKey.DESCRIBE_TRANSACTIONS: _transactional_ids("transactional_ids"),
}

ANSWER_NAMES: Mapping[ApiKey, tuple[NamePath, ...]] = {
    ApiKey.METADATA: _topics("topics.name"),
    ApiKey.PRODUCE: _topics("responses.name"),
    ApiKey.LIST_OFFSETS: _topics("topics.name"),
    ApiKey.DESCRIBE_PRODUCERS: _topics("topics.name"),
    ApiKey.CREATE_TOPICS: _topics("topics.name"),
    ApiKey.OFFSET_FOR_LEADER_EPOCH: _topics("topics.topic"),
    ApiKey.DELETE_RECORDS: _topics("topics.name"),
    ApiKey.DELETE_TOPICS: _topics("responses.name"),
    ApiKey.DESCRIBE_CONFIGS: _config_resources("results"),
    ApiKey.ALTER_CONFIGS: _config_resources("responses"),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: _config_resources("responses"),
    ApiKey.CREATE_PARTITIONS: _topics("results.name"),
    ApiKey.FIND_COORDINATOR: _groups("coordinators.key"),
    ApiKey.OFFSET_COMMIT: _topics("topics.name"),
    ApiKey.OFFSET_FETCH: _topics("topics.name", "groups.topics.name") + _groups("groups.group_id"),
    ApiKey.DESCRIBE_GROUPS: _groups("groups.group_id"),
    ApiKey.LIST_GROUPS: _groups("groups.group_id"),
    ApiKey.DELETE_GROUPS: _groups("results.group_id"),
    ApiKey.OFFSET_DELETE: _topics("topics.name"),
    ApiKey.ELECT_LEADERS: _topics("replica_election_results.topic"),
    ApiKey.DESCRIBE_LOG_DIRS: _topics("results.topics.name"),
    ApiKey.ALTER_REPLICA_LOG_DIRS: _topics("results.topic_name"),
    ApiKey.LIST_PARTITION_REASSIGNMENTS: _topics("topics.name"),
    ApiKey.ALTER_PARTITION_REASSIGNMENTS: _topics("responses.name"),
    ApiKey.DESCRIBE_TOPIC_PARTITIONS: _topics("topics.name", "next_cursor.topic_name"),
    ApiKey.ADD_PARTITIONS_TO_TXN: _topics(
        "results_by_topic_v3_and_below.name", "results_by_transaction.topic_results.name"
    )
    + _transactional_ids("results_by_transaction.transactional_id"),
    ApiKey.TXN_OFFSET_COMMIT: _topics("topics.name"),
    ApiKey.WRITE_TXN_MARKERS: _topics("markers.topics.name"),
    ApiKey.DESCRIBE_TRANSACTIONS: _transactional_ids("transaction_states.transactional_id")
    + _topics("transaction_states.topics.topic"),
    ApiKey.LIST_TRANSACTIONS: _transactional_ids("transaction_states.transactional_id"),
}


class _Gone:
    """Marks an answer item that names another org's resource."""


_GONE = _Gone()
Rename = Callable[[str, Kind], str | None]


def principal_org() -> str | None:
    """The org of the connection's principal; None when the connection is not authenticated
    (authentication off: names pass as they are)."""
    principal = PRINCIPAL.get()
    return None if principal is None else principal.org


def scoped_request(request: Request, org: str) -> Request:
    """`request` with the names it gives in `org`'s internal form. A name the default org may
    not use (one that reads as another org's) is refused with its kind's error code."""
    paths = REQUEST_NAMES.get(ApiKey(request.api_key), ())
    if not paths:
        return request

    def inward(name: str, kind: Kind) -> str:
        try:
            return scoped(org, name)
        except ValueError as error:
            raise StreamHouseError(
                f"{name!r} names a resource of another org: {error}", kind.value
            ) from None

    return dataclasses.replace(request, body=_renamed(request.body, paths, inward))


# The requests that bring topics into being: at a door without authentication no name of
# another org's form may, as Kafka's own rules refuse ':' in topic names.
OPEN_DOOR_CHECKED = frozenset({ApiKey.METADATA, ApiKey.CREATE_TOPICS})


def checked_open_request(request: Request) -> Request:
    """`request` as an unauthenticated connection sent it, refused (INVALID_TOPIC_EXCEPTION)
    when it would create a topic named like another org's."""
    if request.api_key not in OPEN_DOOR_CHECKED:
        return request

    def as_kafka_names(name: str, kind: Kind) -> str:
        if org_of(name) != DEFAULT_ORG:
            raise StreamHouseError(
                f"topic name {name!r} may only hold ASCII letters, digits, '.', '_', '-'",
                ErrorCode.INVALID_TOPIC_EXCEPTION,
            )
        return name

    _renamed(request.body, REQUEST_NAMES[ApiKey(request.api_key)], as_kafka_names)
    return request


def unscoped_answer(api_key: int, values: Values, org: str) -> Values:
    """The answer's names as `org` knows them; items naming another org's resources left out."""
    paths = ANSWER_NAMES.get(ApiKey(api_key), ())
    if not paths:
        return values
    renamed: Values = _renamed(values, paths, lambda name, _: unscoped(org, name))
    return renamed


def answer_topic(internal: str) -> str | None:
    """The name an answer in wire form gives a topic: the principal's name for it, None when it
    is another org's (never answered); unchanged for an unauthenticated connection."""
    org = principal_org()
    return internal if org is None else unscoped(org, internal)


def is_visible(internal: str) -> bool:
    """Whether the connection's principal may know of the resource at all."""
    return answer_topic(internal) is not None


def request_names(request: Request) -> Iterator[tuple[str, Kind]]:
    """Every resource name the request gives, with its kind, as the client gave it."""
    for name_path in REQUEST_NAMES.get(ApiKey(request.api_key), ()):
        for name in _names(request.body, name_path.path, name_path):
            yield name, name_path.kind


def _names(node: Any, path: tuple[str, ...], name_path: NamePath) -> Iterator[str]:
    if isinstance(node, (tuple, list)):
        for item in node:
            yield from _names(item, path, name_path)
        return
    if not path:
        if isinstance(node, str):
            yield node
        return
    value = _field(node, path[0])
    if value is not None and (len(path) > 1 or _applies(node, name_path)):
        yield from _names(value, path[1:], name_path)


def kept_answer(api_key: int, values: Values, keep: Callable[[str, Kind], bool]) -> Values:
    """The answer without the items whose names `keep` refuses."""
    kept: Values = _renamed(
        values,
        ANSWER_NAMES.get(ApiKey(api_key), ()),
        lambda name, kind: name if keep(name, kind) else None,
    )
    return kept


def _renamed(root: Any, paths: tuple[NamePath, ...], rename: Rename) -> Any:
    for name_path in paths:
        mapped = _mapped(root, name_path.path, name_path, rename)
        if mapped is _GONE:  # a lone item (a cursor) naming another org's: answered as none
            mapped = _with(root, name_path.path[0], None)
        root = mapped
    return root


def _mapped(node: Any, path: tuple[str, ...], name_path: NamePath, rename: Rename) -> Any:
    """`node` with the names at `path` below it renamed; _GONE when the name `node` is, or
    holds directly, has no name in the org (its array leaves it out)."""
    if isinstance(node, (tuple, list)):
        items = [_mapped(item, path, name_path, rename) for item in node]
        kept = [item for item in items if item is not _GONE]
        return tuple(kept) if isinstance(node, tuple) else kept
    if not path:
        if not isinstance(node, str):
            return node
        renamed = rename(node, name_path.kind)
        return _GONE if renamed is None else renamed
    field, rest = path[0], path[1:]
    value = _field(node, field)
    if value is None:
        return node
    if not rest and not _applies(node, name_path):
        return node
    mapped = _mapped(value, rest, name_path, rename)
    if mapped is _GONE:
        return _GONE
    return _with(node, field, mapped)


def _applies(node: Any, name_path: NamePath) -> bool:
    if name_path.only_when is None:
        return True
    field, values = name_path.only_when
    return _field(node, field) in values


def _field(node: Any, field: str) -> Any:
    if isinstance(node, dict):
        return node.get(field)
    return getattr(node, field, None)


def _with(node: Any, field: str, value: Any) -> Any:
    if isinstance(node, dict):
        return {**node, field: value}
    return dataclasses.replace(node, **{field: value})
