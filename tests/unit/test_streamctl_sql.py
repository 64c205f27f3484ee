"""`streamctl sql` and the notebook client (streamhouse.sql.client) against a real agent process:
the bare query form and `sql query` are one command; the query comes from the argument, --file
or stdin; the answer prints as a table, a JSON array of objects or CSV (NULL as NULL, an empty
field); a refusal prints the agent's message and exits 1; the client answers a pyarrow.Table
and raises with the status and message; `views list` and `views drop` call their routes."""

from __future__ import annotations

import base64
import csv
import io
import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from rich.console import Console
from typer.testing import CliRunner, Result

import streamhouse.cli.agent_client as agent_client
import streamhouse.cli.sql as sql_cli
from streamhouse.cli.streamctl import app
from streamhouse.sql import client as sql_client
from streamhouse.sql.client import SqlRequestError, SqlUnreachable, connect
from streamhouse.testing.agent_process import AgentProcess, start_agent_process
from streamhouse.testing.network import free_loopback_port

TIMEOUT_S = 20
TOPIC = "readings"
# (partition, timestamp ms, value): one value without "note", one that is not JSON
READINGS = [
    (0, 1_767_225_600_000, b'{"sensor": "a", "level": 3, "note": "first"}'),
    (0, 1_767_225_601_000, b'{"sensor": "b", "level": 5, "note": null}'),
    (1, 1_767_225_602_000, b'{"sensor": "a", "level": 7, "note": "x,y \\"q\\""}'),
]
ORDERED = "SELECT sensor, level, note FROM readings ORDER BY level"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    data_dir = tmp_path_factory.mktemp("streamctl-sql") / "data"
    with start_agent_process(data_dir, "--flush-interval-ms", "50") as running:
        admin = AdminClient({"bootstrap.servers": running.bootstrap})
        admin.create_topics([NewTopic(TOPIC, 2)])[TOPIC].result(TIMEOUT_S)
        producer = Producer({"bootstrap.servers": running.bootstrap, "acks": "all"})
        for partition, timestamp, value in READINGS:
            producer.produce(TOPIC, value, partition=partition, timestamp=timestamp)
        assert producer.flush(TIMEOUT_S) == 0
        yield running
        running.stop_cleanly()


@pytest.fixture(autouse=True)
def wide_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables at full width, so cells are not cut in the captured output."""
    monkeypatch.setattr(sql_cli, "console", Console(width=250))
    monkeypatch.setattr(sql_cli, "errors", Console(width=250, stderr=True))
    monkeypatch.setattr(agent_client, "console", Console(width=250))  # listings'


def streamctl(agent: AgentProcess, *args: str, stdin: str | None = None) -> Result:
    env = {"STREAMHOUSE_HTTP": agent.http_base}
    return CliRunner().invoke(app, ["sql", *args], env=env, input=stdin)


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "command", [["sql"], ["sql", "query"], ["sql", "views"], ["sql", "views", "list"]]
)
def test_every_sql_command_has_help_with_examples(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "streamctl sql" in result.output


def test_bare_query_and_query_subcommand_answer_alike(agent: AgentProcess) -> None:
    bare = streamctl(agent, "-o", "json", ORDERED)
    named = streamctl(agent, "query", ORDERED, "--output", "json")
    assert bare.exit_code == 0, bare.output
    assert bare.stdout == named.stdout
    assert [row["level"] for row in json.loads(bare.stdout)] == [3, 5, 7]


def test_query_from_a_file_and_from_stdin(agent: AgentProcess, tmp_path: Path) -> None:
    query_file = tmp_path / "q.sql"
    query_file.write_text(ORDERED + ";\n")
    from_file = streamctl(agent, "--file", str(query_file), "-o", "json")
    from_stdin = streamctl(agent, "-", "-o", "json", stdin=ORDERED)
    from_file_stdin = streamctl(agent, "-f", "-", "-o", "json", stdin=ORDERED)
    assert from_file.exit_code == 0, from_file.output
    assert from_file.stdout == from_stdin.stdout == from_file_stdin.stdout


@pytest.mark.parametrize(
    "args",
    [["query"], ["query", "SELECT 1", "--file", "q.sql"], ["query", "   "], ["-o", "xml", "X"]],
)
def test_no_query_two_queries_or_a_bad_option_is_a_usage_error(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["sql", *args])
    assert result.exit_code == 2, result.output


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["sql", "--file", str(tmp_path / "none.sql")])
    assert result.exit_code == 2
    assert "cannot read" in result.output


# ---------------------------------------------------------------- printing


def test_json_output_is_one_array_of_objects(agent: AgentProcess) -> None:
    result = streamctl(agent, ORDERED, "-o", "json")
    assert json.loads(result.stdout) == [
        {"sensor": "a", "level": 3, "note": "first"},
        {"sensor": "b", "level": 5, "note": None},
        {"sensor": "a", "level": 7, "note": 'x,y "q"'},
    ]


def test_csv_output_quotes_and_leaves_null_empty(agent: AgentProcess) -> None:
    result = streamctl(agent, ORDERED, "-o", "csv")
    assert result.exit_code == 0, result.output
    assert list(csv.reader(io.StringIO(result.stdout))) == [
        ["sensor", "level", "note"],
        ["a", "3", "first"],
        ["b", "5", ""],
        ["a", "7", 'x,y "q"'],
    ]
    assert '"x,y ""q"""' in result.stdout


