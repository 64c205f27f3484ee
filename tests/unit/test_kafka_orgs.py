"""The Kafka door's org view: its tables name real fields, every API that names a resource is
mapped, and the mapping scopes requests, unscopes answers and leaves other orgs' items out."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest
from kio.index import load_response_schema

from streamhouse.engine.acls import EVERYTHING, Grant
from streamhouse.errors import ErrorCode, InvalidTopic, StreamHouseError
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.codec import request_schema
from streamhouse.kafka.connection import Request
from streamhouse.log.topics import validate_topic_name
from streamhouse.server.kafka_acl_checks import NEEDS, check_request
from streamhouse.server.kafka_handlers import HANDLERS
from streamhouse.server.kafka_orgs import (
    ANSWER_NAMES,
    REQUEST_NAMES,
    NamePath,
    checked_open_request,
    scoped_request,
    unscoped_answer,
)
from streamhouse.tenancy.acls import AclOperation

VERSIONS_MAX = 20
# Request fields that name something other than an org's topic, group or transactional id
NOT_RESOURCES = {
    "client_software_name", "client_software_version", "topic_id", "configs.name",
    "configs.value", "configuration_keys", "group_instance_id", "protocols.name",
    "protocol_name", "protocol_type", "member_id", "reason", "committed_metadata",
    "cluster_id", "rack_id", "dirs.path",
}  # fmt: skip
# APIs whose names are not an org's resources: users, ACL bindings, quota entities (kept per
# org by their services), the cluster's own quorum
UNMAPPED = {
    ApiKey.API_VERSIONS, ApiKey.DESCRIBE_CLUSTER, ApiKey.DESCRIBE_QUORUM,
    ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, ApiKey.ALTER_USER_SCRAM_CREDENTIALS,
    ApiKey.CREATE_ACLS, ApiKey.DESCRIBE_ACLS, ApiKey.DELETE_ACLS, ApiKey.LIST_GROUPS,
    ApiKey.LIST_TRANSACTIONS, ApiKey.DESCRIBE_CLIENT_QUOTAS, ApiKey.ALTER_CLIENT_QUOTAS,
}  # fmt: skip


def _schemas(api_key: ApiKey, loader: Any) -> list[type]:
    found = []
    for version in range(VERSIONS_MAX):
        try:
            found.append(loader(api_key, version))
        except Exception:
            continue
    return found


def _has_path(schema: type, path: tuple[str, ...]) -> bool:
    hints = typing.get_type_hints(schema)
    if path[0] not in hints:
        return False
    if len(path) == 1:
        return True
    entity = _entity_of(hints[path[0]])
    return entity is not None and _has_path(entity, path[1:])


def _entity_of(hint: Any) -> type | None:
    candidates = [hint, *typing.get_args(hint)]
    for candidate in list(candidates):
        candidates.extend(typing.get_args(candidate))
    return next((c for c in candidates if dataclasses.is_dataclass(c)), None)


def _string_fields(schema: type, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    fields: set[tuple[str, ...]] = set()
    for name, hint in typing.get_type_hints(schema).items():
        if name.startswith("__"):  # kio's class attributes (the header schema)
            continue
        entity = _entity_of(hint)
        if entity is not None:
            fields |= _string_fields(entity, (*prefix, name))
        elif "str" in str(hint):
            fields.add((*prefix, name))
    return fields


@pytest.mark.parametrize(
    ("table", "loader"),
    [(REQUEST_NAMES, request_schema), (ANSWER_NAMES, load_response_schema)],
    ids=["requests", "answers"],
)
def test_every_path_names_a_field_of_some_version(
    table: dict[ApiKey, tuple[NamePath, ...]], loader: Any
) -> None:
    for api_key, paths in table.items():
        schemas = _schemas(api_key, loader)
        for name_path in paths:
            assert any(_has_path(s, name_path.path) for s in schemas), (api_key, name_path)


def test_every_served_request_naming_a_resource_is_mapped() -> None:
    """A served API whose request has a string field that is not known to be something else
    must be in the table: a new handler cannot slip past the org view."""
    for api_key in HANDLERS:
        if api_key in UNMAPPED:
            continue
        mapped = {p.path for p in REQUEST_NAMES.get(api_key, ())}
        for schema in _schemas(api_key, request_schema):
            for path in _string_fields(schema):
                dotted = ".".join(path)
                if any(dotted.endswith(other) for other in NOT_RESOURCES):
                    continue
                assert path in mapped, (api_key.name, dotted)


def _request(api_key: ApiKey, body: Any) -> Request:
    return Request(int(api_key), 0, 1, "test", body, 0, True, 0)


@dataclasses.dataclass(frozen=True)
class _Topic:
    name: str


@dataclasses.dataclass(frozen=True)
class _Body:
    group_id: str
    topics: tuple[_Topic, ...]


def test_requests_are_scoped_and_answers_unscoped() -> None:
    request = _request(ApiKey.OFFSET_COMMIT, _Body("g", (_Topic("a"), _Topic("b"))))
    scoped = scoped_request(request, "acme").body
    assert scoped == _Body("acme:g", (_Topic("acme:a"), _Topic("acme:b")))
    answer = {"topics": [{"name": "acme:a"}, {"name": "acme:b"}]}
    assert unscoped_answer(ApiKey.OFFSET_COMMIT, answer, "acme") == {
        "topics": [{"name": "a"}, {"name": "b"}]
    }


def test_answers_leave_other_orgs_items_out() -> None:
    listing = {"groups": [{"group_id": "acme:g"}, {"group_id": "g"}, {"group_id": "beta:g"}]}
    assert unscoped_answer(ApiKey.LIST_GROUPS, listing, "acme") == {"groups": [{"group_id": "g"}]}
    assert unscoped_answer(ApiKey.LIST_GROUPS, listing, "default") == {
        "groups": [{"group_id": "g"}]
    }


def test_the_default_org_may_not_name_another_orgs_resources() -> None:
    request = _request(ApiKey.OFFSET_COMMIT, _Body("acme:g", ()))
    with pytest.raises(StreamHouseError) as refused:
        scoped_request(request, "default")
    assert refused.value.code == ErrorCode.GROUP_AUTHORIZATION_FAILED


def test_config_resources_are_scoped_only_for_topics_and_groups() -> None:
    answer = {
        "results": [
            {"resource_type": 2, "resource_name": "acme:t"},
            {"resource_type": 4, "resource_name": "1"},
        ]
    }
    assert unscoped_answer(ApiKey.DESCRIBE_CONFIGS, answer, "acme")["results"] == [
        {"resource_type": 2, "resource_name": "t"},
        {"resource_type": 4, "resource_name": "1"},
    ]


@pytest.mark.parametrize("name", ["acme:orders", "orders", "a.b_c-d"])
def test_internal_topic_names_are_legal(name: str) -> None:
    validate_topic_name(name)


@pytest.mark.parametrize("name", ["acme:b:c", "Acme:orders", "acme:", "acme:" + "x" * 250])
def test_an_orgs_topic_name_follows_kafkas_rules(name: str) -> None:
    with pytest.raises(InvalidTopic):
        validate_topic_name(name)


@dataclasses.dataclass(frozen=True)
class _CreateTopics:
    topics: tuple[_Topic, ...]


def test_an_open_door_refuses_creating_a_topic_named_like_an_orgs() -> None:
    request = _request(ApiKey.CREATE_TOPICS, _CreateTopics((_Topic("ok"), _Topic("acme:t"))))
    with pytest.raises(StreamHouseError) as refused:
        checked_open_request(request)
    assert refused.value.code == ErrorCode.INVALID_TOPIC_EXCEPTION
    fine = _request(ApiKey.CREATE_TOPICS, _CreateTopics((_Topic("ok"),)))
    assert checked_open_request(fine) is fine


# FindCoordinator only locates the coordinator (this agent); Kafka asks DESCRIBE there
NEEDS_NOTHING = {ApiKey.FIND_COORDINATOR}


def test_every_api_naming_resources_says_what_its_acls_must_allow() -> None:
    for api_key, paths in REQUEST_NAMES.items():
        if api_key in NEEDS_NOTHING:
            continue
        needs = NEEDS[api_key]
        for name_path in paths:
            assert needs.cluster or needs.on(name_path.kind), (api_key.name, name_path)


def test_a_tenant_is_never_granted_the_operators_cluster_operations() -> None:
    tenant_admin = Grant(everything=True, tenant=True)
    assert not tenant_admin.allows_on_cluster(AclOperation.ALTER)
    assert not tenant_admin.allows_on_cluster(AclOperation.CLUSTER_ACTION)
    assert tenant_admin.allows_on_cluster(AclOperation.DESCRIBE)
    assert EVERYTHING.allows_on_cluster(AclOperation.ALTER)
    request = _request(ApiKey.ELECT_LEADERS, _ElectLeaders(None))
    with pytest.raises(StreamHouseError) as refused:
        check_request(request, tenant_admin)
    assert refused.value.code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    check_request(request, EVERYTHING)


@dataclasses.dataclass(frozen=True)
class _ElectLeaders:
    topic_partitions: tuple[Any, ...] | None
