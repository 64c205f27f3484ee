"""e2e fixtures: a real agent process started from the package, on a free loopback port."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.moto_server import free_loopback_port

AGENT_START_TIMEOUT_S = 30
AGENT_STOP_TIMEOUT_S = 30


@dataclass
class Agent:
    """A running `streamhouse agent` process."""

    process: subprocess.Popen[str]
    port: int
    data_dir: Path
    http_port: int

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=AGENT_STOP_TIMEOUT_S)
        return self.process.returncode


def start_agent(data_dir: Path, *extra: str) -> Agent:
    port, http_port = free_loopback_port(), free_loopback_port()
    command = [
        sys.executable,
        "-m",
        "streamhouse",
        "agent",
        "--data-dir",
        str(data_dir),
        "--kafka-port",
        str(port),
        "--http-port",
        str(http_port),
        "--flush-interval-ms",
        "50",
        *extra,
    ]
    log_file = open(data_dir.parent / f"agent-{port}.log", "w")  # noqa: SIM115
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + AGENT_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"agent exited with {process.returncode}; see {log_file.name}")
        try:
            waits = (port,) if "--http-port" in extra else (port, http_port)  # HTTP starts last
            for listening in waits:
                socket.create_connection(("127.0.0.1", listening), timeout=0.2).close()
            return Agent(process, port, data_dir, http_port)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"agent did not listen on {port} within {AGENT_START_TIMEOUT_S} s")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    running = start_agent(tmp_path / "data")
    yield running
    if running.process.poll() is None:
        assert running.stop() == 0


@pytest.fixture
def group_agent(tmp_path: Path) -> Iterator[Agent]:
    """An agent whose new groups wait only briefly for more members before generation 1."""
    running = start_agent(tmp_path / "data", "--group-initial-rebalance-delay-ms", "300")
    yield running
    if running.process.poll() is None:
        assert running.stop() == 0
