"""Confluent REST Proxy API v3: consumer groups, their consumers and their lag, under
/v3/clusters/{cluster_id}/consumer-groups, over the admin service (the listing), the group's
coordinator wherever it runs (its members and committed offsets, engine/group_calls.py) and the
fetch service (log end offsets).

A group's lag in a partition is its log end offset (high watermark) minus the group's
committed offset there, never below 0; the lags listed are those of the partitions the group
has committed offsets in, in topics the caller may DESCRIBE. Groups are the caller's org's; a
listing leaves out the groups the caller may not DESCRIBE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from streamhouse.engine.cluster import CLUSTER_ID
from streamhouse.engine.coordinators import slot_of
from streamhouse.errors import StreamHouseError
from streamhouse.log.group_state import GroupState, GroupSummary, MemberSummary
from streamhouse.names import TopicPartition
from streamhouse.server.rest_common import Caller, RestServices, caller_in, engine_refusal
from streamhouse.server.rest_v3 import (
    V3_PREFIX,
    answer,
    check_cluster,
    cluster_path,
    crn,
    listing,
    related,
    resource,
    v3_refusal,
)
from streamhouse.tenancy.acls import AclOperation, ResourceType

Op = AclOperation
GROUP = ResourceType.GROUP
GROUPS_PATH = V3_PREFIX + "/consumer-groups"


@dataclass(frozen=True)
class PartitionLag:
    """A group's position in one partition, named as the caller knows the topic."""

    topic: str
    partition: int
    committed: int
    log_end: int

    @property
    def lag(self) -> int:
        return max(0, self.log_end - self.committed)


def install_v3_groups(app: FastAPI, services: RestServices) -> None:
    """The consumer group, consumer and lag routes."""
    _group_routes(app, services)
    _lag_routes(app, services)


def _group_body(request: Request, name: str, summary: GroupSummary, services: RestServices) -> Any:
    # the broker coordinating the group, as FindCoordinator names it
    coordinator = services.admin.cluster.coordinator(slot_of(summary.group_id)).node_id
    base = cluster_path("consumer-groups", name)
    return resource(
        request,
        "KafkaConsumerGroup",
        base,
        crn(f"consumer-group={name}"),
        cluster_id=CLUSTER_ID,
        consumer_group_id=name,
        is_simple=not summary.protocol_type,
        partition_assignor=summary.protocol_name,
        state=_state_name(summary.state),
        coordinator=related(request, cluster_path("brokers", coordinator)),
        consumers=related(request, f"{base}/consumers"),
        lag_summary=related(request, f"{base}/lag-summary"),
    )


def _state_name(state: GroupState) -> str:
    """Kafka's state name as Confluent writes it: STABLE, PREPARING_REBALANCE, …"""
    return state.name


def _consumer_body(request: Request, group: str, member: MemberSummary) -> Any:
    base = cluster_path("consumer-groups", group, "consumers", member.member_id)
    return resource(
        request,
        "KafkaConsumer",
        base,
        crn(f"consumer-group={group}", f"consumer={member.member_id}"),
        cluster_id=CLUSTER_ID,
        consumer_group_id=group,
        consumer_id=member.member_id,
        instance_id=member.instance_id,
        client_id=member.client_id,
        assignments=related(request, f"{base}/assignments"),
    )


async def _group(services: RestServices, caller: Caller, name: str) -> GroupSummary:
    """The caller's group: 403 unless it may DESCRIBE it, 404 when there is none."""
    caller.require(Op.DESCRIBE, GROUP, name)
    summary = await _described(services, caller.internal_group(name))
    if summary.state is GroupState.DEAD:
        raise v3_refusal(404, f"Consumer group {name} cannot be found.")
    return summary


async def _described(services: RestServices, internal: str) -> GroupSummary:
    """The group as its coordinator describes it, wherever it runs."""
    try:
        return await services.consumers.groups.describe(internal)
    except StreamHouseError as error:
        raise engine_refusal(error) from None


def _group_routes(app: FastAPI, services: RestServices) -> None:
    @app.get(GROUPS_PATH, tags=["v3"], summary="The caller's consumer groups")
    async def groups(request: Request, cluster_id: str) -> JSONResponse:
        check_cluster(cluster_id)
        caller = caller_in(request)
        data = []
        for listed in await services.admin.list_groups():
            name = caller.shown(listed.group_id)
            if name is None or not caller.may(Op.DESCRIBE, GROUP, name):
                continue
            summary = await _described(services, listed.group_id)
            data.append(_group_body(request, name, summary, services))
        return answer(listing(request, "KafkaConsumerGroupList", data))

    @app.get(GROUPS_PATH + "/{group_id}", tags=["v3"], summary="One consumer group")
    async def group(request: Request, cluster_id: str, group_id: str) -> JSONResponse:
        check_cluster(cluster_id)
        summary = await _group(services, caller_in(request), group_id)
        return answer(_group_body(request, group_id, summary, services))

    @app.get(GROUPS_PATH + "/{group_id}/consumers", tags=["v3"], summary="A group's consumers")
    async def consumers(request: Request, cluster_id: str, group_id: str) -> JSONResponse:
        check_cluster(cluster_id)
        summary = await _group(services, caller_in(request), group_id)
        data = [_consumer_body(request, group_id, member) for member in summary.members]
        return answer(listing(request, "KafkaConsumerList", data))

    @app.get(GROUPS_PATH + "/{group_id}/consumers/{consumer_id}", tags=["v3"])
    async def consumer(
        request: Request, cluster_id: str, group_id: str, consumer_id: str
    ) -> JSONResponse:
        check_cluster(cluster_id)
        summary = await _group(services, caller_in(request), group_id)
        for member in summary.members:
            if member.member_id == consumer_id:
                return answer(_consumer_body(request, group_id, member))
        raise v3_refusal(404, f"Consumer {consumer_id} of group {group_id} cannot be found.")


