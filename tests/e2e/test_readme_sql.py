"""The README's "SQL over topics" section works as written against a fresh agent: its shell
blocks (`streamctl sql`, EXPLAIN, the curl calls, the continuous view's create, list and drop)
run unchanged but for the agent's address, its SQL blocks answer the windows its text computes
by hand, and its Python block runs. The topics they read are filled first: `greetings` with 12
records in partition 0 and 9 in partition 1 (the curl example's answer), `users` in Avro as
the Schemas section writes it, `orders` with events at 00:00:00.000, 00:00:59.999 and
00:01:00.000 past a whole hour, `clicks` with sessions 30 minutes apart."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.ipc
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.e2e.conftest import Agent
from tests.e2e.test_readme_quickstart import COMMAND_TIMEOUT_S, code_blocks, readme_section
from tests.views_world import sql

README_HTTP = "127.0.0.1:8080"
VENV_BIN = Path(sys.executable).parent
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # the EXPLAIN example's start: a whole hour
GREETINGS = {0: 12, 1: 9}  # records per partition, as the curl example answers
USER_SCHEMA = {"type": "record", "name": "User", "fields": [{"name": "name", "type": "string"}]}
ORDERS = [  # (seconds past T0, customer, amount)
    (0.0, "ada", 1),
    (59.999, "bob", 2),
    (60.0, "ada", 4),
]
CLICKS = [  # (minutes past T0, customer): ada's first three one session, the fourth the next
    (0, "ada"),
    (15, "ada"),
    (30, "ada"),
    (60, "ada"),
    (10, "bob"),
]
HOP_WINDOWS_PER_EVENT = 5  # size 5 minutes, slide 1 minute


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _iso(moment: datetime) -> str:
    """As the JSON answer shows a TIMESTAMP (UTC, no zone written)."""
    return moment.replace(tzinfo=None).isoformat()


def _produce(agent: Agent, topic: str, records: list[tuple[int, bytes, int | None]]) -> None:
    """(partition, value, timestamp ms or None) records, acks=all."""
    producer = Producer({"bootstrap.servers": agent.bootstrap, "acks": "all"})
    for partition, value, timestamp_ms in records:
        extra = {} if timestamp_ms is None else {"timestamp": timestamp_ms}
        producer.produce(topic, value, partition=partition, **extra)
    assert producer.flush(COMMAND_TIMEOUT_S) == 0


def _fill_topics(agent: Agent) -> None:
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    futures = admin.create_topics(
        [NewTopic("greetings", len(GREETINGS))] + [NewTopic(t, 1) for t in ("orders", "clicks")]
    )
    for future in futures.values():
        future.result(COMMAND_TIMEOUT_S)
    at = _ms(T0)  # all in one hour: the Python block's tumble answers one row
    greetings = [(p, b"hello", at) for p, count in GREETINGS.items() for _ in range(count)]
    _produce(agent, "greetings", greetings)
    orders = [
        (0, json.dumps({"customer": c, "amount": a}).encode(), _ms(T0 + timedelta(seconds=s)))
        for s, c, a in ORDERS
    ]
    _produce(agent, "orders", orders)
    clicks = [
        (0, json.dumps({"customer": c}).encode(), _ms(T0 + timedelta(minutes=m))) for m, c in CLICKS
    ]
    _produce(agent, "clicks", clicks)
    registry = SchemaRegistryClient({"url": agent.registry_url})
    serialize = AvroSerializer(registry, json.dumps(USER_SCHEMA))
    value = serialize({"name": "ada"}, SerializationContext("users", MessageField.VALUE))
    assert value is not None
    _produce(agent, "users", [(0, value, None)])


@pytest.fixture
def filled(agent: Agent) -> Agent:
    _fill_topics(agent)
    return agent


def _section() -> str:
    return readme_section("SQL over topics")


def _run_shell(agent: Agent, block: str, cwd: Path) -> str:
    """`block` run by bash -eu in `cwd`, with the agent's address for 127.0.0.1:8080 and this
    checkout's .venv/bin; its output (a failure shows stderr)."""
    script = block.replace(README_HTTP, agent.http_base.removeprefix("http://"))
    script = script.replace(".venv/bin/", f"{VENV_BIN}/")
    ran = subprocess.run(
        ["bash", "-eu", "-c", script],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        cwd=cwd,
        env={**os.environ, "STREAMHOUSE_HTTP": agent.http_base, "COLUMNS": "200"},
        check=False,
    )
    assert ran.returncode == 0, f"{script}\n{ran.stdout}\n{ran.stderr}"
    return ran.stdout


