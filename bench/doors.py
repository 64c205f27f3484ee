"""REST and gRPC next to Kafka (issue F14): produce throughput and latency through each door
for the same records, against one agent process on embedded defaults.

Throughput: RECORDS records of VALUE_BYTES bytes (keyless, one partition) sent in requests of
BATCH_RECORDS records (REST v2 binary, gRPC Produce) or by a confluent-kafka producer with
its own batching (linger 5 ms), WINDOW requests in flight per HTTP/gRPC client (REST over
WINDOW keep-alive connections, gRPC over one channel), ack=durable and ack=leader. Latency:
one record per request, one request at a time, LATENCY_REQUESTS of them, ack=leader (the WAL
fsync) and ack=durable (the object committed); p50 and p99. The clients share the machine's 2
cores with the agent, so the figures are the doors' cost as well as the client's.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from confluent_kafka import Producer

from bench.agents import create_topic, figure, print_table, running_agent, scratch_dir
from streamhouse.server.grpc import streamhouse_pb2 as pb
from streamhouse.server.grpc import streamhouse_pb2_grpc as rpc
from streamhouse.testing.agent_process import AgentProcess
from streamhouse.testing.network import LOOPBACK

RECORDS = 50_000
VALUE_BYTES = 100
BATCH_RECORDS = 250
WINDOW = 16  # requests in flight per door (a durable ack waits for a flush)
LATENCY_REQUESTS = 200
CALL_TIMEOUT_S = 30.0
KAFKA_LINGER_MS = 5
ACKS = {"leader": ("1", pb.ACK_LEADER), "durable": ("all", pb.ACK_DURABLE)}
DOORS = ("kafka", "rest", "grpc")


def run() -> dict[str, Any]:
    with scratch_dir("bench-doors-") as scratch, running_agent(scratch / "data") as agent:
        value = bytes(range(VALUE_BYTES % 256)) * (VALUE_BYTES // 256) + bytes(VALUE_BYTES % 256)
        result: dict[str, Any] = {"records": RECORDS, "value_bytes": VALUE_BYTES}
        for ack in ACKS:
            for door in DOORS:
                topic = f"doors-{door}-{ack}"
                create_topic(agent.bootstrap, topic, 1)
                result[f"{door}_{ack}"] = {
                    "records_per_s": _throughput(agent, door, ack, topic, value),
                    **_latency(agent, door, ack, topic, value),
                }
    _print(result)
    return result


def _throughput(agent: AgentProcess, door: str, ack: str, topic: str, value: bytes) -> float:
    started = time.perf_counter()
    if door == "kafka":
        _kafka_burst(agent, ack, topic, value)
    elif door == "rest":
        asyncio.run(_windowed(lambda: _rest_sender(agent, ack, topic, value)))
    else:
        asyncio.run(_grpc_burst(agent, ack, topic, value))
    return round(RECORDS / (time.perf_counter() - started), 1)


def _kafka_burst(agent: AgentProcess, ack: str, topic: str, value: bytes) -> None:
    producer = Producer(
        {"bootstrap.servers": agent.bootstrap, "acks": ACKS[ack][0], "linger.ms": KAFKA_LINGER_MS}
    )
    failed: list[Any] = []

    def delivered(error: Any, _: Any) -> None:
        if error is not None:
            failed.append(error)

    for _ in range(RECORDS):
        while True:
            try:
                producer.produce(topic, value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(CALL_TIMEOUT_S) == 0 and not failed, failed


def _rest_body(value: bytes, count: int) -> bytes:
    encoded = base64.b64encode(value).decode()
    return json.dumps({"records": [{"value": encoded}] * count}).encode()


def _rest_sender(
    agent: AgentProcess, ack: str, topic: str, value: bytes
) -> Callable[[], Awaitable[None]]:
    """One keep-alive connection's sender of BATCH_RECORDS-record requests (a thread each)."""
    connection = http.client.HTTPConnection(LOOPBACK, agent.rest_port, timeout=CALL_TIMEOUT_S)
    body = _rest_body(value, BATCH_RECORDS)

    def send() -> None:
        _rest_post(connection, f"/topics/{topic}?ack={ack}", body)

    async def sender() -> None:
        await asyncio.to_thread(send)

    return sender


