"""The `streamhouse agent` process: starts on embedded defaults, exits 0 on SIGTERM after
flushing, and refuses contradictory settings with a clear message."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamhouse.config import Settings

STARTUP_WAIT_S = 30


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


def test_help_is_there() -> None:
    for command in (["agent", "--help"], ["--help"]):
        result = subprocess.run(
            [sys.executable, "-m", "streamhouse", *command], capture_output=True, text=True
        )
        assert result.returncode == 0 and "Usage" in result.stdout


def test_contradictory_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="flush_bytes_max must not exceed"):
        Settings(flush_bytes_max=10, flush_pending_bytes_max=5)