def test_table_output_shows_columns_rows_and_null(agent: AgentProcess) -> None:
    result = streamctl(agent, ORDERED)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    (header,) = [line for line in lines if "sensor" in line]
    assert header.index("sensor") < header.index("level") < header.index("note")
    (null_row,) = [line for line in lines if " b " in line]
    assert "NULL" in null_row and "5" in null_row
    assert "(3 rows)" in result.stderr


def test_the_table_shows_text_bytes_as_text_and_others_as_base64(agent: AgentProcess) -> None:
    text = "SELECT _value, '\\xff\\x00'::BLOB AS raw FROM readings WHERE level = 3"
    shown = streamctl(agent, text).stdout
    assert '{"sensor": "a", "level": 3, "note": "first"}' in shown
    assert "/wA=" in shown  # 0xff 0x00 is no UTF-8
    as_json = json.loads(streamctl(agent, "-o", "json", text).stdout)
    assert as_json[0]["raw"] == "/wA=" and base64.b64decode(as_json[0]["_value"]) == READINGS[0][2]


def test_a_refusal_prints_the_agents_message_and_exits_1(agent: AgentProcess) -> None:
    result = streamctl(agent, "SELECT * FROM no_such_topic")
    assert result.exit_code == 1
    assert "no_such_topic" in result.stderr and "HTTP 404" in result.stderr
    assert result.stdout == ""


def test_no_agent_is_one_clear_error() -> None:
    http = f"http://127.0.0.1:{free_loopback_port()}"
    result = CliRunner().invoke(app, ["sql", "--http", http, "SELECT 1"])
    assert result.exit_code == 1
    assert f"cannot reach an agent's HTTP API at {http}" in result.stderr


# ---------------------------------------------------------------- views

VIEW_WAIT_S = 20


def test_views_list_and_drop_call_the_views_routes(agent: AgentProcess) -> None:
    listed = streamctl(agent, "views", "list", "-o", "json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == []
    dropped = streamctl(agent, "views", "drop", "no_such_view")
    assert dropped.exit_code == 1
    assert "no_such_view" in dropped.stderr and "HTTP 404" in dropped.stderr


@pytest.mark.slow  # in make test-all: make test stays under 3 minutes
def test_views_list_shows_a_running_views_watermark_as_a_time(agent: AgentProcess) -> None:
    select = (
        "SELECT window_start, count(*) AS n FROM tumble(readings, _timestamp, "
        "INTERVAL '1 minute') GROUP BY window_start"
    )
    created = streamctl(agent, f"CREATE MATERIALIZED VIEW per_minute AS {select}")
    assert created.exit_code == 0, created.output
    try:
        deadline = time.monotonic() + VIEW_WAIT_S
        while True:
            (view,) = json.loads(streamctl(agent, "views", "list", "-o", "json").stdout)
            if view["watermark"] is not None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert view["name"] == "per_minute" and "tumble(readings" in view["sql"]
        assert view["watermark"] is not None, view
        shown = streamctl(agent, "views", "list").stdout
        assert "per_minute" in shown and "2026-01-01T" in shown and "tumble" not in shown
    finally:
        assert streamctl(agent, "views", "drop", "per_minute").exit_code == 0


# ---------------------------------------------------------------- the notebook client


def test_client_answers_an_arrow_table(agent: AgentProcess) -> None:
    table = connect(agent.http_base).sql(
        "SELECT _partition, _offset, _timestamp, sensor, level FROM readings ORDER BY level"
    )
    assert table.column_names == ["_partition", "_offset", "_timestamp", "sensor", "level"]
    assert table.column("level").to_pylist() == [3, 5, 7]
    assert table.column("_partition").to_pylist() == [0, 0, 1]
    (first, *_) = table.column("_timestamp").to_pylist()
    assert isinstance(first, datetime)
    assert first.replace(tzinfo=None) == datetime(2026, 1, 1)


def test_client_raises_with_status_and_message(agent: AgentProcess) -> None:
    with pytest.raises(SqlRequestError) as refused:
        connect(agent.http_base).sql("SELEKT nonsense")
    assert refused.value.status == 400
    assert refused.value.message
    assert str(refused.value).startswith("HTTP 400: ")


def test_client_without_an_agent_says_so() -> None:
    http = f"http://127.0.0.1:{free_loopback_port()}"
    with pytest.raises(SqlUnreachable, match=http):
        connect(http, timeout_s=2).sql("SELECT 1")


def test_client_is_exported_lazily_from_streamhouse_sql() -> None:
    import streamhouse.sql

    assert streamhouse.sql.connect is sql_client.connect
    with pytest.raises(AttributeError):
        _ = streamhouse.sql.no_such_name  # type: ignore[attr-defined]
