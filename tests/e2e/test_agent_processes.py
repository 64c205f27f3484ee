"""`streamhouse agent --processes N`: the processes form one cluster that a Kafka client uses
whole, a dead process is restarted, SIGTERM stops them all, and a data directory keeps every
acknowledged record when the number of processes changes."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamhouse.supervisor import holds_wal_entries
from streamhouse.testing.agent_process import (
    AgentProcess,
    AgentProcessFailed,
    start_agent_process,
    start_agent_processes,
)
from streamhouse.testing.cluster import NO_LEADER, partition_leaders
from streamhouse.testing.network import LOOPBACK
from tests.e2e.conftest import E2E_FLUSH_INTERVAL_MS, within

PARTITIONS = 8
RECORDS = 800
TIMEOUT_S = 30
POLL_S = 0.5
NEVER_FLUSH_MS = "600000"  # longer than any test: acknowledged records stay in the WAL only


def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(TIMEOUT_S)


def _create_topic_led_by_both(bootstrap: str, topic: str) -> None:
    """Create the topic and wait until both processes lead some of its partitions (the
    Metadata answer's leaders)."""
    _create_topic(bootstrap, topic)
    within(
        TIMEOUT_S,
        lambda: len(set(partition_leaders(bootstrap, topic).values()) - {NO_LEADER}) == 2,
        "partitions led by both processes",
    )


def _produce(bootstrap: str, topic: str, acks: str) -> list[bytes]:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 5})
    values = [f"value-{index}".encode() for index in range(RECORDS)]
    failures: list[object] = []
    for index, value in enumerate(values):
        producer.produce(
            topic,
            value,
            partition=index % PARTITIONS,
            on_delivery=lambda error, _m: error and failures.append(error),
        )
    assert producer.flush(TIMEOUT_S) == 0
    assert failures == []
    return values


def _consume_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    values: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(values) < expected and time.monotonic() < deadline:
        message = consumer.poll(POLL_S)
        if message is not None and message.error() is None:
            values.append(message.value())
    consumer.close()
    return values


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its new parent has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _pids(agents: AgentProcess) -> list[int]:
    return [int(view["pid"]) for view in agents.health()]


def test_two_processes_lead_partitions_together_and_stop_on_sigterm(tmp_path: Path) -> None:
    with start_agent_processes(
        tmp_path / "data", 2, "--flush-interval-ms", E2E_FLUSH_INTERVAL_MS
    ) as agents:
        assert len(set(agents.kafka_ports)) == 2
        _create_topic_led_by_both(agents.bootstrap, "spread")
        sent = _produce(agents.bootstrap, "spread", "all")
        assert sorted(_consume_all(agents.bootstrap, "spread", len(sent))) == sorted(sent)
        # the supervisor's /api/v1 is a process's: every partition's rows, whoever leads it
        url = agents.http_base + "/api/v1/topics/spread/partitions"
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:
            stored = json.loads(answer.read())["partitions"]
        assert [shown["durable_end_offset"] for shown in stored] == [
            RECORDS // PARTITIONS
        ] * PARTITIONS
        assert all(shown["object_count"] >= 1 for shown in stored)
        pids = _pids(agents)
        assert agents.stop() == 0
        assert all(_gone(pid) for pid in pids), pids


def test_processes_stop_themselves_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    with start_agent_processes(tmp_path / "data", 2) as agents:
        pids = _pids(agents)
        agents.kill()
        within(TIMEOUT_S, lambda: all(_gone(pid) for pid in pids), "both processes exited")


def test_a_killed_process_is_restarted_and_keeps_serving(tmp_path: Path) -> None:
    with start_agent_processes(
        tmp_path / "data", 2, "--flush-interval-ms", E2E_FLUSH_INTERVAL_MS
    ) as agents:
        killed = agents.health()[1]
        os.kill(int(killed["pid"]), signal.SIGKILL)

        def restarted() -> bool:
            view = agents.health()[1]
            return bool(view["running"]) and view["pid"] != killed["pid"]

        within(TIMEOUT_S, restarted, "process 1 restarted")
        assert agents.health()[1]["agent_id"] == killed["agent_id"]  # its own WAL directory
        with urllib.request.urlopen(agents.http_base + "/metrics", timeout=TIMEOUT_S) as answer:
            assert 'streamhouse_process_restarts_total{process="1"} 1.0' in answer.read().decode()
        _create_topic(agents.bootstrap, "after-restart")
        sent = _produce(agents.bootstrap, "after-restart", "1")
        assert sorted(_consume_all(agents.bootstrap, "after-restart", len(sent))) == sorted(sent)
        agents.stop_cleanly()


def test_one_process_data_dir_is_process_zero_of_two(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with start_agent_process(data, "--flush-interval-ms", NEVER_FLUSH_MS) as single:
        _create_topic(single.bootstrap, "kept")
        sent = _produce(single.bootstrap, "kept", "1")
        single.kill()  # nothing flushed: the records are in the WAL only
    assert holds_wal_entries(str(data / "local"))
    with start_agent_processes(data, 2, "--flush-interval-ms", E2E_FLUSH_INTERVAL_MS) as agents:
        assert sorted(_consume_all(agents.bootstrap, "kept", len(sent))) == sorted(sent)
        agents.stop_cleanly()


def test_a_surplus_process_wal_is_drained_when_processes_shrink(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with start_agent_processes(data, 2, "--flush-interval-ms", NEVER_FLUSH_MS) as agents:
        _create_topic_led_by_both(agents.bootstrap, "kept")
        sent = _produce(agents.bootstrap, "kept", "1")
        pids = _pids(agents)
        agents.send_signal(signal.SIGSTOP)  # no restart, no graceful stop: a host crash
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        agents.kill()
    assert holds_wal_entries(str(data / "local-1"))
    with start_agent_process(data, "--flush-interval-ms", E2E_FLUSH_INTERVAL_MS) as single:
        assert not holds_wal_entries(str(data / "local-1"))
        assert sorted(_consume_all(single.bootstrap, "kept", len(sent))) == sorted(sent)
        single.stop_cleanly()


def test_a_process_that_cannot_start_stops_them_all(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AgentProcessFailed) as failed:
            start_agent_processes(tmp_path / "data", 2, "--kafka-port", str(port))
    said = " ".join(str(failed.value).split())  # the console wraps long lines
    assert "exited with 1" in said
    assert "process 0 exited with code 1 before serving" in said


def test_a_second_agent_on_a_data_dir_in_use_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with start_agent_process(data) as first:
        with pytest.raises(AgentProcessFailed) as refused:
            start_agent_process(data)
        said = " ".join(str(refused.value).split())  # the console wraps long lines
        assert f"in use by another agent process (pid {first.pid})" in said
        first.stop_cleanly()
