"""`streamctl groups` against a real agent: list, describe, lag, reset-offsets and delete.

The commands run in-process through Typer's CliRunner (the entry point itself runs as a
subprocess in test_streamctl.py); a real confluent-kafka consumer makes the group.
"""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from rich.console import Console
from typer.testing import CliRunner, Result

from streamhouse.cli import agent_client
from streamhouse.cli.streamctl import app
from tests.e2e.conftest import Agent

TOPIC = "orders"
GROUP = "billing"
PARTITION_COUNT = 3
RECORDS_PER_PARTITION = 10
EXTRA_ON_PARTITION_1 = 5
T0_MS = 1_700_000_000_000  # record i of partition 0 is stamped T0_MS + i seconds
CONSUME_POLLS_MAX = 200
WAIT_S = 10


@pytest.fixture(autouse=True)
def wide_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables at full width, so long cells are not cut in the captured output."""
    monkeypatch.setattr(agent_client, "console", Console(width=250))
    monkeypatch.setattr(agent_client, "errors", Console(width=250, stderr=True))


def streamctl(agent: Agent, *args: str) -> Result:
    runner = CliRunner()
    return runner.invoke(app, ["groups", *args], env={"STREAMHOUSE_BOOTSTRAP": agent.bootstrap})


def fill_topic(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, PARTITION_COUNT, 1)])[TOPIC].result(timeout=WAIT_S)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for partition in range(PARTITION_COUNT):
        for index in range(RECORDS_PER_PARTITION):
            stamp = T0_MS + index * 1000
            producer.produce(TOPIC, b"v", partition=partition, timestamp=stamp)
    assert producer.flush(WAIT_S) == 0


def consume_all_and_commit(bootstrap: str) -> Consumer:
    """A group member that has read and committed every record; it stays in the group."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": GROUP,
            "client.id": "lag-checker",
            "partition.assignment.strategy": "range",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([TOPIC])
    read = 0
    for _ in range(CONSUME_POLLS_MAX):
        message = consumer.poll(0.1)
        if message is not None and message.error() is None:
            read += 1
        if read == PARTITION_COUNT * RECORDS_PER_PARTITION:
            break
    assert read == PARTITION_COUNT * RECORDS_PER_PARTITION
    consumer.commit(asynchronous=False)
    return consumer


