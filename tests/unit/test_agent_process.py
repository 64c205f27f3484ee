"""The `streamhouse agent` process: starts on embedded defaults, exits 0 on SIGTERM after
flushing, exits 70 with the traceback when a request breaks our own invariant, and refuses
contradictory settings with a clear message."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamhouse.config import Settings
from tests.fixtures.failing_agent import BROKEN
from tests.fixtures.kafka_wire import (
    GOLDEN_METADATA_V8,
    api_versions_request,
    raw_call,
    request_frame,
)
from tests.fixtures.moto_server import free_loopback_port

STARTUP_WAIT_S = 30
REPO = Path(__file__).resolve().parents[2]
EXIT_INVARIANT_BROKEN = 70


def test_agent_starts_and_stops_cleanly(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamhouse",
            "agent",
            "--data-dir",
            str(tmp_path / "data"),
            "--kafka-port",
            "0",
            "--http-port",
            "0",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + STARTUP_WAIT_S
    banner = ""
    assert process.stderr is not None
    while "/metrics" not in banner and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        banner += line
    assert "metadata" in banner and "objects" in banner and "/health" in banner, banner
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=STARTUP_WAIT_S)
    assert process.returncode == 0, rest
    assert "stopped cleanly" in rest
    assert (tmp_path / "data" / "metadata.db").exists()
    assert (tmp_path / "data" / "local" / "agent-id").read_text().startswith("agent-")


def test_a_request_breaking_an_invariant_stops_the_agent_with_exit_70(tmp_path: Path) -> None:
    port = free_loopback_port()
    command = [sys.executable, "-m", "tests.fixtures.failing_agent", "agent"]
    options = ["--data-dir", str(tmp_path / "data"), "--kafka-port", str(port)]
    process = subprocess.Popen(
        [*command, *options, "--http-port", "-1"], cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_listening(port, process)
        assert raw_call(port, api_versions_request(2)).error_code == 0  # served as usual
        with socket.create_connection(("127.0.0.1", port), timeout=STARTUP_WAIT_S) as sock:
            sock.sendall(GOLDEN_METADATA_V8 + request_frame(api_versions_request(3)))
            assert sock.recv(1024) == b""  # closed, nothing answered
        _, log = process.communicate(timeout=STARTUP_WAIT_S)
    finally:
        process.kill()
    assert process.returncode == EXIT_INVARIANT_BROKEN, log
    assert "our own invariant failed in the Kafka METADATA v8 request" in log
    assert "Traceback (most recent call last)" in log and f"AssertionError: {BROKEN}" in log
    assert "agent failed" in log


def _wait_listening(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + STARTUP_WAIT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"the agent did not listen on {port} (exit {process.poll()})")


def test_help_is_there() -> None:
    for command in (["agent", "--help"], ["--help"]):
        result = subprocess.run(
            [sys.executable, "-m", "streamhouse", *command], capture_output=True, text=True
        )
        assert result.returncode == 0 and "Usage" in result.stdout


def test_contradictory_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="flush_bytes_max must not exceed"):
        Settings(flush_bytes_max=10, flush_pending_bytes_max=5)
