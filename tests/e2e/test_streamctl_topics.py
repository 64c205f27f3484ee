"""`streamctl topics` against a real agent: list, create, describe, alter-config and delete,
all through the agent's Kafka admin API (the agent's rules apply, refusals carry Kafka's
error names; test_streamctl.py checks streamctl never loads the metadata store).

The commands run in-process through Typer's CliRunner; confluent-kafka checks what they did.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from rich.console import Console
from typer.testing import CliRunner, Result

from streamhouse.cli import agent_client
from streamhouse.cli.streamctl import app
from tests.e2e.conftest import Agent, start_agent

AGENT_PARTITIONS = 2  # the agent's --num-partitions
RECORDS_ON_PARTITION_1 = 5
DELETED_UP_TO = 2
WAIT_S = 10


@pytest.fixture(autouse=True)
def wide_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables at full width, so long cells are not cut in the captured output."""
    monkeypatch.setattr(agent_client, "console", Console(width=250))
    monkeypatch.setattr(agent_client, "errors", Console(width=250, stderr=True))


@pytest.fixture
def topic_agent(tmp_path: Path) -> Iterator[Agent]:
    running = start_agent(tmp_path / "data", "--num-partitions", str(AGENT_PARTITIONS))
    yield running
    if running.process.poll() is None:
        assert running.stop() == 0


def streamctl(agent: Agent, *args: str, answer: str | None = None) -> Result:
    env = {"STREAMHOUSE_BOOTSTRAP": agent.bootstrap, "STREAMHOUSE_HTTP": agent.http_base}
    return CliRunner().invoke(app, ["topics", *args], env=env, input=answer)


def listed(agent: Agent) -> list[dict[str, Any]]:
    result = streamctl(agent, "list", "--output", "json")
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def overrides(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=WAIT_S)
    return {name: e.value for name, e in entries.items() if not e.is_default}


