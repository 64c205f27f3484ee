"""`streamctl produce` and `streamctl consume` against a real agent: what they write and read is
cross-checked with confluent-kafka (records, keys, headers, partitions, offsets, a group's
committed offsets), follow mode runs as an operator runs it (a subprocess, stopped by a
signal), and refusals are one clear error with exit code 1.

One agent serves the module (each test its own topics), to keep the file quick.
"""

from __future__ import annotations

import base64
import json
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from rich.console import Console
from typer.testing import CliRunner, Result

from streamhouse.cli import agent_client
from streamhouse.cli.streamctl import app
from tests.e2e.conftest import Agent, start_agent

WAIT_S = 10
READ_POLL_S = 0.5
TOPIC_PARTITIONS = 2
REBALANCE_DELAY_MS = "300"  # new groups wait only briefly for more members
TOO_LARGE_BYTES = 1_000_001  # over librdkafka's message.max.bytes

# kcat -K: key before the first ":"; the rest (':' included) is the value; no ':' no key
STDIN_LINES = ["k1:v1", "k2:snow ☃ man", "", "k1:a:b", "keyless value"]
EXPECTED = [
    (b"k1", b"v1"),
    (b"k2", "snow ☃ man".encode()),
    (b"k1", b"a:b"),
    (None, b"keyless value"),
]
HEADERS = [("trace", b"t-1"), ("empty", b"")]


@pytest.fixture(autouse=True)
def wide_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables at full width, so cells are not wrapped in the captured output."""
    monkeypatch.setattr(agent_client, "console", Console(width=250))


@pytest.fixture(scope="module")
def shared_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    data_dir = tmp_path_factory.mktemp("produce-consume") / "data"
    flags = ("--group-initial-rebalance-delay-ms", REBALANCE_DELAY_MS)
    with start_agent(data_dir, *flags) as running:
        yield running
        running.stop_cleanly()


def create_topic(agent: Agent, name: str, partitions: int, **configs: str) -> None:
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, config=configs)])
    futures[name].result(timeout=WAIT_S)


def streamctl(agent: Agent, *args: str, stdin: str | None = None) -> Result:
    env = {"STREAMHOUSE_BOOTSTRAP": agent.bootstrap}
    return CliRunner().invoke(app, list(args), env=env, input=stdin)


def json_lines(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def read_all(agent: Agent, topic: str, group: str | None = None) -> list[Any]:
    """Every record of the topic as confluent-kafka reads it: from the start, or from the
    group's committed offsets."""
    config = {
        "bootstrap.servers": agent.bootstrap,
        "group.id": group or "checker",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }
    consumer = Consumer(config)
    metadata = consumer.list_topics(topic, timeout=WAIT_S).topics[topic]
    if group is None:
        consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
    else:
        consumer.subscribe([topic])
    at_end: set[int] = set()
    records = []
    for _ in range(int(3 * WAIT_S / READ_POLL_S)):
        if len(at_end) == len(metadata.partitions):
            break
        message = consumer.poll(READ_POLL_S)
        if message is None:
            continue
        error = message.error()
        if error is not None:
            assert error.code() == KafkaError._PARTITION_EOF, error
            at_end.add(message.partition() or 0)
            continue
        records.append(message)
    consumer.close()
    assert len(at_end) == len(metadata.partitions), "not every partition read to its end"
    return sorted(records, key=lambda m: (m.partition(), m.offset()))


def unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def test_produce_stdin_with_keys_and_headers_then_consume_as_json(shared_agent: Agent) -> None:
    create_topic(shared_agent, "lines", TOPIC_PARTITIONS)
    produced = json_lines(
        streamctl(
            shared_agent,
            *("produce", "lines", "--key-separator", ":", "--compression", "gzip"),
            *("--header", "trace=t-1", "--header", "empty=", "--output", "json"),
            stdin="\n".join(STDIN_LINES) + "\n",
        )
    )
    assert [(r["key"], r["value"]) for r in produced] == [
        (None if k is None else k.decode(), v.decode()) for k, v in EXPECTED
    ]

    consumed = json_lines(
        streamctl(shared_agent, "consume", "lines", "--output", "json", "--value-format", "base64")
    )
    truth = read_all(shared_agent, "lines")
    assert [(r["partition"], r["offset"]) for r in consumed] == [
        (m.partition(), m.offset()) for m in truth
    ]
    assert [(unb64(r["key"]), unb64(r["value"])) for r in consumed] == [
        (m.key(), m.value()) for m in truth
    ]
    assert [[(n, unb64(v)) for n, v in r["headers"]] for r in consumed] == [
        m.headers() for m in truth
    ]
    assert all(m.headers() == HEADERS for m in truth)
    assert [r["timestamp"] for r in consumed] == [m.timestamp()[1] for m in truth]
    assert {r["topic"] for r in consumed} == {"lines"}
    # what produce said it wrote is where it is
    where = {(r["partition"], r["offset"]): (r["key"], r["value"]) for r in produced}
    assert where == {
        (m.partition(), m.offset()): (m.key() and m.key().decode(), m.value().decode())
        for m in truth
    }
    as_text = json_lines(streamctl(shared_agent, "consume", "lines", "-o", "json"))
    assert sorted(r["value"] for r in as_text) == sorted(v.decode() for _, v in EXPECTED)

    table = streamctl(shared_agent, "consume", "lines")
    assert table.exit_code == 0, table.output
    assert "snow ☃ man" in table.stdout and "trace=t-1" in table.stdout


