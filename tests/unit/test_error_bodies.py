"""A request failed as a whole is answered per item, as Kafka's brokers do: for every API
and version the agent serves, a request naming two items at every level (distinct names and
indexes, built from its kio schema) gets back each item with its identity and the code."""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from typing import Any, get_args, get_origin

import pytest
from kio.schema.errors import ErrorCode as KioErrorCode
from kio.serial import entity_reader

from streamhouse.errors import ErrorCode
from streamhouse.kafka import codec
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.error_bodies import error_body
from streamhouse.server.kafka_listener import advertised_apis

CODE = ErrorCode.TOPIC_AUTHORIZATION_FAILED
ITEMS_PER_ARRAY = 2
INT8_MAX = 127
IDENTITY = frozenset(
    {
        *("name", "topic", "topic_id", "topic_name", "user", "key", "producer_id"),
        *("partition", "partition_index", "partition_id", "index"),
        *("resource_type", "resource_name", "entity_type", "entity_name"),
        *("group_id", "member_id", "group_instance_id", "transactional_id"),
    }
)
"""Fields naming the item they are in (Kafka's answers match requests by these)."""
PLAIN_KINDS = frozenset({"string", "int8", "int32", "int64", "uuid"})

NOT_ANSWERED_PER_ITEM: dict[ApiKey, frozenset[str]] = {
    # what the request carries that is no item to answer (Kafka answers none of it either)
    ApiKey.FETCH: frozenset({"forgotten_topics_data", "forgotten_topics_data.partitions"}),
    ApiKey.JOIN_GROUP: frozenset({"protocols"}),
    ApiKey.SYNC_GROUP: frozenset({"assignments"}),
    ApiKey.LIST_GROUPS: frozenset({"states_filter", "types_filter"}),
    ApiKey.CREATE_TOPICS: frozenset(
        {"topics.assignments", "topics.assignments.broker_ids", "topics.configs"}
    ),
    ApiKey.CREATE_ACLS: frozenset({"creations"}),  # results carry no names: counted below
    ApiKey.DESCRIBE_CONFIGS: frozenset({"resources.configuration_keys"}),
    ApiKey.ALTER_CONFIGS: frozenset({"resources.configs"}),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: frozenset({"resources.configs"}),
    ApiKey.CREATE_PARTITIONS: frozenset({"topics.assignments.broker_ids"}),
    ApiKey.ALTER_PARTITION_REASSIGNMENTS: frozenset({"topics.partitions.replicas"}),
    # answered with the top-level code only, as Kafka does: the answer lists log dirs
    ApiKey.DESCRIBE_LOG_DIRS: frozenset({"topics", "topics.partitions"}),
    ApiKey.LIST_TRANSACTIONS: frozenset({"state_filters", "producer_id_filters"}),
    ApiKey.DESCRIBE_CLIENT_QUOTAS: frozenset({"components"}),  # a filter: answered with none
    ApiKey.ALTER_CLIENT_QUOTAS: frozenset({"entries.ops"}),  # the changes asked, not items
}
COUNTED = {
    ApiKey.CREATE_ACLS: ("results", "creations"),
    ApiKey.DELETE_ACLS: ("filter_results", "filters"),
}
"""Answers matched to requests by position: the same number of items."""


def served() -> list[tuple[ApiKey, int]]:
    return [
        (api.key, version)
        for api in advertised_apis(sasl=True)
        for version in range(api.served_min, api.max_version + 1)
    ]


# ---------------------------------------------------------------- the request


def two_of_everything(entity: type[Any], numbers: Iterator[int]) -> Any:
    """`entity` with two items in every array (nested too) and a distinct value in every
    plain field of an item; the top level's plain fields empty."""
    return _build(entity, numbers, in_item=False)


def _build(entity: type[Any], numbers: Iterator[int], in_item: bool) -> Any:
    values: dict[str, Any] = {}
    for field in fields(entity):
        inner = codec.is_optional(field.type)[1]
        kind = field.metadata.get("kafka_type", "")
        if get_origin(inner) is tuple:
            item = get_args(inner)[0]
            values[field.name] = tuple(
                _build(item, numbers, True) if is_dataclass(item) else _plain(kind, numbers)
                for _ in range(ITEMS_PER_ARRAY)
            )
        elif is_dataclass(inner):
            values[field.name] = _build(inner, numbers, in_item)
        elif in_item and field.name in IDENTITY and kind in PLAIN_KINDS:
            values[field.name] = _plain(kind, numbers)
    return codec.default_entity(entity, KioErrorCode.none, values)


