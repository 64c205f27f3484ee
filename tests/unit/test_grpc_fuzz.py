"""Random request messages (and random bytes) to every method of the gRPC door: each call ends
with a proper status (never INTERNAL or UNKNOWN, which would mean our own failure), and the
agent keeps serving, its failure signal untouched."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamhouse.server.grpc import streamhouse_pb2 as pb
from tests.property_budget import examples
from tests.unit.grpc_world import GrpcAgentThread, channel, run, start_agent

CALL_TIMEOUT_S = 2  # a Consume that finds nothing ends at its deadline
OUR_FAILURES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
NAMES = st.sampled_from(["fuzzed", "", "nowhere", "acme:x", "no spaces", "a" * 300, "__x"])
BYTES = st.binary(max_size=64)

headers = st.builds(pb.Header, key=st.text(max_size=8), value=BYTES)
records = st.builds(
    pb.Record,
    key=BYTES,
    value=BYTES,
    headers=st.lists(headers, max_size=3),
    partition=st.integers(-2, 3),
    timestamp_ms=INT64,
)
produce = st.builds(
    pb.ProduceRequest,
    topic=NAMES,
    records=st.lists(records, max_size=4),
    ack=st.integers(0, 5),
)
consume = st.builds(
    pb.ConsumeRequest,
    topic=NAMES,
    partitions=st.lists(st.integers(-2, 3), max_size=3),
    offset=st.integers(-2, 10),
    group=st.sampled_from(["", "g"]),
    max_bytes=INT32,
    read_uncommitted=st.booleans(),
    max_idle_ms=st.integers(-1, 200),
)
commit = st.builds(
    pb.CommitRequest,
    group=NAMES,
    offsets=st.lists(
        st.builds(
            pb.PartitionOffset,
            topic=NAMES,
            partition=st.integers(-2, 3),
            offset=INT64,
            metadata=st.text(max_size=8),
        ),
        max_size=3,
    ),
)
admin = st.one_of(
    st.builds(pb.DescribeTopicRequest, name=NAMES).map(lambda r: ("Admin/DescribeTopic", r)),
    st.builds(
        pb.CreateTopicRequest,
        name=NAMES,
        partitions=st.integers(-2, 4),
        configs=st.dictionaries(
            st.sampled_from(["cleanup.policy", "retention.ms", "nope"]), st.text(max_size=6)
        ),
    ).map(lambda r: ("Admin/CreateTopic", r)),
    st.builds(pb.DeleteTopicRequest, name=NAMES).map(lambda r: ("Admin/DeleteTopic", r)),
    st.builds(pb.DescribeGroupRequest, group_id=NAMES).map(lambda r: ("Admin/DescribeGroup", r)),
)
unary_calls = st.one_of(
    produce.map(lambda r: ("Records/Produce", r)),
    commit.map(lambda r: ("Records/Commit", r)),
    admin,
)
METHODS = [
    "Records/Produce",
    "Records/Commit",
    "Admin/ListTopics",
    "Admin/DescribeTopic",
    "Admin/CreateTopic",
    "Admin/DeleteTopic",
    "Admin/ListGroups",
    "Admin/DescribeGroup",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcAgentThread]:
    started = start_agent(tmp_path_factory.mktemp("grpc-fuzz"))
    yield started
    started.stop()


async def _unary(world: GrpcAgentThread, method: str, payload: bytes) -> grpc.StatusCode:
    async with channel(world) as ch:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = ch.unary_unary(
            f"/streamhouse.v1.{method}"
        )
        try:
            await call(payload, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


async def _consume(world: GrpcAgentThread, payload: bytes) -> grpc.StatusCode:
    async with channel(world) as ch:
        consume: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = ch.unary_stream(
            "/streamhouse.v1.Records/Consume"
        )
        call = consume(payload, timeout=CALL_TIMEOUT_S)
        try:
            async for _ in call:
                break
        except grpc.aio.AioRpcError as error:
            return error.code()
        call.cancel()
    return grpc.StatusCode.OK


def _served(world: GrpcAgentThread, code: grpc.StatusCode) -> None:
    assert code not in OUR_FAILURES
    assert world.agent is not None and world.agent.failure.error is None


@settings(
    max_examples=examples(80),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(call=unary_calls)
def test_random_unary_requests_get_a_proper_status(
    world: GrpcAgentThread, call: tuple[str, pb.ProduceRequest]
) -> None:
    method, request = call
    _served(world, run(lambda: _unary(world, method, request.SerializeToString())))


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(request=consume)
def test_random_consume_requests_get_a_proper_status(
    world: GrpcAgentThread, request: pb.ConsumeRequest
) -> None:
    _served(world, run(lambda: _consume(world, request.SerializeToString())))


@settings(
    max_examples=examples(80),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(method=st.sampled_from(METHODS), payload=st.binary(max_size=64))
def test_random_bytes_get_a_proper_status(
    world: GrpcAgentThread, method: str, payload: bytes
) -> None:
    _served(world, run(lambda: _unary(world, method, payload)))