def _rest_post(connection: http.client.HTTPConnection, path: str, body: bytes) -> None:
    headers = {"Content-Type": "application/vnd.kafka.binary.v2+json"}
    connection.request("POST", path, body=body, headers=headers)
    answer = connection.getresponse()
    text = answer.read()
    assert answer.status == 200, text
    assert all(o["error_code"] is None for o in json.loads(text)["offsets"]), text


async def _windowed(make_sender: Callable[[], Callable[[], Awaitable[None]]]) -> None:
    """RECORDS / BATCH_RECORDS requests, WINDOW senders each sending its share in turn."""
    requests = RECORDS // BATCH_RECORDS
    senders = [make_sender() for _ in range(WINDOW)]

    async def lane(sender: Callable[[], Awaitable[None]], count: int) -> None:
        for _ in range(count):
            await sender()

    shares = [requests // WINDOW + (1 if i < requests % WINDOW else 0) for i in range(WINDOW)]
    await asyncio.gather(*(lane(s, n) for s, n in zip(senders, shares, strict=True)))


async def _grpc_burst(agent: AgentProcess, ack: str, topic: str, value: bytes) -> None:
    async with grpc.aio.insecure_channel(agent.grpc_target) as channel:
        stub = rpc.RecordsStub(channel)
        request = pb.ProduceRequest(
            topic=topic, records=[pb.Record(value=value)] * BATCH_RECORDS, ack=ACKS[ack][1]
        )

        def make_sender() -> Callable[[], Awaitable[None]]:
            async def sender() -> None:
                answer = await stub.Produce(request, timeout=CALL_TIMEOUT_S)
                assert not any(r.HasField("error") for r in answer.results), answer

            return sender

        await _windowed(make_sender)


def _latency(
    agent: AgentProcess, door: str, ack: str, topic: str, value: bytes
) -> dict[str, float]:
    if door == "kafka":
        samples = _kafka_latencies(agent, ack, topic, value)
    elif door == "rest":
        samples = _rest_latencies(agent, ack, topic, value)
    else:
        samples = asyncio.run(_grpc_latencies(agent, ack, topic, value))
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 2),
    }


def _kafka_latencies(agent: AgentProcess, ack: str, topic: str, value: bytes) -> list[float]:
    producer = Producer(
        {"bootstrap.servers": agent.bootstrap, "acks": ACKS[ack][0], "linger.ms": 0}
    )
    samples: list[float] = []
    for _ in range(LATENCY_REQUESTS):
        started = time.perf_counter()
        producer.produce(topic, value)
        assert producer.flush(CALL_TIMEOUT_S) == 0
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _rest_latencies(agent: AgentProcess, ack: str, topic: str, value: bytes) -> list[float]:
    connection = http.client.HTTPConnection(LOOPBACK, agent.rest_port, timeout=CALL_TIMEOUT_S)
    body = _rest_body(value, 1)
    samples: list[float] = []
    for _ in range(LATENCY_REQUESTS):
        started = time.perf_counter()
        _rest_post(connection, f"/topics/{topic}?ack={ack}", body)
        samples.append((time.perf_counter() - started) * 1000)
    connection.close()
    return samples


async def _grpc_latencies(agent: AgentProcess, ack: str, topic: str, value: bytes) -> list[float]:
    samples: list[float] = []
    async with grpc.aio.insecure_channel(agent.grpc_target) as channel:
        stub = rpc.RecordsStub(channel)
        request = pb.ProduceRequest(topic=topic, records=[pb.Record(value=value)], ack=ACKS[ack][1])
        for _ in range(LATENCY_REQUESTS):
            started = time.perf_counter()
            await stub.Produce(request, timeout=CALL_TIMEOUT_S)
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def _print(result: dict[str, Any]) -> None:
    rows = [
        [
            f"{door} ack={ack}",
            figure(result[f"{door}_{ack}"]["records_per_s"]),
            str(result[f"{door}_{ack}"]["p50_ms"]),
            str(result[f"{door}_{ack}"]["p99_ms"]),
        ]
        for ack in ACKS
        for door in DOORS
    ]
    title = f"Produce through each door ({RECORDS} x {VALUE_BYTES} B, {BATCH_RECORDS}/request)"
    print_table(title, ["door", "records/s", "p50 ms (1 record)", "p99 ms"], rows)