def fill_partition_1(bootstrap: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for _ in range(RECORDS_ON_PARTITION_1):
        producer.produce("orders", b"v", partition=1)
    assert producer.flush(WAIT_S) == 0
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.delete_records([TopicPartition("orders", 1, DELETED_UP_TO)])
    for future in futures.values():
        future.result(timeout=WAIT_S)


def test_topic_lifecycle_through_a_running_agent(topic_agent: Agent) -> None:
    created = streamctl(topic_agent, "create", "orders", "-p", "3", "-c", "retention.ms=1000")
    assert created.exit_code == 0, created.output
    assert "created topic orders with 3 partition(s)" in created.output
    by_default = streamctl(topic_agent, "create", "events")
    assert by_default.exit_code == 0, by_default.output
    assert f"with {AGENT_PARTITIONS} partition(s)" in by_default.output
    assert listed(topic_agent) == [
        {"topic": "events", "partitions": AGENT_PARTITIONS, "configs": {}},
        {"topic": "orders", "partitions": 3, "configs": {"retention.ms": "1000"}},
    ]
    table = streamctl(topic_agent, "list")
    assert table.exit_code == 0 and "retention.ms=1000" in table.output

    fill_partition_1(topic_agent.bootstrap)
    described = streamctl(topic_agent, "describe", "orders", "--output", "json")
    assert described.exit_code == 0, described.output
    shown = json.loads(described.stdout)
    partitions = {row["partition"]: row for row in shown["partitions"]}
    assert sorted(partitions) == [0, 1, 2]
    assert partitions[1]["high watermark"] == RECORDS_ON_PARTITION_1
    assert partitions[1]["log start"] == DELETED_UP_TO
    assert partitions[0]["high watermark"] == partitions[0]["log start"] == 0
    assert all(row["leader epoch"] >= 1 for row in partitions.values())
    assert all(row["leader"].startswith("0 (127.0.0.1:") for row in partitions.values())
    # acks=all: partition 1's records are in the bucket, the others have nothing there
    assert partitions[1]["bytes"] > 0 and partitions[1]["objects"] >= 1
    assert (partitions[0]["bytes"], partitions[0]["objects"]) == (0, 0)
    configs = {row["config"]: (row["value"], row["source"]) for row in shown["configs"]}
    assert configs["retention.ms"] == ("1000", "DYNAMIC_TOPIC_CONFIG")
    assert configs["cleanup.policy"] == ("delete", "DEFAULT_CONFIG")
    as_table = streamctl(topic_agent, "describe", "orders")
    assert as_table.exit_code == 0, as_table.output
    assert "high watermark" in as_table.output and "DYNAMIC_TOPIC_CONFIG" in as_table.output
    assert "objects" in as_table.output
    without_http = streamctl(topic_agent, "describe", "orders", "--http", "http://127.0.0.1:1")
    assert without_http.exit_code == 0, without_http.output
    assert "bytes and objects not shown" in without_http.output
    assert "objects" not in without_http.stdout

    altered = streamctl(
        topic_agent,
        "alter-config",
        "orders",
        "--set",
        "segment.ms=60000",
        "--append",
        "cleanup.policy=compact",
        "--delete",
        "retention.ms",
    )
    assert altered.exit_code == 0, altered.output
    assert overrides(topic_agent.bootstrap, "orders") == {
        "cleanup.policy": "delete,compact",
        "segment.ms": "60000",
    }
    subtracted = streamctl(
        topic_agent, "alter-config", "orders", "--subtract", "cleanup.policy=delete"
    )
    assert subtracted.exit_code == 0, subtracted.output
    assert overrides(topic_agent.bootstrap, "orders")["cleanup.policy"] == "compact"

    kept = streamctl(topic_agent, "delete", "orders", answer="n\n")
    assert kept.exit_code == 1 and "kept" in kept.output
    assert [row["topic"] for row in listed(topic_agent)] == ["events", "orders"]
    confirmed = streamctl(topic_agent, "delete", "orders", answer="y\n")
    assert confirmed.exit_code == 0 and "deleted topic orders" in confirmed.output
    without_asking = streamctl(topic_agent, "delete", "events", "--yes")
    assert without_asking.exit_code == 0, without_asking.output
    assert listed(topic_agent) == []


@pytest.mark.parametrize(
    ("args", "kafka_error"),
    [
        (["create", "taken"], "TOPIC_ALREADY_EXISTS"),
        (["create", "bad name!"], "TOPIC_EXCEPTION"),
        (["create", "empty", "-p", "0"], "INVALID_PARTITIONS"),
        (["create", "other", "-c", "min.insync.replicas=2"], "INVALID_CONFIG"),
        (["create", "other", "-c", "segment.ms=soon"], "INVALID_CONFIG"),
        (["describe", "missing"], "UNKNOWN_TOPIC_OR_PART"),
        (["alter-config", "taken", "--set", "retention.ms=-5"], "INVALID_CONFIG"),
        (["alter-config", "missing", "--set", "retention.ms=1"], "UNKNOWN_TOPIC_OR_PART"),
        (["delete", "missing", "--yes"], "UNKNOWN_TOPIC_OR_PART"),
    ],
)
def test_refusals_are_one_line_with_the_kafka_error_name(
    topic_agent: Agent, args: list[str], kafka_error: str
) -> None:
    assert streamctl(topic_agent, "create", "taken").exit_code == 0
    refused = streamctl(topic_agent, *args)
    assert refused.exit_code == 1, refused.output
    assert kafka_error in refused.stderr
    assert refused.stderr.startswith("error:") and "Traceback" not in refused.stderr
    assert [row["topic"] for row in listed(topic_agent)] == ["taken"]


@pytest.mark.parametrize(
    "args",
    [
        ["create", "t", "-c", "no-equals-sign"],
        ["alter-config", "t"],
        ["alter-config", "t", "--set", "=1"],
        ["list", "--output", "yaml"],
    ],
)
def test_malformed_commands_are_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["topics", *args])
    assert result.exit_code == 2, result.output