def test_from_end_offset_time_and_max_messages(shared_agent: Agent) -> None:
    create_topic(shared_agent, "positions", 1)
    values = [f"r{index}" for index in range(5)]
    produced = streamctl(shared_agent, "produce", "positions", *(f"--value={v}" for v in values))
    assert produced.exit_code == 0, produced.output
    assert "produced 5 record(s) to positions" in produced.stdout

    def read(*args: str) -> list[str]:
        lines = json_lines(streamctl(shared_agent, "consume", "positions", "-o", "json", *args))
        return [line["value"] for line in lines]

    assert read("--from", "end") == []
    assert read("--from", "3") == ["r3", "r4"]
    assert read("--from", "99") == []  # past the end: the end
    assert read("--max-messages", "2") == ["r0", "r1"]
    assert read("--from", "1", "-n", "2", "--partition", "0") == ["r1", "r2"]
    assert read("--from", "2000-01-01T00:00:00") == values
    assert read("--from", "2999-01-01T00:00:00+02:00") == []


def test_a_group_commits_what_it_printed(shared_agent: Agent) -> None:
    create_topic(shared_agent, "grouped", 1)
    produced = streamctl(shared_agent, "produce", "grouped", "-v", "a", "-v", "b", "-v", "c")
    assert produced.exit_code == 0, produced.output

    first = json_lines(
        streamctl(shared_agent, "consume", "grouped", "-g", "g1", "-n", "2", "-o", "json")
    )
    assert [r["value"] for r in first] == ["a", "b"]
    after = read_all(shared_agent, "grouped", group="g1")
    assert [m.value() for m in after] == [b"c"]  # the group starts after what was printed

    rest = json_lines(streamctl(shared_agent, "consume", "grouped", "--group", "g1", "-o", "json"))
    assert [r["value"] for r in rest] == ["c"]
    again = json_lines(streamctl(shared_agent, "consume", "grouped", "-g", "g1", "-o", "json"))
    assert again == []
    unjoined = json_lines(streamctl(shared_agent, "consume", "grouped", "-o", "json"))
    assert len(unjoined) == 3  # without a group: from the beginning, nothing committed


def next_line(process: subprocess.Popen[str], timeout_s: float) -> str:
    """The process's next line on stdout; fails after `timeout_s`."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    assert ready, f"no line from streamctl consume --follow within {timeout_s} s"
    return process.stdout.readline()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_follow_prints_new_records_until_stopped(shared_agent: Agent, stop: signal.Signals) -> None:
    topic = f"followed-{stop.name.lower()}"
    create_topic(shared_agent, topic, 1)
    code = "from streamhouse.cli.streamctl import app; app(prog_name='streamctl')"
    command = [sys.executable, "-c", code, "consume", topic, "--follow", "-o", "json"]
    command += ["--bootstrap", shared_agent.bootstrap, "--from", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        produced = streamctl(shared_agent, "produce", topic, "--value", "live")
        assert produced.exit_code == 0, produced.output
        line = json.loads(next_line(process, WAIT_S))
        assert (line["value"], line["offset"]) == ("live", 0)
        assert process.poll() is None  # still following
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr


def test_unknown_topics_are_errors_and_not_created(shared_agent: Agent) -> None:
    for args in (("consume", "nowhere"), ("produce", "nowhere", "--value", "x")):
        result = streamctl(shared_agent, *args)
        assert result.exit_code == 1
        assert "topic 'nowhere' does not exist" in result.stderr
    admin = AdminClient({"bootstrap.servers": shared_agent.bootstrap})
    assert "nowhere" not in admin.list_topics(timeout=WAIT_S).topics  # not auto-created


def test_a_refused_record_is_reported_and_fails_the_command(
    shared_agent: Agent, tmp_path: Path
) -> None:
    create_topic(shared_agent, "refusing", 1)
    records = tmp_path / "records.txt"
    records.write_bytes(b"fits\n" + b"x" * TOO_LARGE_BYTES + b"\n")
    result = streamctl(shared_agent, "produce", "refusing", "--file", str(records))
    assert result.exit_code == 1
    assert "1 of 2 record(s) not delivered" in result.stderr
    assert "MSG_SIZE_TOO_LARGE" in result.stderr
    assert "produced 1 record(s) to refusing" in result.stdout
    assert [m.value() for m in read_all(shared_agent, "refusing")] == [b"fits"]

    bad_partition = streamctl(shared_agent, "consume", "refusing", "--partition", "3")
    assert bad_partition.exit_code == 1 and "no partition(s) [3]" in bad_partition.stderr
