"""The gRPC door with authentication required: API keys from the agent's own tenancy store in
the call's metadata (Basic or Bearer), orgs that cannot see each other's topics, and a member
key without ACLs refused what it was not granted."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from streamhouse.engine.tenancy import ROLE_ADMIN, ROLE_MEMBER, IssuedKey
from streamhouse.server.grpc import streamhouse_pb2 as pb
from streamhouse.server.grpc import streamhouse_pb2_grpc as rpc
from tests.unit.grpc_world import GrpcAgentThread, basic, bearer, channel, run, start_agent


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcAgentThread]:
    started = start_agent(tmp_path_factory.mktemp("grpc-auth"), "SASL_PLAINTEXT", auth="required")
    yield started
    started.stop()


def issue(world: GrpcAgentThread, org: str, role: str) -> IssuedKey:
    agent = world.agent
    assert agent is not None

    async def issued() -> IssuedKey:
        if org not in {known.name for known in await agent.tenancy.orgs()}:
            await agent.tenancy.create_org(org)
        return await agent.tenancy.issue_key(org, role)

    return world.in_agent_loop(issued)


async def _code(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_calls_without_a_right_key_are_unauthenticated(world: GrpcAgentThread) -> None:
    key = issue(world, "acme", ROLE_ADMIN)

    async def scenario() -> list[grpc.StatusCode]:
        async with channel(world) as ch:
            admin = rpc.AdminStub(ch)
            listing = pb.ListTopicsRequest()
            return [
                await _code(admin.ListTopics(listing)),
                await _code(admin.ListTopics(listing, metadata=basic(key.key_id, "wrong"))),
                await _code(admin.ListTopics(listing, metadata=bearer("nobody", key.secret))),
                await _code(admin.ListTopics(listing, metadata=(("authorization", "Basic !!"),))),
                await _code(admin.ListTopics(listing, metadata=basic(key.key_id, key.secret))),
                await _code(admin.ListTopics(listing, metadata=bearer(key.key_id, key.secret))),
            ]

    S = grpc.StatusCode
    assert run(scenario) == [S.UNAUTHENTICATED] * 4 + [S.OK, S.OK]


def test_two_orgs_never_see_each_other_s_topics(world: GrpcAgentThread) -> None:
    acme = basic(*_pair(issue(world, "acme", ROLE_ADMIN)))
    globex = bearer(*_pair(issue(world, "globex", ROLE_ADMIN)))

    async def scenario() -> tuple[list[str], list[str], grpc.StatusCode, pb.ProduceResponse]:
        async with channel(world) as ch:
            admin, records = rpc.AdminStub(ch), rpc.RecordsStub(ch)
            create = pb.CreateTopicRequest(name="orders", partitions=1)
            await admin.CreateTopic(create, metadata=acme)
            await admin.CreateTopic(create, metadata=globex)  # its own "orders"
            await admin.CreateTopic(pb.CreateTopicRequest(name="acme-only"), metadata=acme)
            produce = pb.ProduceRequest(topic="orders", records=[pb.Record(value=b"a")])
            produced = await records.Produce(produce, metadata=acme)
            seen_by_acme = await admin.ListTopics(pb.ListTopicsRequest(), metadata=acme)
            seen_by_globex = await admin.ListTopics(pb.ListTopicsRequest(), metadata=globex)
            hidden = await _code(
                admin.DescribeTopic(pb.DescribeTopicRequest(name="acme-only"), metadata=globex)
            )
            return (
                sorted(t.name for t in seen_by_acme.topics),
                sorted(t.name for t in seen_by_globex.topics),
                hidden,
                produced,
            )

    acme_topics, globex_topics, hidden, produced = run(scenario)
    assert acme_topics == ["acme-only", "orders"]
    assert globex_topics == ["orders"]
    assert hidden is grpc.StatusCode.NOT_FOUND
    assert [(r.partition, r.offset) for r in produced.results] == [(0, 0)]
    agent = world.agent
    assert agent is not None
    internal = world.in_agent_loop(agent.admin.list_topics)
    assert {"acme:orders", "globex:orders", "acme:acme-only"} <= {t.name for t in internal}


def test_a_member_without_acls_is_denied(world: GrpcAgentThread) -> None:
    admin_key = basic(*_pair(issue(world, "initech", ROLE_ADMIN)))
    member_key = basic(*_pair(issue(world, "initech", ROLE_MEMBER)))

    async def scenario() -> list[grpc.StatusCode | list[str]]:
        async with channel(world) as ch:
            admin, records = rpc.AdminStub(ch), rpc.RecordsStub(ch)
            await admin.CreateTopic(pb.CreateTopicRequest(name="ledger"), metadata=admin_key)
            produce = pb.ProduceRequest(topic="ledger", records=[pb.Record(value=b"x")])
            listed = await admin.ListTopics(pb.ListTopicsRequest(), metadata=member_key)
            return [
                await _code(records.Produce(produce, metadata=member_key)),
                await _code(
                    admin.CreateTopic(pb.CreateTopicRequest(name="mine"), metadata=member_key)
                ),
                await _code(
                    records.Commit(
                        pb.CommitRequest(
                            group="g",
                            offsets=[pb.PartitionOffset(topic="ledger", partition=0, offset=0)],
                        ),
                        metadata=member_key,
                    )
                ),
                [t.name for t in listed.topics],  # not describable: left out
            ]

    S = grpc.StatusCode
    assert run(scenario) == [S.PERMISSION_DENIED, S.PERMISSION_DENIED, S.PERMISSION_DENIED, []]


def _pair(key: IssuedKey) -> tuple[str, str]:
    return key.key_id, key.secret