def _blocks_with(language: str, marker: str) -> list[str]:
    found = [block for block in code_blocks(_section(), language) if marker in block]
    assert found, f"no {language} block with {marker!r} in the SQL section"
    return found


def test_readme_streamctl_sql_lines_run(filled: Agent, tmp_path: Path) -> None:
    (tmp_path / "report.sql").write_text("SELECT count(*) AS orders FROM orders\n")
    (block,) = _blocks_with("sh", "--file report.sql")
    counts, users, report = (_run_shell(filled, line, tmp_path) for line in block.splitlines())
    cells = {cell.strip() for line in counts.splitlines() for cell in re.split("[│┃]", line)}
    assert {"records", "12", "9"} <= cells, counts
    assert [user["name"] for user in json.loads(users)] == ["ada"], users
    assert str(len(ORDERS)) in report.split(), report
    (explain,) = _blocks_with("sh", "EXPLAIN")
    assert "orders" in _run_shell(filled, explain, tmp_path)


def test_readme_curl_examples_answer_as_shown(filled: Agent, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.fail("curl is not installed: apt-get install curl")
    (block,) = _blocks_with("sh", "/api/v1/sql")
    answered = json.loads(_run_shell(filled, block, tmp_path))
    shown = "".join(
        line.strip().removeprefix("# ")
        for line in block.splitlines()
        if line.startswith("# {") or line.startswith("#  ")
    )
    expected = json.loads(shown)
    assert answered["columns"] == expected["columns"], shown
    assert sorted(answered["rows"]) == sorted(expected["rows"]), shown  # GROUP BY: any order
    arrows = pyarrow.ipc.open_stream((tmp_path / "answer.arrows").read_bytes()).read_all()
    assert arrows.num_rows == sum(GREETINGS.values())


def _query(agent: Agent, text: str) -> list[list[Any]]:
    answer = sql(agent.http_port, text)
    assert answer.status == 200, (text, answer)
    rows: list[list[Any]] = answer.body["rows"]
    return rows


def test_readme_window_queries_answer_as_the_text_says(filled: Agent) -> None:
    (tumble,) = _blocks_with("sql", "FROM tumble(")
    minute = timedelta(minutes=1)
    assert _query(filled, tumble) == [  # 2 events in [00:00, 00:01), 1 in [00:01, 00:02)
        [_iso(T0), _iso(T0 + minute), 2, 3],
        [_iso(T0 + minute), _iso(T0 + 2 * minute), 1, 4],
    ]
    (hop,) = _blocks_with("sql", "FROM hop(")
    windows = _query(filled, hop)
    assert sum(clicks for *_, clicks in windows) == HOP_WINDOWS_PER_EVENT * len(CLICKS)
    (session,) = _blocks_with("sql", "FROM session(")
    gap = timedelta(minutes=30)  # the text's example in minutes of 30 seconds: scaled by 30
    assert sorted(_query(filled, session)) == [
        ["ada", _iso(T0), _iso(T0 + 2 * gap), 3],  # [00:00, 02:00): ends a gap after 01:00
        ["ada", _iso(T0 + 2 * gap), _iso(T0 + 3 * gap), 1],  # exactly a gap later: the next
        ["bob", _iso(T0 + timedelta(minutes=10)), _iso(T0 + timedelta(minutes=10) + gap), 1],
    ]


def test_readme_python_block_runs(filled: Agent) -> None:
    (block,) = code_blocks(_section(), "python")
    here = block.replace(f"http://{README_HTTP}", filled.http_base)
    ran = subprocess.run(
        [sys.executable, "-c", here],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["1", "['window_start',", "'n']"], ran.stdout  # one hour


def test_readme_continuous_view_commands_run(filled: Agent, tmp_path: Path) -> None:
    (block,) = _blocks_with("sh", "CREATE MATERIALIZED VIEW")
    shown = _run_shell(filled, block, tmp_path)
    assert "orders_per_minute" in shown and "dropped view orders_per_minute" in shown, shown
    assert sql(filled.http_port, 'SELECT count(*) FROM "orders-per-minute"').status == 200


def test_every_block_of_the_section_is_run_above() -> None:
    """A block added to the section needs a test here (4 shell, 3 SQL, 1 Python)."""
    section = _section()
    found = [len(code_blocks(section, language)) for language in ("sh", "sql", "python")]
    assert found == [4, 3, 1], f"the SQL section's blocks changed: {found}; test the new ones"
    assert len(code_blocks(section, r"\w*")) == sum(found)
