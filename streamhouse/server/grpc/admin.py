"""The gRPC Admin service: topics and consumer groups of the caller's org, through the engine's
AdminService and the group's coordinator wherever it runs (the rules every door shares).
Listings leave out what the caller may not DESCRIBE; a single resource it may not use is
PERMISSION_DENIED."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from grpc import StatusCode

from streamhouse.engine.admin import BROKER_DEFAULT_PARTITIONS, AdminService
from streamhouse.log.group_state import GroupState, GroupSummary
from streamhouse.names import TopicPartition
from streamhouse.ports.peers import GroupCalls
from streamhouse.server.grpc import streamhouse_pb2 as pb
from streamhouse.server.grpc.caller import Caller
from streamhouse.server.grpc.methods import Context
from streamhouse.server.grpc.status import CallRefused
from streamhouse.tenancy.acls import AclOperation, ResourceType

Op = AclOperation
HighWatermark = Callable[[TopicPartition], Awaitable[int | None]]
"""A partition's high watermark, None when it cannot be told cheaply here."""


class AdminServicer:
    """streamhouse.v1.Admin over the engine's admin rules; `groups`: any group's coordinator
    (engine/group_calls.py)."""

    def __init__(
        self, admin: AdminService, groups: GroupCalls, high_watermark: HighWatermark
    ) -> None:
        self._admin = admin
        self._groups = groups
        self._high_watermark = high_watermark

    async def list_topics(
        self, request: pb.ListTopicsRequest, caller: Caller, context: Context
    ) -> pb.ListTopicsResponse:
        answer = pb.ListTopicsResponse()
        for topic in await self._admin.list_topics():
            name = caller.shown(topic.name)
            if name is not None and caller.may(Op.DESCRIBE, ResourceType.TOPIC, name):
                answer.topics.add(name=name, partitions=topic.partition_count)
        return answer

    async def describe_topic(
        self, request: pb.DescribeTopicRequest, caller: Caller, context: Context
    ) -> pb.DescribeTopicResponse:
        internal = caller.internal(request.name)
        caller.require(Op.DESCRIBE, ResourceType.TOPIC, request.name)
        topic = await self._admin.topic(internal)
        described = await self._admin.describe_topic(topic)
        configs = await self._admin.describe_configs(internal)
        answer = pb.DescribeTopicResponse(name=request.name, topic_id=str(described.topic_id))
        for partition in described.partitions:
            answer.partitions.add(
                partition=partition.partition,
                leader_node=partition.leader_node,
                leader_epoch=partition.leader_epoch,
                log_start_offset=partition.log_start_offset,
                durable_end_offset=partition.durable_end_offset,
            )
        answer.configs.update({entry.name: entry.value for entry in configs})
        return answer

    async def create_topic(
        self, request: pb.CreateTopicRequest, caller: Caller, context: Context
    ) -> pb.CreateTopicResponse:
        internal = caller.internal(request.name)
        caller.require_create_topic(request.name)
        if request.partitions < 0:
            raise CallRefused(
                StatusCode.INVALID_ARGUMENT,
                f"partitions must be positive (0: the agent's default), not {request.partitions}",
            )
        partitions = request.partitions or BROKER_DEFAULT_PARTITIONS
        created = await self._admin.create_topic(internal, partitions, dict(request.configs))
        return pb.CreateTopicResponse(name=request.name, partitions=created.partition_count)

    async def delete_topic(
        self, request: pb.DeleteTopicRequest, caller: Caller, context: Context
    ) -> pb.DeleteTopicResponse:
        internal = caller.internal(request.name)
        caller.require(Op.DELETE, ResourceType.TOPIC, request.name)
        await self._admin.delete_topic(internal)
        return pb.DeleteTopicResponse()

    async def list_groups(
        self, request: pb.ListGroupsRequest, caller: Caller, context: Context
    ) -> pb.ListGroupsResponse:
        answer = pb.ListGroupsResponse()
        for group in await self._admin.list_groups():
            group_id = caller.shown(group.group_id)
            if group_id is not None and caller.may(Op.DESCRIBE, ResourceType.GROUP, group_id):
                answer.groups.add(
                    group_id=group_id, state=group.state.value, protocol_type=group.protocol_type
                )
        return answer

    async def describe_group(
        self, request: pb.DescribeGroupRequest, caller: Caller, context: Context
    ) -> pb.DescribeGroupResponse:
        internal = caller.internal(request.group_id, "group")
        caller.require(Op.DESCRIBE, ResourceType.GROUP, request.group_id)
        summary = await self._groups.describe(internal)
        if summary.state is GroupState.DEAD:
            raise CallRefused(
                StatusCode.NOT_FOUND,
                f"no consumer group named {request.group_id!r} (no members, no offsets)",
            )
        answer = _group_answer(request.group_id, summary)
        committed = await self._groups.fetch_offsets(internal, None)
        for tp in sorted(committed, key=lambda tp: (tp.topic, tp.partition)):
            topic = caller.shown(tp.topic)
            if topic is None or not caller.may(Op.DESCRIBE, ResourceType.TOPIC, topic):
                continue
            offset = committed[tp].offset
            high_watermark = await self._high_watermark(tp)
            answer.offsets.add(
                topic=topic,
                partition=tp.partition,
                offset=offset,
                metadata=committed[tp].metadata or "",
                high_watermark=-1 if high_watermark is None else high_watermark,
                lag=-1 if high_watermark is None else max(0, high_watermark - offset),
            )
        return answer


def _group_answer(group_id: str, summary: GroupSummary) -> pb.DescribeGroupResponse:
    answer = pb.DescribeGroupResponse(
        group_id=group_id,
        state=summary.state.value,
        protocol_type=summary.protocol_type,
        protocol=summary.protocol_name,
    )
    for member in summary.members:
        answer.members.add(
            member_id=member.member_id,
            client_id=member.client_id,
            client_host=member.client_host,
            instance_id=member.instance_id or "",
        )
    return answer
