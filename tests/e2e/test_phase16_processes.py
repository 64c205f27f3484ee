"""Phase 16 with `streamhouse agent --processes 2`: only process 0 opens the REST and gRPC doors,
and they serve every partition, the ones process 1 leads too (forwarded to it over its Kafka
listener), and every consumer group, the ones process 1 coordinates too. Records produced
through REST v2 and gRPC to each partition of a topic both processes lead are read back by a
Kafka consumer at the offsets each producer was told, and by gRPC Consume of every partition.
A REST v2 consumer instance in a group process 1 coordinates reads every record and commits,
and a gRPC Commit to such a group lands: Kafka clients see the member and the offsets there,
and REST v3's lags and gRPC's DescribeGroup on process 0 tell the group's lag."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as KafkaPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamhouse.io.kafka_peer import KafkaCall, call_agent
from streamhouse.kafka.apis import ApiKey
from streamhouse.server.grpc import streamhouse_pb2 as pb
from streamhouse.server.grpc import streamhouse_pb2_grpc as rpc
from streamhouse.testing.agent_process import AgentProcess, start_agent_processes
from streamhouse.testing.cluster import NO_LEADER, partition_leaders
from streamhouse.testing.network import LOOPBACK
from tests.e2e.conftest import E2E_FLUSH_INTERVAL_MS, within
from tests.e2e.test_phase16_doors import (
    POLL_S,
    POLLS_MAX,
    TIMEOUT_S,
    RestMember,
    Row,
    door_record,
    read_grpc,
    read_kafka,
)
from tests.unit.rest_world import V2_BINARY, call

PARTITIONS = 4
SPLIT_WAIT_S = 10  # for a new topic's partitions to be led by both processes
SPLIT_TOPIC_TRIES = 6  # topics tried: each lands all on one process with odds about 1 in 8
PER_PARTITION = 2  # records per partition through each door
FIND_COORDINATOR_VERSION = 3  # one key, answered at the top level
DESCRIBE_GROUPS_VERSION = 0
GROUP_IDS_PER_LOOK_MAX = 64  # group ids asked about per look, until one is process 1's
RESPONSE_BYTES_MAX = 1024 * 1024
CLUSTER = "/v3/clusters/streamhouse-default"


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    data_dir: Path = tmp_path_factory.mktemp("phase16-processes") / "data"
    with start_agent_processes(
        data_dir, 2, "--flush-interval-ms", E2E_FLUSH_INTERVAL_MS
    ) as running:
        within(TIMEOUT_S, lambda: _listening(running.rest_port), "the REST door listening")
        within(TIMEOUT_S, lambda: _listening(running.grpc_port), "the gRPC door listening")
        yield running
        running.stop_cleanly()


def _listening(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=POLL_S).close()
    except OSError:
        return False
    return True


def _topic_led_by_both(agents: AgentProcess) -> str:
    """A new topic each process leads some partitions of. Placement balances every partition
    of the cluster, not each topic's, so a topic may land all on one process: another is
    tried then."""
    admin = AdminClient({"bootstrap.servers": agents.bootstrap})
    for _ in range(SPLIT_TOPIC_TRIES):
        name = f"procs-{uuid.uuid4().hex[:8]}"
        admin.create_topics([NewTopic(name, PARTITIONS)])[name].result(TIMEOUT_S)
        deadline = time.monotonic() + SPLIT_WAIT_S
        while time.monotonic() < deadline:
            leaders = set(partition_leaders(agents.bootstrap, name).values()) - {NO_LEADER}
            if len(leaders) == 2:
                return name
            time.sleep(POLL_S)
    raise AssertionError(f"no topic of {SPLIT_TOPIC_TRIES} was led by both processes")


def _produce_rest_v2(agents: AgentProcess, topic: str, partition: int) -> list[Row]:
    told: list[Row] = []
    for index in range(PER_PARTITION):
        _, value, _ = door_record(index, f"rest-v2-{partition}")
        body = {"records": [{"value": base64.b64encode(value).decode()}]}
        answer = call(
            agents.rest_port, "POST", f"/topics/{topic}/partitions/{partition}", body, V2_BINARY
        )
        assert answer.status == 200, answer.raw
        (offset,) = answer.json["offsets"]
        assert offset["error_code"] is None, offset
        assert offset["partition"] == partition
        told.append((partition, offset["offset"], None, value, ()))
    return told


def _produce_grpc(agents: AgentProcess, topic: str) -> list[Row]:
    made = [
        (partition, *door_record(index, f"grpc-{partition}"))
        for partition in range(PARTITIONS)
        for index in range(PER_PARTITION)
    ]
    records = [
        pb.Record(
            key=key,
            value=value,
            partition=partition,
            headers=[
                pb.Header(key=name) if data is None else pb.Header(key=name, value=data)
                for name, data in headers
            ],
        )
        for partition, key, value, headers in made
    ]

    async def scenario() -> list[pb.ProduceResult]:
        async with grpc.aio.insecure_channel(agents.grpc_target) as channel:
            request = pb.ProduceRequest(topic=topic, records=records, ack=pb.ACK_DURABLE)
            answer = await rpc.RecordsStub(channel).Produce(request, timeout=TIMEOUT_S)
            return list(answer.results)

    results = asyncio.run(scenario())
    for result in results:
        assert not result.HasField("error"), result.error
    return [
        (result.partition, result.offset, key, value, headers)
        for result, (_, key, value, headers) in zip(results, made, strict=True)
    ]


def test_rest_and_grpc_of_process_0_serve_every_partition(agents: AgentProcess) -> None:
    topic = _topic_led_by_both(agents)
    told: list[Row] = []
    for partition in range(PARTITIONS):
        told += _produce_rest_v2(agents, topic, partition)
    told += _produce_grpc(agents, topic)
    told.sort(key=lambda row: (row[0], row[1]))
    assert [(row[0], row[1]) for row in told] == [
        (p, offset) for p in range(PARTITIONS) for offset in range(2 * PER_PARTITION)
    ], "each partition's offsets told are 0..n-1"
    read = read_kafka(agents, topic, len(told), PARTITIONS)
    assert sorted(read, key=lambda r: (r[0], r[1])) == told
    assert sorted(read_grpc(agents, topic), key=lambda r: (r[0], r[1])) == told  # type: ignore[arg-type]


def _coordinator_port(agents: AgentProcess, group: str) -> int:
    """The Kafka port of the process coordinating `group`, as FindCoordinator answers."""
    values = {"key": group, "key_type": 0}
    body = _ask(agents.port, KafkaCall(ApiKey.FIND_COORDINATOR, FIND_COORDINATOR_VERSION, values))
    assert not body.error_code, body
    return int(body.port)


def _ask(port: int, request: KafkaCall) -> Any:
    """The answer of the process listening on `port` to one Kafka request."""
    (body,) = asyncio.run(
        call_agent(
            LOOPBACK,
            port,
            [request],
            client_id="phase16-processes",
            timeout_ms=int(TIMEOUT_S * 1000),
            response_bytes_max=RESPONSE_BYTES_MAX,
        )
    )
    return body


def _group_of_process_1(agents: AgentProcess) -> str:
    """A fresh group id that process 1 coordinates (once it holds coordinator slots)."""
    found: list[str] = []

    def look() -> bool:
        for _ in range(GROUP_IDS_PER_LOOK_MAX):
            group = f"procs-{uuid.uuid4().hex[:8]}"
            if _coordinator_port(agents, group) == agents.kafka_ports[1]:
                found.append(group)
                return True
        return False

    within(TIMEOUT_S, look, "a group coordinated by process 1")
    return found[0]


def _committed(agents: AgentProcess, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": agents.bootstrap, "group.id": group})
    try:
        found = consumer.committed([KafkaPartition(topic, p) for p in range(PARTITIONS)], TIMEOUT_S)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found}


def test_rest_consumer_of_process_0_in_a_group_process_1_coordinates(
    agents: AgentProcess,
) -> None:
    topic = _topic_led_by_both(agents)
    told: list[Row] = []
    for partition in range(PARTITIONS):
        told += _produce_rest_v2(agents, topic, partition)
    group = _group_of_process_1(agents)
    rest = RestMember(agents, group, **{"auto.commit.enable": "false"})  # type: ignore[arg-type]
    try:
        assert rest.send("POST", "/subscription", {"topics": [topic]}).status == 204
        read: dict[tuple[int, int], bytes] = {}
        for _ in range(POLLS_MAX):
            if len(read) >= len(told):
                break
            for record in rest.records():
                read[(record["partition"], record["offset"])] = base64.b64decode(record["value"])
        assert read == {(row[0], row[1]): row[3] for row in told}
        describe = KafkaCall(ApiKey.DESCRIBE_GROUPS, DESCRIBE_GROUPS_VERSION, {"groups": [group]})
        (described,) = _ask(agents.kafka_ports[1], describe).groups
        assert (described.group_state, len(described.members)) == ("Stable", 1)  # the instance
        assert rest.send("POST", "/offsets").status == 204  # everything it read
    finally:
        rest.send("DELETE", "")
    assert _committed(agents, group, topic) == dict.fromkeys(range(PARTITIONS), PER_PARTITION)


def test_grpc_commit_and_lag_of_a_group_process_1_coordinates(agents: AgentProcess) -> None:
    topic = _topic_led_by_both(agents)
    for partition in range(PARTITIONS):
        _produce_rest_v2(agents, topic, partition)
    group = _group_of_process_1(agents)
    offsets = [pb.PartitionOffset(topic=topic, partition=p, offset=p) for p in range(PARTITIONS)]

    async def commit_and_describe() -> tuple[pb.CommitResponse, pb.DescribeGroupResponse]:
        async with grpc.aio.insecure_channel(agents.grpc_target) as channel:
            request = pb.CommitRequest(group=group, offsets=offsets)
            committed = await rpc.RecordsStub(channel).Commit(request, timeout=TIMEOUT_S)
            describe = pb.DescribeGroupRequest(group_id=group)
            return committed, await rpc.AdminStub(channel).DescribeGroup(
                describe, timeout=TIMEOUT_S
            )

    answer, described = asyncio.run(commit_and_describe())
    assert [r.HasField("error") for r in answer.results] == [False] * PARTITIONS, answer
    assert _committed(agents, group, topic) == {p: p for p in range(PARTITIONS)}
    lag = {p: max(0, PER_PARTITION - p) for p in range(PARTITIONS)}  # 2, 1, 0, 0
    assert {o.partition: (o.offset, o.lag) for o in described.offsets} == {
        p: (p, lag[p]) for p in range(PARTITIONS)
    }
    lags = call(agents.rest_port, "GET", CLUSTER + f"/consumer-groups/{group}/lags")
    assert lags.status == 200, lags.raw
    assert {row["partition_id"]: row["lag"] for row in lags.json["data"]} == lag
    summary = call(agents.rest_port, "GET", CLUSTER + f"/consumer-groups/{group}/lag-summary")
    assert summary.status == 200, summary.raw
    found = summary.json
    assert (found["total_lag"], found["max_lag"], found["max_lag_partition_id"]) == (3, 2, 0)
