"""The `streamhouse agent` process: starts on embedded defaults, exits 0 on SIGTERM after
flushing, exits 70 with the traceback when a request breaks our own invariant, refuses
contradictory settings with a clear message; the shared process starter reports a dead agent
at once with its last log lines."""

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
    STOP_TIMEOUT_S,
    AgentProcessFailed,
    start_agent_process,
)
from tests.fixtures.failing_agent import BROKEN
from tests.fixtures.kafka_wire import (
    GOLDEN_METADATA_V8,
    api_versions_request,
    raw_call,
    request_frame,
)

REPO = Path(__file__).resolve().parents[2]
EXIT_INVARIANT_BROKEN = 70


def test_agent_starts_and_stops_cleanly(tmp_path: Path) -> None:
    with start_agent_process(tmp_path / "data") as agent:
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
    with start_agent_process(tmp_path / "data") as agent:
        agent.process.kill()  # behind the starter's back: not a deliberate stop it knows of
        agent.process.wait()
        with pytest.raises(AgentProcessFailed, match="exited with -9"):
            agent.check_alive()
        with pytest.raises(AgentProcessFailed):
            agent.stop_cleanly()


def test_a_request_breaking_an_invariant_stops_the_agent_with_exit_70(tmp_path: Path) -> None:
    agent = start_agent_process(
        tmp_path / "data", "--http-port", "-1", module="tests.fixtures.failing_agent", cwd=REPO
    )
    try:
        assert raw_call(agent.port, api_versions_request(2)).error_code == 0  # served as usual
        with socket.create_connection(("127.0.0.1", agent.port), timeout=STOP_TIMEOUT_S) as sock:
            sock.sendall(GOLDEN_METADATA_V8 + request_frame(api_versions_request(3)))
            assert sock.recv(1024) == b""  # closed, nothing answered
        code = agent.process.wait(timeout=STOP_TIMEOUT_S)
    finally:
        agent.process.kill()
    log = agent.log_path.read_text()
    assert code == EXIT_INVARIANT_BROKEN, log
    assert "our own invariant failed in the Kafka METADATA v8 request" in log
    assert "Traceback (most recent call last)" in log and f"AssertionError: {BROKEN}" in log
    assert "agent failed" in log


def test_help_is_there() -> None:
    for command in (["agent", "--help"], ["--help"]):
        result = subprocess.run(
            [sys.executable, "-m", "streamhouse", *command], capture_output=True, text=True
        )
        assert result.returncode == 0 and "Usage" in result.stdout


def test_contradictory_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="flush_bytes_max must not exceed"):
        Settings(flush_bytes_max=10, flush_pending_bytes_max=5)
