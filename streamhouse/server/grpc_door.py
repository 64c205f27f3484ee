"""The agent's gRPC door: a grpc.aio server in the agent's own event loop serving
streamhouse.v1.Records and streamhouse.v1.Admin (server/grpc/), the standard health service
(SERVING while the agent serves) and server reflection.

Bounds: a message in either direction is at most GRPC_MESSAGE_BYTES_MAX (gRPC answers a
larger request RESOURCE_EXHAUSTED before any of our code runs); at most GRPC_CALLS_MAX calls
are served at once (more: RESOURCE_EXHAUSTED); on close, calls in flight get
GRPC_SHUTDOWN_GRACE_MS to finish, then are cancelled.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from streamhouse.engine.acls import AclService
from streamhouse.engine.admin import AdminService
from streamhouse.engine.authentication import Authenticator
from streamhouse.engine.consume import FetchService
from streamhouse.engine.consumer_instances import ConsumerInstances
from streamhouse.engine.failure import AgentFailure
from streamhouse.engine.produce import ProduceService
from streamhouse.errors import StreamHouseError
from streamhouse.names import TopicPartition
from streamhouse.server.grpc import streamhouse_pb2 as pb
from streamhouse.server.grpc.admin import AdminServicer
from streamhouse.server.grpc.caller import CallerCheck
from streamhouse.server.grpc.methods import Methods
from streamhouse.server.grpc.records import RecordsServicer

MIB = 1024 * 1024
GRPC_MESSAGE_BYTES_MAX = 8 * MIB
GRPC_CALLS_MAX = 10_000
GRPC_SHUTDOWN_GRACE_MS = 5_000
RECORDS_SERVICE = pb.DESCRIPTOR.services_by_name["Records"].full_name
ADMIN_SERVICE = pb.DESCRIPTOR.services_by_name["Admin"].full_name
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", GRPC_MESSAGE_BYTES_MAX),
    ("grpc.max_send_message_length", GRPC_MESSAGE_BYTES_MAX),
    ("grpc.so_reuseport", 0),  # a second agent on a taken port must fail, not share it
)


class GrpcListenFailed(StreamHouseError):
    """The gRPC door could not listen on its address."""


@dataclass(frozen=True)
class GrpcEngine:
    """The engine services the door calls."""

    admin: AdminService
    produce: ProduceService
    fetch: FetchService
    acls: AclService
    authenticator: Authenticator | None  # None: callers are not asked who they are
    failure: AgentFailure
    consumers: ConsumerInstances  # Consume with a group runs one for the stream


@dataclass
class GrpcDoor:
    """A serving gRPC door and the port it bound."""

    server: grpc.aio.Server
    port: int
    health: health_aio.HealthServicer
    failed: asyncio.Task[None] | None = None  # health turning NOT_SERVING on the agent's failure

    async def close(self) -> None:
        """Health answers NOT_SERVING, then calls in flight get the grace to finish."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(GRPC_SHUTDOWN_GRACE_MS / 1000)


async def start_grpc_door(host: str, port: int, engine: GrpcEngine) -> GrpcDoor:
    """Serve the gRPC door on `host:port` (0: any free port). Raises GrpcListenFailed."""
    server = grpc.aio.server(options=SERVER_OPTIONS, maximum_concurrent_rpcs=GRPC_CALLS_MAX)
    server.add_generic_rpc_handlers(_handlers(engine))
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (RECORDS_SERVICE, ADMIN_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME), server
    )
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as error:
        raise GrpcListenFailed(f"cannot listen for gRPC on {host}:{port}: {error}") from None
    await server.start()
    for service in ("", RECORDS_SERVICE, ADMIN_SERVICE):
        await health.set(service, health_pb2.HealthCheckResponse.SERVING)
    door = GrpcDoor(server, bound, health)
    engine.failure.on_failure(lambda _: _not_serving(door))
    return door


def _not_serving(door: GrpcDoor) -> None:
    """A failed agent's door says so at once (the agent then stops and closes it)."""
    door.failed = asyncio.get_running_loop().create_task(door.health.enter_graceful_shutdown())


def _handlers(engine: GrpcEngine) -> tuple[grpc.GenericRpcHandler, ...]:
    methods = Methods(CallerCheck(engine.authenticator, engine.acls), engine.failure)

    async def high_watermark(tp: TopicPartition) -> int | None:
        try:
            return (await engine.fetch.offsets(tp)).high_watermark
        except StreamHouseError:  # not led here, or gone: the lag is left unknown
            return None

    records = RecordsServicer(  # commits reach any group's coordinator, as instances do
        engine.admin, engine.produce, engine.fetch, engine.consumers.groups, engine.consumers
    )
    admin = AdminServicer(engine.admin, engine.consumers.groups, high_watermark)
    records_methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Produce": methods.unary(records.produce, pb.ProduceRequest),
        "ProduceStream": methods.client_stream(records.produce_stream, pb.ProduceRequest),
        "Consume": methods.server_stream(records.consume, pb.ConsumeRequest),
        "Commit": methods.unary(records.commit, pb.CommitRequest),
    }
    admin_methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "ListTopics": methods.unary(admin.list_topics, pb.ListTopicsRequest),
        "DescribeTopic": methods.unary(admin.describe_topic, pb.DescribeTopicRequest),
        "CreateTopic": methods.unary(admin.create_topic, pb.CreateTopicRequest),
        "DeleteTopic": methods.unary(admin.delete_topic, pb.DeleteTopicRequest),
        "ListGroups": methods.unary(admin.list_groups, pb.ListGroupsRequest),
        "DescribeGroup": methods.unary(admin.describe_group, pb.DescribeGroupRequest),
    }
    return (
        grpc.method_handlers_generic_handler(RECORDS_SERVICE, records_methods),
        grpc.method_handlers_generic_handler(ADMIN_SERVICE, admin_methods),
    )
