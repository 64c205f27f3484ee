"""Phase 1: bootstrap and health. A real agent process starts from the package on embedded
defaults; every client library bootstraps against it unchanged; /health, /ready and /metrics
answer; a taken port is refused with a clear message and exit code 1."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient

from streamhouse.engine.coordinators import COORDINATOR_SLOTS
from streamhouse.testing.network import free_loopback_port
from tests.e2e.conftest import Agent, start_agent

HTTP_TIMEOUT_S = 10
SLOTS_TAKEN_WITHIN_S = 30  # generous: a few ownership rounds on a loaded machine
POLL_S = 0.2
CLIENT_TIMEOUT_S = 15
START_REFUSED_TIMEOUT_S = 60


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            return response.status, response.headers["content-type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["content-type"], error.read().decode()


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


def test_health_and_readiness(agent: Agent) -> None:
    status, content_type, body = _get(agent.http_base + "/health")
    assert status == 200 and content_type == "application/json"
    health = json.loads(body)
    assert health["status"] == "ok"
    assert health["agent_id"] == (agent.data_dir / "local" / "agent-id").read_text().strip()

    status, _, body = _get(agent.http_base + "/ready")
    assert status == 200, body
    assert json.loads(body) == {"status": "ready", "problems": [], "kafka": agent.bootstrap}

    status, _, _ = _get(agent.http_base + "/no-such-page")
    assert status == 404


def test_every_client_bootstraps_unchanged(agent: Agent) -> None:
    cluster = AdminClient({"bootstrap.servers": agent.bootstrap}).list_topics(
        timeout=CLIENT_TIMEOUT_S
    )
    assert [(b.host, b.port) for b in cluster.brokers.values()] == [("127.0.0.1", agent.port)]

    admin = KafkaAdminClient(bootstrap_servers=agent.bootstrap, request_timeout_ms=10_000)
    try:
        brokers = admin.describe_cluster()["brokers"]
        assert [(b["host"], b["port"]) for b in brokers] == [("127.0.0.1", agent.port)]
    finally:
        admin.close()

    async def aiokafka_bootstrap() -> Any:
        producer = AIOKafkaProducer(bootstrap_servers=agent.bootstrap)
        await producer.start()
        try:
            return await producer.send_and_wait("phase1-aiokafka", b"hello")
        finally:
            await producer.stop()

    metadata = asyncio.run(asyncio.wait_for(aiokafka_bootstrap(), CLIENT_TIMEOUT_S))
    assert metadata.topic == "phase1-aiokafka" and metadata.offset == 0


def test_metrics_follow_the_traffic(agent: Agent) -> None:
    _, content_type, before = _get(agent.http_base + "/metrics")
    assert content_type.startswith("text/plain")
    assert _metric(before, "streamhouse_wal_appended_entries_total") == 0

    producer = Producer({"bootstrap.servers": agent.bootstrap, "linger.ms": 0})
    for index in range(10):
        producer.produce("phase1-metrics", value=b"v%d" % index)
        producer.flush(CLIENT_TIMEOUT_S)  # one batch per record: ten WAL entries
    assert len(producer) == 0

    _, _, after = _get(agent.http_base + "/metrics")
    assert _metric(after, "streamhouse_wal_appended_entries_total") == 10
    assert _metric(after, "streamhouse_partitions_led") == 1
    assert _metric(after, "streamhouse_kafka_connections") >= 1
    assert _slots_led_within(agent, SLOTS_TAKEN_WITHIN_S) == COORDINATOR_SLOTS  # it is alone


def _slots_led_within(agent: Agent, timeout_s: float) -> float:
    """The coordinator slots the agent leads, once it leads them all or after `timeout_s`
    (its ownership service takes them in its first rounds)."""
    deadline = time.monotonic() + timeout_s
    while True:
        slots = _metric(_get(agent.http_base + "/metrics")[2], "streamhouse_coordinator_slots_led")
        if slots == COORDINATOR_SLOTS or time.monotonic() > deadline:
            return slots
        time.sleep(POLL_S)


def test_taken_ports_are_refused_clearly(tmp_path: Path) -> None:
    for flag in ("--kafka-port", "--http-port"):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            other = "--http-port" if flag == "--kafka-port" else "--kafka-port"
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "streamhouse",
                    "agent",
                    "--data-dir",
                    str(tmp_path / flag.strip("-")),
                    flag,
                    str(taken.getsockname()[1]),
                    other,
                    str(free_loopback_port()),
                ],
                capture_output=True,
                text=True,
                timeout=START_REFUSED_TIMEOUT_S,
            )
        assert result.returncode == 1, result.stderr
        assert "cannot start" in result.stderr and "address already in use" in result.stderr.lower()


def test_http_can_be_turned_off(tmp_path: Path) -> None:
    running = start_agent(tmp_path / "data", "--http-port", "-1")
    try:
        assert running.process.poll() is None
    finally:
        assert running.stop() == 0
