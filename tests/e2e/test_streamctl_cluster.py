"""`streamctl cluster` against a real agent: the agent (its id, node id, address), the
partitions it leads, their lease epochs and durable lag, as a table and as JSON.

Partition 0 of "orders" is made durable (acks=all) by a first run of the agent; the agent then
runs again with a flush interval longer than the test, and partition 1 gets acks=1 records,
acknowledged from the WAL and not yet in the object store: its durable lag is their count.
kafka-python's ListOffsets with OffsetSpec.LATEST_TIERED (KIP-1005) and confluent-kafka's
admin client check the same numbers independently.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka import TopicPartition as ConfluentPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, OffsetSpec, ResourceType
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.admin import OffsetSpec as KafkaOffsetSpec
from rich.console import Console
from typer.testing import CliRunner, Result

from streamhouse.cli import agent_client
from streamhouse.cli.streamctl import app
from streamhouse.testing.network import free_loopback_port
from tests.e2e.conftest import Agent, start_agent

WAIT_S = 15
DURABLE_RECORDS = 7  # partition 0, acks=all
WAL_ONLY_RECORDS = 5  # partition 1, acks=1, never flushed during the test
FLUSH_NEVER_MS = "600000"


@pytest.fixture(autouse=True)
def wide_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables at full width, so long cells are not cut in the captured output."""
    monkeypatch.setattr(agent_client, "console", Console(width=250))
    monkeypatch.setattr(agent_client, "errors", Console(width=250, stderr=True))


def _produce(bootstrap: str, partition: int, count: int, acks: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks})
    for index in range(count):
        producer.produce("orders", b"record-%d" % index, partition=partition)
    assert producer.flush(WAIT_S) == 0


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    data_dir: Path = tmp_path_factory.mktemp("streamctl-cluster") / "data"
    with start_agent(data_dir) as first:
        admin = AdminClient({"bootstrap.servers": first.bootstrap})
        admin.create_topics([NewTopic("orders", 2)])["orders"].result(WAIT_S)
        _produce(first.bootstrap, 0, DURABLE_RECORDS, "all")
        first.stop_cleanly()
    with start_agent(data_dir, "--flush-interval-ms", FLUSH_NEVER_MS) as running:
        _produce(running.bootstrap, 1, WAL_ONLY_RECORDS, "1")
        yield running
        running.stop_cleanly()


def streamctl(agent: Agent, *args: str) -> Result:
    return CliRunner().invoke(
        app, ["cluster", *args], env={"STREAMHOUSE_BOOTSTRAP": agent.bootstrap}
    )


def _agent_id(agent: Agent) -> str:
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    resource = ConfigResource(ResourceType.BROKER, "0")
    configs = admin.describe_configs([resource])[resource].result(WAIT_S)
    return str(configs["streamhouse.agent.id"].value)


def _lease_epochs(agent: Agent) -> dict[int, int]:
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    wanted = {ConfluentPartition("orders", p): OffsetSpec.latest() for p in (0, 1)}
    answers = admin.list_offsets(wanted)
    return {tp.partition: future.result(WAIT_S).leader_epoch for tp, future in answers.items()}


def test_json_lists_the_agent_its_partitions_epochs_and_durable_lag(agent: Agent) -> None:
    result = streamctl(agent, "--output", "json")
    assert result.exit_code == 0, result.output
    view: dict[str, Any] = json.loads(result.stdout)
    agent_id = _agent_id(agent)
    assert (view["cluster_id"], view["controller_id"]) == ("streamhouse-default", 0)
    (listed,) = view["agents"]
    assert listed["size_bytes"] > 0
    assert listed == {
        "node_id": 0,
        "agent_id": agent_id,
        "address": agent.bootstrap,
        "controller": True,
        "partitions_led": 2,
        "size_bytes": listed["size_bytes"],
    }
    durable, wal_only = view["partitions"]
    epochs = _lease_epochs(agent)
    assert durable["size_bytes"] > DURABLE_RECORDS * len(b"record-0")
    assert durable == {
        "topic": "orders",
        "partition": 0,
        "leader": 0,
        "agent_id": agent_id,
        "lease_epoch": epochs[0],
        "high_watermark": DURABLE_RECORDS,
        "durable_offset": DURABLE_RECORDS,
        "durable_lag": 0,
        "size_bytes": durable["size_bytes"],
    }
    assert wal_only == {
        "topic": "orders",
        "partition": 1,
        "leader": 0,
        "agent_id": agent_id,
        "lease_epoch": epochs[1],
        "high_watermark": WAL_ONLY_RECORDS,
        "durable_offset": 0,
        "durable_lag": WAL_ONLY_RECORDS,
        "size_bytes": 0,
    }
    assert epochs[0] >= 1 and epochs[1] >= 1


def test_the_table_shows_the_same(agent: Agent) -> None:
    result = streamctl(agent)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    agent_id = _agent_id(agent)
    (agent_line,) = [line for line in lines if agent.bootstrap in line]
    assert agent_id in agent_line and "yes" in agent_line
    rows = [line.split("│")[1:-1] for line in lines if line.startswith("│ orders")]
    cells = [[cell.strip() for cell in row] for row in rows]
    assert [row[:2] + row[4:7] for row in cells] == [
        ["orders", "0", str(DURABLE_RECORDS), str(DURABLE_RECORDS), "0"],
        ["orders", "1", str(WAL_ONLY_RECORDS), "0", str(WAL_ONLY_RECORDS)],
    ]
    assert all(row[2] == f"0 ({agent_id})" for row in cells)


def test_kafka_python_reads_the_durable_end_as_the_latest_tiered_offset(agent: Agent) -> None:
    admin = KafkaAdminClient(bootstrap_servers=agent.bootstrap, request_timeout_ms=WAIT_S * 1000)
    try:
        tiered = admin.list_partition_offsets(
            {TopicPartition("orders", p): KafkaOffsetSpec.LATEST_TIERED for p in (0, 1)}
        )
    finally:
        admin.close()
    offsets = {tp.partition: answer.offset for tp, answer in tiered.items()}
    assert offsets == {0: DURABLE_RECORDS - 1, 1: -1}  # the last offset in the object store


def test_an_unreachable_agent_is_one_clear_error() -> None:
    nobody = f"127.0.0.1:{free_loopback_port()}"
    result = CliRunner().invoke(app, ["cluster", "--timeout", "2", "--bootstrap", nobody])
    assert result.exit_code == 1
    assert f"cannot reach an agent at {nobody} within 2 s" in result.stderr
    malformed = CliRunner().invoke(app, ["cluster", "--bootstrap", "no-port"])
    assert malformed.exit_code == 1
    assert "--bootstrap must be host:port, not 'no-port'" in malformed.stderr
