"""gRPC Consume with a group, and Commit, with authentication required (API keys of the agent's
own tenancy store): two orgs' groups and topics called alike are separate groups, one org
cannot commit through the other's member, and an org member gets what its org's ACLs grant
(READ on the group, then READ on the topic, as the Kafka door asks), else PERMISSION_DENIED;
confluent-kafka clients with the same keys over SASL cross-check the committed offsets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as KafkaPartition
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from streamhouse.engine.tenancy import ROLE_ADMIN, ROLE_MEMBER, IssuedKey
from streamhouse.server.grpc import streamhouse_pb2 as pb
from streamhouse.server.grpc import streamhouse_pb2_grpc as rpc
from tests.unit.grpc_world import GrpcAgentThread, basic, channel, run, start_agent
from tests.unit.sasl_world import sasl_plain
from tests.unit.test_grpc_auth import issue

GROUP, TOPIC = "orders-readers", "orders"
PARTITIONS = 2
RECORDS_PER_PARTITION = 2
CLIENT_TIMEOUT_S = 20
READ_TIMEOUT_S = 20
ROUNDS_MAX = 40
POLL_S = 0.25
Metadata = tuple[tuple[str, str], ...]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcAgentThread]:
    started = start_agent(
        tmp_path_factory.mktemp("grpc-consume-auth"), "SASL_PLAINTEXT", auth="required"
    )
    yield started
    assert started.agent is not None and started.agent.failure.error is None
    started.stop()


def kafka_config(world: GrpcAgentThread, key: IssuedKey) -> dict[str, Any]:
    return sasl_plain(world.bootstrap, key.key_id, key.secret)


def committed(world: GrpcAgentThread, key: IssuedKey, group: str, topic: str) -> list[int]:
    """The group's committed offsets of each partition, as the key's Kafka consumer sees them."""
    consumer = Consumer({**kafka_config(world, key), "group.id": group})
    try:
        asked = [KafkaPartition(topic, p) for p in range(PARTITIONS)]
        return [tp.offset for tp in consumer.committed(asked, timeout=CLIENT_TIMEOUT_S)]
    finally:
        consumer.close()


async def setup_topic(ch: grpc.aio.Channel, who: Metadata, topic: str, tag: bytes) -> set[Any]:
    """The topic with RECORDS_PER_PARTITION records in each partition; (partition, value)s."""
    await rpc.AdminStub(ch).CreateTopic(
        pb.CreateTopicRequest(name=topic, partitions=PARTITIONS), metadata=who
    )
    sent = {
        (p, tag + b"-%d-%d" % (p, i))
        for p in range(PARTITIONS)
        for i in range(RECORDS_PER_PARTITION)
    }
    records = [pb.Record(value=value, partition=p) for p, value in sorted(sent)]
    produced = await rpc.RecordsStub(ch).Produce(
        pb.ProduceRequest(topic=topic, records=records), metadata=who
    )
    assert not any(r.HasField("error") for r in produced.results)
    return sent


async def join(ch: grpc.aio.Channel, who: Metadata, topic: str, group: str) -> tuple[Any, str]:
    """A group Consume stream from the earliest offsets and its member id."""
    request = pb.ConsumeRequest(topic=topic, group=group, position=pb.START_EARLIEST)
    stream = rpc.RecordsStub(ch).Consume(request, metadata=who)
    first = await stream.read()
    assert isinstance(first, pb.ConsumeResponse) and not first.records and first.member
    return stream, first.member


async def read(stream: Any, count: int) -> set[tuple[int, bytes]]:
    """(partition, value) of the stream's next `count` records."""
    found: set[tuple[int, bytes]] = set()
    async with asyncio.timeout(READ_TIMEOUT_S):
        while len(found) < count:
            message = await stream.read()
            assert isinstance(message, pb.ConsumeResponse)
            found |= {(r.partition, r.value) for r in message.records}
    return found


async def refused(stream: Any) -> tuple[grpc.StatusCode, str]:
    """The stream's refusal (OK: it started, and is cancelled) and its message."""
    try:
        await stream.read()
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    stream.cancel()
    return grpc.StatusCode.OK, ""


def test_two_orgs_groups_called_alike_are_separate_groups(world: GrpcAgentThread) -> None:
    keys = {org: issue(world, org, ROLE_ADMIN) for org in ("acme", "globex")}
    acme, globex = (basic(keys[org].key_id, keys[org].secret) for org in ("acme", "globex"))

    async def scenario() -> None:
        async with channel(world) as ch:
            records = rpc.RecordsStub(ch)
            acme_sent = await setup_topic(ch, acme, TOPIC, b"acme")
            globex_sent = await setup_topic(ch, globex, TOPIC, b"globex")
            acme_stream, acme_member = await join(ch, acme, TOPIC, GROUP)
            # acme's member alone in its group: both partitions
            assert await read(acme_stream, len(acme_sent)) == acme_sent
            globex_stream, globex_member = await join(ch, globex, TOPIC, GROUP)
            # acme's member still there, yet globex's has both partitions of its own topic
            assert await read(globex_stream, len(globex_sent)) == globex_sent

            offsets = [pb.PartitionOffset(topic=TOPIC, partition=0, offset=1)]
            for who, member in ((acme, globex_member), (globex, acme_member)):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await records.Commit(
                        pb.CommitRequest(group=GROUP, member=member, offsets=offsets),
                        metadata=who,
                    )
                assert refused.value.code() is grpc.StatusCode.NOT_FOUND
                assert "acme:" not in (refused.value.details() or "")
                assert "globex:" not in (refused.value.details() or "")
            mine = pb.CommitRequest(group=GROUP, member=globex_member, offsets=offsets)
            answer = await records.Commit(mine, metadata=globex)
            assert [r.HasField("error") for r in answer.results] == [False]
            acme_stream.cancel()
            globex_stream.cancel()

    run(scenario)
    assert committed(world, keys["globex"], GROUP, TOPIC)[0] == 1
    assert all(offset < 0 for offset in committed(world, keys["acme"], GROUP, TOPIC))