def _plain(kind: str, numbers: Iterator[int]) -> object:
    number = next(numbers)
    assert number <= INT8_MAX, "too many values for an int8 to stay distinct"
    if kind == "string":
        return f"item-{number}"
    if kind == "uuid":
        return uuid.UUID(int=number)
    return number


# ---------------------------------------------------------------- what names what


Named = tuple[str, frozenset[object], tuple[frozenset[object], ...]]
"""(array path, an item's identity values, the identity values of the items enclosing it)."""


def named(body: Any, path: str = "", chain: tuple[frozenset[object], ...] = ()) -> Iterator[Named]:
    """Every item naming something in `body`'s arrays, with where it sits."""
    for field in fields(body):
        items = getattr(body, field.name)
        if not isinstance(items, tuple):
            continue
        where = f"{path}{field.name}"
        for item in items:
            if not is_dataclass(item):
                yield where, frozenset({item}), chain
                continue
            own = frozenset(_identity_values(item))
            if own:
                yield where, own, chain
            yield from named(item, f"{where}.", chain + ((own,) if own else ()))


def _identity_values(item: Any) -> Iterator[object]:
    for field in fields(item):
        value = getattr(item, field.name)
        if field.name in IDENTITY and value not in (None, "", 0, uuid.UUID(int=0)):
            yield value


def error_codes(body: Any) -> Iterator[KioErrorCode]:
    for field in fields(body):
        value = getattr(body, field.name)
        if field.metadata.get("kafka_type") == "error_code":
            yield value
        for item in value if isinstance(value, tuple) else (value,):
            if is_dataclass(item):
                yield from error_codes(item)


# ---------------------------------------------------------------- the property


@pytest.mark.parametrize(("api_key", "version"), served())
def test_every_item_asked_is_answered_with_the_code(api_key: ApiKey, version: int) -> None:
    request = two_of_everything(codec.request_schema(api_key, version), itertools.count(1))
    response = error_body(api_key, version, request, CODE)
    encoded = codec.encode_body(response)
    decoded, size = entity_reader(type(response))(encoded, 0)
    assert (decoded, size) == (response, len(encoded))
    assert set(error_codes(response)) <= {KioErrorCode(int(CODE))}
    answered = assert_answers_name_what_was_asked(request, response)
    skipped = NOT_ANSWERED_PER_ITEM.get(api_key, frozenset())
    unanswered = [
        (where, own)
        for where, own, _ in named(request)
        if where not in skipped and not own & answered
    ]
    assert not unanswered


def assert_answers_name_what_was_asked(request: Any, response: Any) -> set[object]:
    """Each answer names one asked item, once, under the items it was asked under; returns
    the identity values answered."""
    asked = {value: (own, chain) for _, own, chain in named(request) for value in own}
    answers = list(named(response))
    times = Counter(value for _, own, _ in answers for value in own)
    assert set(times.values()) <= {1}, answers
    for where, own, chain in answers:
        asked_own, asked_under = asked[next(iter(own))]
        assert own <= asked_own and len(chain) == len(asked_under), (where, own)
        pairs = zip(chain, asked_under, strict=True)
        assert all(ours <= theirs for ours, theirs in pairs), (where, own)
    return set(times)


def test_answers_matched_by_position_come_one_per_item() -> None:
    for api_key, (answers, asks) in COUNTED.items():
        for version in (v for k, v in served() if k == api_key):
            request = two_of_everything(codec.request_schema(api_key, version), itertools.count(1))
            response = error_body(api_key, version, request, CODE)
            assert len(getattr(response, answers)) == len(getattr(request, asks)) == 2


def test_a_null_array_asking_for_everything_is_answered_empty() -> None:
    schema = codec.request_schema(ApiKey.OFFSET_FETCH, 7)
    request = codec.default_entity(schema, KioErrorCode.none, {"group_id": "g", "topics": None})
    response: Any = error_body(ApiKey.OFFSET_FETCH, 7, request, CODE)
    assert response.topics == () and response.error_code == KioErrorCode(int(CODE))


def test_a_refused_fetch_answers_each_partition_with_empty_records_not_null() -> None:
    for version in (v for k, v in served() if k == ApiKey.FETCH):
        request = two_of_everything(codec.request_schema(ApiKey.FETCH, version), itertools.count(1))
        response: Any = error_body(ApiKey.FETCH, version, request, CODE)
        partitions = [p for topic in response.responses for p in topic.partitions]
        assert partitions and all(p.records == b"" for p in partitions), version