async def group_lags(services: RestServices, caller: Caller, group: str) -> list[PartitionLag]:
    """The group's lag in each partition it committed an offset in (topics the caller may
    DESCRIBE, in its org), by topic and partition."""
    await _group(services, caller, group)
    try:
        committed = await services.consumers.groups.fetch_offsets(
            caller.internal_group(group), None
        )
    except StreamHouseError as error:
        raise engine_refusal(error) from None
    lags = []
    for tp, position in sorted(committed.items()):
        topic = caller.shown(tp.topic)
        if topic is None or not caller.may(Op.DESCRIBE, ResourceType.TOPIC, topic):
            continue
        log_end = await _log_end(services, tp)
        if log_end is not None:
            lags.append(PartitionLag(topic, tp.partition, position.offset, log_end))
    return lags


async def _log_end(services: RestServices, tp: TopicPartition) -> int | None:
    """The partition's high watermark; None for a partition gone since the commit."""
    try:
        offsets = await services.fetch.offsets(tp)
    except StreamHouseError:
        return None
    return offsets.high_watermark


def _lag_body(request: Request, group: str, lag: PartitionLag) -> Any:
    return resource(
        request,
        "KafkaConsumerLag",
        cluster_path("consumer-groups", group, "lags", lag.topic, "partitions", lag.partition),
        crn(f"consumer-group={group}", f"lag={lag.topic}", f"partition={lag.partition}"),
        cluster_id=CLUSTER_ID,
        consumer_group_id=group,
        topic_name=lag.topic,
        partition_id=lag.partition,
        current_offset=lag.committed,
        log_end_offset=lag.log_end,
        lag=lag.lag,
        consumer_id="",
        instance_id=None,
        client_id="",
    )


def _lag_routes(app: FastAPI, services: RestServices) -> None:
    @app.get(GROUPS_PATH + "/{group_id}/lags", tags=["v3"], summary="A group's lag per partition")
    async def lags(request: Request, cluster_id: str, group_id: str) -> JSONResponse:
        check_cluster(cluster_id)
        found = await group_lags(services, caller_in(request), group_id)
        data = [_lag_body(request, group_id, lag) for lag in found]
        return answer(listing(request, "KafkaConsumerLagList", data))

    @app.get(
        GROUPS_PATH + "/{group_id}/lags/{topic_name}/partitions/{partition_id}",
        tags=["v3"],
        summary="A group's lag in one partition",
    )
    async def lag(
        request: Request, cluster_id: str, group_id: str, topic_name: str, partition_id: int
    ) -> JSONResponse:
        check_cluster(cluster_id)
        for found in await group_lags(services, caller_in(request), group_id):
            if (found.topic, found.partition) == (topic_name, partition_id):
                return answer(_lag_body(request, group_id, found))
        raise v3_refusal(404, f"Group {group_id} has no offset in {topic_name}-{partition_id}.")

    @app.get(GROUPS_PATH + "/{group_id}/lag-summary", tags=["v3"], summary="A group's lag")
    async def lag_summary(request: Request, cluster_id: str, group_id: str) -> JSONResponse:
        check_cluster(cluster_id)
        found = await group_lags(services, caller_in(request), group_id)
        worst = max(found, key=lambda lag: lag.lag, default=None)
        base = cluster_path("consumer-groups", group_id)
        return answer(
            resource(
                request,
                "KafkaConsumerGroupLagSummary",
                f"{base}/lag-summary",
                crn(f"consumer-group={group_id}", "lag-summary"),
                cluster_id=CLUSTER_ID,
                consumer_group_id=group_id,
                max_lag_consumer_id="",
                max_lag_instance_id=None,
                max_lag_client_id="",
                max_lag_topic_name=worst.topic if worst else "",
                max_lag_partition_id=worst.partition if worst else 0,
                max_lag=worst.lag if worst else 0,
                total_lag=sum(lag.lag for lag in found),
                max_lag_partition=related(
                    request,
                    cluster_path("topics", worst.topic, "partitions", worst.partition)
                    if worst
                    else base,
                ),
            )
        )