def allow(
    world: GrpcAgentThread, admin: IssuedKey, member: IssuedKey, kind: ResourceType, name: str
) -> None:
    """An org admin's LITERAL ALLOW READ for its member, through confluent-kafka's AdminClient."""
    client = AdminClient(kafka_config(world, admin))
    binding = AclBinding(
        kind,
        name,
        ResourcePatternType.LITERAL,
        f"User:{member.key_id}",
        "*",
        AclOperation.READ,
        AclPermissionType.ALLOW,
    )
    for future in client.create_acls([binding]).values():
        future.result(CLIENT_TIMEOUT_S)


def test_a_member_reads_in_a_group_only_with_read_on_group_and_topic(
    world: GrpcAgentThread,
) -> None:
    admin_key, member_key = issue(world, "acme", ROLE_ADMIN), issue(world, "acme", ROLE_MEMBER)
    admin, member = (
        basic(admin_key.key_id, admin_key.secret),
        basic(member_key.key_id, member_key.secret),
    )
    topic, group = "ledger", "auditors"

    async def consume(ch: grpc.aio.Channel) -> tuple[grpc.StatusCode, str]:
        request = pb.ConsumeRequest(topic=topic, group=group, position=pb.START_EARLIEST)
        return await refused(rpc.RecordsStub(ch).Consume(request, metadata=member))

    async def until(ch: grpc.aio.Channel, wanted: tuple[grpc.StatusCode, str]) -> Any:
        """Consume's refusal once it is `wanted` (code, words in the message): ACLs are
        cached for a moment."""
        code, message = await consume(ch)
        for _ in range(ROUNDS_MAX):
            if code is wanted[0] and wanted[1] in message:
                break
            await asyncio.sleep(POLL_S)
            code, message = await consume(ch)
        return code, message

    async def before() -> tuple[set[Any], tuple[grpc.StatusCode, str], grpc.StatusCode]:
        async with channel(world) as ch:
            sent = await setup_topic(ch, admin, topic, b"entry")
            no_acl = await consume(ch)
            commit = pb.CommitRequest(
                group=group, offsets=[pb.PartitionOffset(topic=topic, partition=0, offset=0)]
            )
            try:
                await rpc.RecordsStub(ch).Commit(commit, metadata=member)
                commit_code = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as error:
                commit_code = error.code()
            return sent, no_acl, commit_code

    sent, no_acl, commit_code = run(before)
    assert no_acl[0] is grpc.StatusCode.PERMISSION_DENIED and "group" in no_acl[1]
    assert commit_code is grpc.StatusCode.PERMISSION_DENIED

    allow(world, admin_key, member_key, ResourceType.GROUP, group)

    async def group_only() -> Any:  # READ on the group, none on the topic yet
        async with channel(world) as ch:
            return await until(ch, (grpc.StatusCode.PERMISSION_DENIED, "topic"))

    code, message = run(group_only)
    assert code is grpc.StatusCode.PERMISSION_DENIED and "topic" in message, message

    allow(world, admin_key, member_key, ResourceType.TOPIC, topic)

    async def granted() -> set[tuple[int, bytes]]:
        async with channel(world) as ch:
            assert (await until(ch, (grpc.StatusCode.OK, "")))[0] is grpc.StatusCode.OK
            stream, _ = await join(ch, member, topic, group)
            try:
                return await read(stream, len(sent))
            finally:
                stream.cancel()

    assert run(granted) == sent


def test_another_orgs_internal_names_are_not_found(world: GrpcAgentThread) -> None:
    keys = {org: issue(world, org, ROLE_ADMIN) for org in ("acme", "globex", "default")}
    acme, globex, operator = (basic(k.key_id, k.secret) for k in keys.values())
    topic = "private"

    async def scenario() -> list[grpc.StatusCode]:
        async with channel(world) as ch:
            records = rpc.RecordsStub(ch)
            await setup_topic(ch, globex, topic, b"globex")
            await setup_topic(ch, operator, topic, b"default")  # its own: the group is refused
            codes = []
            for who, name, group in (
                (acme, f"globex:{topic}", GROUP),  # acme's own (missing) topic of that name
                (operator, f"globex:{topic}", GROUP),
                (operator, topic, f"globex:{GROUP}"),
            ):
                request = pb.ConsumeRequest(topic=name, group=group, position=pb.START_EARLIEST)
                codes.append((await refused(records.Consume(request, metadata=who)))[0])
            offsets = [pb.PartitionOffset(topic=topic, partition=0, offset=1)]
            commit = pb.CommitRequest(group=f"globex:{GROUP}", offsets=offsets)
            try:
                await records.Commit(commit, metadata=operator)
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as error:
                codes.append(error.code())
            return codes

    assert run(scenario) == [grpc.StatusCode.NOT_FOUND] * 4
    assert all(offset < 0 for offset in committed(world, keys["globex"], GROUP, topic))
