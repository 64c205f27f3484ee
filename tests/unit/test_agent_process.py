"""The `streamhouse agent` process: starts on embedded defaults, exits 0 on SIGTERM after
flushing, refuses contradictory settings with a clear message; the shared process starter
reports a dead agent at once with its last log lines."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamhouse.config import Settings
from streamhouse.testing.agent_process import (
    START_TIMEOUT_S,
    AgentProcessFailed,
    start_agent_process,
)


def test_agent_starts_and_stops_cleanly(tmp_path: Path) -> None:
    agent = start_agent_process(tmp_path / "data")
    agent.stop_cleanly()
    log = agent.log_path.read_text()
    assert "metadata" in log and "objects" in log and "/health" in log, log
    assert "stopped cleanly" in log
    assert (tmp_path / "data" / "metadata.db").exists()
    assert (tmp_path / "data" / "local" / "agent-id").read_text().startswith("agent-")


def test_a_dead_agent_is_reported_at_once_with_its_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        started = time.monotonic()
        with pytest.raises(AgentProcessFailed) as failure:
            start_agent_process(tmp_path / "data", "--kafka-port", str(taken.getsockname()[1]))
    assert time.monotonic() - started < START_TIMEOUT_S
    assert "exited with 1" in str(failure.value)
    assert "address already in use" in str(failure.value).lower()


def test_an_agent_that_fails_after_starting_is_not_stopped_cleanly(tmp_path: Path) -> None:
    agent = start_agent_process(tmp_path / "data")
    agent.process.kill()  # behind the starter's back: not a deliberate stop it knows of
    agent.process.wait()
    with pytest.raises(AgentProcessFailed, match="exited with -9"):
        agent.check_alive()
    with pytest.raises(AgentProcessFailed):
        agent.stop_cleanly()


def test_help_is_there() -> None:
    for command in (["agent", "--help"], ["--help"]):
        result = subprocess.run(
            [sys.executable, "-m", "streamhouse", *command], capture_output=True, text=True
        )
        assert result.returncode == 0 and "Usage" in result.stdout


def test_contradictory_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="flush_bytes_max must not exceed"):
        Settings(flush_bytes_max=10, flush_pending_bytes_max=5)
