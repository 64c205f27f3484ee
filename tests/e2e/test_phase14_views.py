"""e2e phase 14, continuous part: a tumble view over a topic of three partitions, run by a real
agent process, read by a read_committed Kafka consumer across a SIGKILL of the agent while
windows are open and a restart on the same data directory: every window is emitted exactly
once (none lost, none doubled) with the hand-computed aggregate, and a record for a window
emitted before the kill is counted late, not emitted."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from streamhouse.testing.agent_process import AgentProcess, start_agent_process
from tests.e2e.conftest import E2E_FLUSH_INTERVAL_MS, within
from tests.views_world import (
    BASE_MS,
    Event,
    await_windows,
    expected_windows,
    output_reader,
    produce,
    read_windows,
    shown_view,
    sql,
    view_sql,
)

CLIENT_TIMEOUT_S = 20
RESTART_TIMEOUT_S = 30

BEFORE: list[Event] = [  # watermark 27 s: the windows ending by 20 s go out
    (0, 0, "a", 1),
    (1, 9_999, "a", 2),
    (2, 5_000, "b", 4),
    (1, 10_000, "a", 16),
    (0, 12_000, "b", 64),
    (1, 25_000, "a", 128),
    (2, 29_000, "c", 1),
]
OPEN: list[Event] = [(0, 21_000, "b", 8), (2, 31_000, "c", 2)]  # watermark 29 s: still open
AFTER: list[Event] = [  # after the restart
    (1, 22_000, "b", 32),  # into the window open across the kill
    (0, 33_000, "a", 256),
    (2, 60_000, "d", 1),  # watermark 58 s: the windows ending by 50 s go out
]
LATE: list[Event] = [(0, 15_000, "a", 512)]  # its window went out before the kill


def start(data_dir: Path) -> AgentProcess:
    return start_agent_process(data_dir, "--flush-interval-ms", E2E_FLUSH_INTERVAL_MS)


def test_view_survives_a_killed_agent_without_losing_or_doubling_a_window(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    topic = f"clicks-{uuid.uuid4().hex[:6]}"
    name = f"per_user_{uuid.uuid4().hex[:6]}"
    agent = start(data_dir)
    try:
        admin = AdminClient({"bootstrap.servers": agent.bootstrap})
        admin.create_topics([NewTopic(topic, 3)])[topic].result(CLIENT_TIMEOUT_S)
        assert sql(agent.http_port, view_sql(name, topic)).status == 200
        produce(agent.bootstrap, topic, BEFORE)
        reader = output_reader(agent.bootstrap, name)
        first = expected_windows(BEFORE, 27_000)
        assert await_windows(reader, len(first)) == first
        reader.close()
        produce(agent.bootstrap, topic, OPEN)

        def read_open() -> bool:  # the runner committed its progress past the open events
            shown = shown_view(agent.http_port, name)
            return shown is not None and shown["watermark"] == BASE_MS + 29_000

        within(CLIENT_TIMEOUT_S, read_open, "the view's watermark at 29 s")
    finally:
        agent.kill()  # SIGKILL: nothing flushed, the runner's state lost
    agent = start(data_dir)
    try:
        produce(agent.bootstrap, topic, LATE + AFTER)
        everything = BEFORE + OPEN + AFTER
        expected = expected_windows(everything, 58_000)
        reader = output_reader(agent.bootstrap, name)  # the whole output, from its start
        started = time.monotonic()
        assert read_windows(reader, len(expected)) == expected, "a window lost or doubled"
        print(f"windows after the restart read within {time.monotonic() - started:.1f} s")
        reader.close()
        shown = shown_view(agent.http_port, name)
        assert shown is not None
        assert shown["late_records"] == 1 and shown["windows_emitted"] == len(expected)
    finally:
        agent.stop_cleanly()