def committed(bootstrap: str) -> dict[int, int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = [ConsumerGroupTopicPartitions(GROUP)]
    result = admin.list_consumer_group_offsets(request)[GROUP].result(timeout=WAIT_S)
    return {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}


def lag_rows(output: str) -> dict[str, list[str]]:
    """Rows of the lag table keyed by partition (or "total"), cells split on the box bars."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().split("│")[1:-1]]
        if len(cells) == 6 and cells[0] in (TOPIC, "total"):
            rows[cells[1] if cells[0] == TOPIC else "total"] = cells
    return rows


def test_groups_commands_against_a_running_agent(group_agent: Agent) -> None:
    bootstrap = group_agent.bootstrap
    fill_topic(bootstrap)
    consumer = consume_all_and_commit(bootstrap)
    try:
        producer = Producer({"bootstrap.servers": bootstrap})
        for _ in range(EXTRA_ON_PARTITION_1):
            producer.produce(TOPIC, b"late", partition=1)
        assert producer.flush(WAIT_S) == 0

        listed = streamctl(group_agent, "list")
        assert listed.exit_code == 0, listed.output
        assert GROUP in listed.output and "STABLE" in listed.output

        described = streamctl(group_agent, "describe", GROUP)
        assert described.exit_code == 0, described.output
        assert "lag-checker" in described.output and "range" in described.output
        assert all(f"{TOPIC}-{p}" in described.output for p in range(PARTITION_COUNT))

        lag = streamctl(group_agent, "lag", GROUP)
        assert lag.exit_code == 0, lag.output
        rows = lag_rows(lag.output)
        assert rows["0"][2:5] == ["10", "10", "0"] and rows["1"][2:5] == ["10", "15", "5"]
        assert rows["0"][5].startswith("lag-checker")
        assert rows["total"][4] == str(EXTRA_ON_PARTITION_1)

        refused = streamctl(group_agent, "reset-offsets", GROUP, "-t", TOPIC, "--to-earliest")
        assert refused.exit_code == 1
        assert "active member" in refused.stderr and "Stop its consumers" in refused.stderr
        not_deleted = streamctl(group_agent, "delete", GROUP)
        assert not_deleted.exit_code == 1 and "active members" in not_deleted.stderr
        assert committed(bootstrap) == {0: 10, 1: 10, 2: 10}
    finally:
        consumer.close()

    described = streamctl(group_agent, "describe", GROUP)
    assert described.exit_code == 0 and "EMPTY" in described.output

    dry = streamctl(
        group_agent, "reset-offsets", GROUP, "-t", TOPIC, "--to-offset", "3", "--dry-run"
    )
    assert dry.exit_code == 0, dry.output
    assert "dry run" in dry.output
    assert committed(bootstrap) == {0: 10, 1: 10, 2: 10}

    reset = streamctl(group_agent, "reset-offsets", GROUP, "-t", TOPIC, "--to-offset", "3")
    assert reset.exit_code == 0, reset.output
    assert committed(bootstrap) == {0: 3, 1: 3, 2: 3}
    beyond = streamctl(group_agent, "reset-offsets", GROUP, "-t", TOPIC, "--to-offset", "99")
    assert beyond.exit_code == 0, beyond.output
    assert committed(bootstrap) == {0: 10, 1: 15, 2: 10}  # kept within each log
    earliest = streamctl(group_agent, "reset-offsets", GROUP, "-t", TOPIC, "--to-earliest")
    assert earliest.exit_code == 0 and committed(bootstrap) == {0: 0, 1: 0, 2: 0}
    latest = streamctl(group_agent, "reset-offsets", GROUP, "-t", TOPIC, "--to-latest", "-p", "1")
    assert latest.exit_code == 0 and committed(bootstrap) == {0: 0, 1: 15, 2: 0}
    # Record 4 of partition 0 is the first stamped at or after T0 + 3.5 s.
    by_time = streamctl(
        group_agent,
        "reset-offsets",
        GROUP,
        "-t",
        TOPIC,
        "-p",
        "0",
        "--to-datetime",
        "2023-11-14T22:13:23.500+00:00",
    )
    assert by_time.exit_code == 0, by_time.output
    assert committed(bootstrap) == {0: 4, 1: 15, 2: 0}

    both = streamctl(
        group_agent, "reset-offsets", GROUP, "-t", TOPIC, "--to-latest", "--to-earliest"
    )
    assert both.exit_code == 2 and "exactly one" in both.output
    bad_time = streamctl(group_agent, "reset-offsets", GROUP, "-t", TOPIC, "--to-datetime", "noon")
    assert bad_time.exit_code == 2 and "ISO 8601" in bad_time.output
    no_topic = streamctl(group_agent, "reset-offsets", GROUP, "-t", "nope", "--to-earliest")
    assert no_topic.exit_code == 1 and "does not exist" in no_topic.stderr

    deleted = streamctl(group_agent, "delete", GROUP)
    assert deleted.exit_code == 0, deleted.output
    assert GROUP not in streamctl(group_agent, "list").output
    for command in (["describe", GROUP], ["lag", GROUP], ["delete", GROUP]):
        unknown = streamctl(group_agent, *command)
        assert unknown.exit_code == 1, (command, unknown.output)
        assert f"no consumer group named '{GROUP}'" in unknown.stderr


def test_reset_of_a_group_that_never_existed_creates_its_offsets(group_agent: Agent) -> None:
    """As Kafka's tool does: offsets set ahead of a group's first consumer."""
    fill_topic(group_agent.bootstrap)
    reset = streamctl(group_agent, "reset-offsets", GROUP, "-t", TOPIC, "--to-offset", "7")
    assert reset.exit_code == 0, reset.output
    assert committed(group_agent.bootstrap) == {0: 7, 1: 7, 2: 7}
    consumer = Consumer(
        {"bootstrap.servers": group_agent.bootstrap, "group.id": GROUP, "enable.auto.commit": False}
    )
    try:
        consumer.subscribe([TOPIC])
        first = None
        for _ in range(CONSUME_POLLS_MAX):
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                first = message
                break
        assert first is not None and first.offset() == 7
    finally:
        consumer.close()
