"""What each Kafka API asks of the principal's ACLs, checked at the door before the handler.

Kafka's own requirements per API (its KafkaApis): Produce writes its topics, Fetch reads them,
a consumer group is read by its members, a transactional id is written by its producer, and
so on. A request naming any resource its principal may not use is refused whole, with that
resource kind's AUTHORIZATION_FAILED code (Kafka splits such answers per item; a refusal of the
whole request changes nothing either). Listings (Metadata for every topic, ListGroups,
ListTransactions, OffsetFetch of every topic) leave out what the principal may not DESCRIBE.
Org admins and unauthenticated connections (authentication off) are granted everything
(engine/acls.py `Grant`), except that no principal of an org but the default one (the
operators') may alter the cluster: elect leaders, reassign partitions, write transaction
markers, alter the agents' configs. The names checked are the org's own: bindings are kept per org.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from streamhouse.engine.acls import Grant
from streamhouse.errors import ErrorCode, StreamHouseError
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.connection import Request
from streamhouse.kafka.sentinels import AUTHORIZED_OPERATIONS_OMITTED
from streamhouse.server.kafka_context import Values
from streamhouse.server.kafka_orgs import Kind, kept_answer, request_names
from streamhouse.tenancy.acls import AclOperation, ResourceType
from streamhouse.tenancy.names import scoped

Op = AclOperation
RESOURCE_TYPES = {
    Kind.TOPIC: ResourceType.TOPIC,
    Kind.GROUP: ResourceType.GROUP,
    Kind.TRANSACTIONAL_ID: ResourceType.TRANSACTIONAL_ID,
}
# DescribeConfigs and (Incremental)AlterConfigs name brokers as config resources of these
# types: the cluster's configs
CONFIG_RESOURCES_OF_THE_CLUSTER = frozenset({4, 8})  # BROKER, BROKER_LOGGER


@dataclass(frozen=True)
class Needs:
    """The operations a request needs on the resources it names, and on the cluster."""

    topic: AclOperation | None = None
    group: AclOperation | None = None
    transactional_id: AclOperation | None = None
    cluster: AclOperation | None = None
    # CreateTopics: CREATE on the cluster grants it for every topic
    cluster_instead_of_topic: AclOperation | None = None

    def on(self, kind: Kind) -> AclOperation | None:
        if kind is Kind.TOPIC:
            return self.topic
        return self.group if kind is Kind.GROUP else self.transactional_id


NEEDS: dict[ApiKey, Needs] = {
    ApiKey.METADATA: Needs(topic=Op.DESCRIBE),
    ApiKey.PRODUCE: Needs(topic=Op.WRITE, transactional_id=Op.WRITE),
    ApiKey.FETCH: Needs(topic=Op.READ),
    ApiKey.LIST_OFFSETS: Needs(topic=Op.DESCRIBE),
    ApiKey.DESCRIBE_PRODUCERS: Needs(topic=Op.READ),
    ApiKey.CREATE_TOPICS: Needs(topic=Op.CREATE, cluster_instead_of_topic=Op.CREATE),
    ApiKey.OFFSET_FOR_LEADER_EPOCH: Needs(topic=Op.DESCRIBE),
    ApiKey.DELETE_RECORDS: Needs(topic=Op.DELETE),
    ApiKey.DELETE_TOPICS: Needs(topic=Op.DELETE),
    ApiKey.DESCRIBE_CONFIGS: Needs(topic=Op.DESCRIBE_CONFIGS, group=Op.DESCRIBE_CONFIGS),
    ApiKey.ALTER_CONFIGS: Needs(topic=Op.ALTER_CONFIGS, group=Op.ALTER_CONFIGS),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: Needs(topic=Op.ALTER_CONFIGS, group=Op.ALTER_CONFIGS),
    ApiKey.CREATE_PARTITIONS: Needs(topic=Op.ALTER),
    ApiKey.JOIN_GROUP: Needs(group=Op.READ),
    ApiKey.SYNC_GROUP: Needs(group=Op.READ),
    ApiKey.HEARTBEAT: Needs(group=Op.READ),
    ApiKey.LEAVE_GROUP: Needs(group=Op.READ),
    ApiKey.OFFSET_COMMIT: Needs(topic=Op.READ, group=Op.READ),
    ApiKey.OFFSET_FETCH: Needs(topic=Op.DESCRIBE, group=Op.DESCRIBE),
    ApiKey.DESCRIBE_GROUPS: Needs(group=Op.DESCRIBE),
    ApiKey.DELETE_GROUPS: Needs(group=Op.DELETE),
    ApiKey.OFFSET_DELETE: Needs(topic=Op.READ, group=Op.DELETE),
    ApiKey.ELECT_LEADERS: Needs(cluster=Op.ALTER),
    ApiKey.DESCRIBE_LOG_DIRS: Needs(cluster=Op.DESCRIBE),
    ApiKey.ALTER_REPLICA_LOG_DIRS: Needs(cluster=Op.ALTER),
    ApiKey.LIST_PARTITION_REASSIGNMENTS: Needs(cluster=Op.DESCRIBE),
    ApiKey.ALTER_PARTITION_REASSIGNMENTS: Needs(cluster=Op.ALTER),
    ApiKey.DESCRIBE_QUORUM: Needs(cluster=Op.DESCRIBE),
    ApiKey.DESCRIBE_TOPIC_PARTITIONS: Needs(topic=Op.DESCRIBE),
    ApiKey.INIT_PRODUCER_ID: Needs(transactional_id=Op.WRITE),
    ApiKey.ADD_PARTITIONS_TO_TXN: Needs(topic=Op.WRITE, transactional_id=Op.WRITE),
    ApiKey.ADD_OFFSETS_TO_TXN: Needs(group=Op.READ, transactional_id=Op.WRITE),
    ApiKey.END_TXN: Needs(transactional_id=Op.WRITE),
    ApiKey.TXN_OFFSET_COMMIT: Needs(topic=Op.READ, group=Op.READ, transactional_id=Op.WRITE),
    ApiKey.WRITE_TXN_MARKERS: Needs(cluster=Op.CLUSTER_ACTION),
    ApiKey.DESCRIBE_TRANSACTIONS: Needs(transactional_id=Op.DESCRIBE),
}
# Answers listing what the request did not name, filtered by DESCRIBE
LISTINGS = frozenset(
    {ApiKey.METADATA, ApiKey.LIST_GROUPS, ApiKey.LIST_TRANSACTIONS, ApiKey.OFFSET_FETCH}
)
CONFIG_APIS = {
    ApiKey.DESCRIBE_CONFIGS: Op.DESCRIBE_CONFIGS,
    ApiKey.ALTER_CONFIGS: Op.ALTER_CONFIGS,
    ApiKey.INCREMENTAL_ALTER_CONFIGS: Op.ALTER_CONFIGS,
}


def check_request(request: Request, grant: Grant) -> None:
    """Raise StreamHouseError (the kind's AUTHORIZATION_FAILED) unless `grant` allows all the
    request asks; `request` as its client sent it (the org's own names)."""
    if grant.everything and not grant.tenant:
        return
    api_key = ApiKey(request.api_key)
    needs = NEEDS.get(api_key)
    if needs is None:
        return
    body: Any = request.body
    cluster_operation = needs.cluster or _broker_configs_operation(api_key, body)
    if cluster_operation is not None and not grant.allows_on_cluster(cluster_operation):
        raise _refused(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, cluster_operation, "the cluster")
    if grant.everything:
        return
    if api_key == ApiKey.INIT_PRODUCER_ID and body.transactional_id is None:
        if not grant.may_write_idempotently():  # Kafka's rule for idempotent producers
            raise _refused(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, Op.IDEMPOTENT_WRITE, "topics")
        return
    topics_granted = needs.cluster_instead_of_topic is not None and grant.allows_on_cluster(
        needs.cluster_instead_of_topic
    )
    for name, kind in request_names(request):
        needed = needs.on(kind)
        if needed is None or (kind is Kind.TOPIC and topics_granted):
            continue
        if not grant.allows(needed, RESOURCE_TYPES[kind], name):
            raise _refused(kind.value, needed, f"{RESOURCE_TYPES[kind].name.lower()} {name!r}")


def refused_metadata_topics(
    request: Request, grant: Grant, org: str
) -> tuple[Request, list[tuple[str, ErrorCode]]]:
    """A Metadata request without the topics the principal may not describe (or name: another
    org's), and those topics with their error codes: Kafka answers them per topic, and a client
    refused the whole answer would learn of no broker either."""
    body: Any = request.body
    if request.api_key != ApiKey.METADATA or body.topics is None:
        return request, []
    kept, refused = [], []
    for topic in body.topics:
        code = _metadata_refusal(topic.name, grant, org)
        if code is None:
            kept.append(topic)
        else:
            refused.append((topic.name, code))
    changes: dict[str, Any] = {"topics": tuple(kept)} if refused else {}
    if getattr(body, "allow_auto_topic_creation", False) and not _may_create(grant, kept):
        changes["allow_auto_topic_creation"] = False  # Kafka creates only with CREATE
    if not changes:
        return request, []
    return dataclasses.replace(request, body=dataclasses.replace(body, **changes)), refused


def _may_create(grant: Grant, topics: list[Any]) -> bool:
    return all(grant.may_create_topic(t.name) for t in topics if t.name)


def _metadata_refusal(name: str | None, grant: Grant, org: str) -> ErrorCode | None:
    if name is None:  # named by id: looked up by the handler
        return None
    try:
        scoped(org, name)
    except ValueError:
        return ErrorCode.TOPIC_AUTHORIZATION_FAILED
    if grant.allows(Op.DESCRIBE, ResourceType.TOPIC, name):
        return None
    return ErrorCode.TOPIC_AUTHORIZATION_FAILED


def with_refused_topics(values: Values, refused: list[tuple[str, ErrorCode]]) -> Values:
    """A Metadata answer with the refused topics' entries added."""
    if not refused:
        return values
    entries = [
        {
            "error_code": code,
            "name": name,
            "partitions": [],
            "topic_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
        }
        for name, code in refused
    ]
    return {**values, "topics": [*values["topics"], *entries]}


def filtered_answer(api_key: int, values: Values, grant: Grant) -> Values:
    """A listing's answer without what the principal may not DESCRIBE (org-local names)."""
    if grant.everything or api_key not in LISTINGS:
        return values
    return kept_answer(
        api_key, values, lambda name, kind: grant.allows(Op.DESCRIBE, RESOURCE_TYPES[kind], name)
    )


def _broker_configs_operation(api_key: ApiKey, body: Any) -> AclOperation | None:
    """What describing or altering configs needs of the cluster when it names a broker's."""
    if api_key not in CONFIG_APIS:
        return None
    if any(r.resource_type in CONFIG_RESOURCES_OF_THE_CLUSTER for r in body.resources):
        return CONFIG_APIS[api_key]
    return None


def _refused(code: ErrorCode, operation: AclOperation, what: str) -> StreamHouseError:
    return StreamHouseError(f"not authorized to {operation.name} {what}", code)
