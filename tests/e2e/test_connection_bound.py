"""The bound on Kafka connections of one agent process: beyond `--connections-max`, a new
connection is closed at once, counted on /metrics and logged (one line, not one per refusal);
once a connection closes, a new one is served again."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.e2e.agent_storage import agent_metrics
from tests.e2e.conftest import start_agent
from tests.fixtures.kafka_wire import api_versions_request, raw_call, request_frame

CONNECTIONS_MAX = 2
FLOOD = 50
SOCKET_TIMEOUT_S = 10
REFUSALS_LOG_INTERVAL_S = 10  # the listener's REFUSALS_LOG_INTERVAL_MS
REFUSED_TOTAL = "streamhouse_kafka_connections_refused_total"
OPEN = "streamhouse_kafka_connections"


def _served(port: int) -> socket.socket:
    """A connection the agent answered an ApiVersions on (left open)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S)
    sock.sendall(request_frame(api_versions_request(2)))
    assert len(sock.recv(65536)) > 4, "no answer"
    return sock


def _closed_unanswered(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S) as sock:
        try:
            sock.sendall(request_frame(api_versions_request(2)))
            return sock.recv(65536) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True


def _eventually_served(port: int) -> None:
    deadline = time.monotonic() + SOCKET_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            assert raw_call(port, api_versions_request(2)).error_code == 0
            return
        except (AssertionError, ConnectionError):
            time.sleep(0.05)
    raise AssertionError("no connection was served after one closed")


def test_connections_beyond_the_bound_are_closed_counted_and_logged_once(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "data", "--connections-max", str(CONNECTIONS_MAX))
    try:
        held = [_served(agent.port) for _ in range(CONNECTIONS_MAX)]
        started_s = time.monotonic()
        assert all(_closed_unanswered(agent.port) for _ in range(FLOOD))
        flood_s = time.monotonic() - started_s
        metrics = agent_metrics(agent)
        assert metrics[REFUSED_TOTAL] == FLOOD
        assert metrics[OPEN] == CONNECTIONS_MAX
        held.pop().close()
        _eventually_served(agent.port)
        for sock in held:
            sock.close()
    finally:
        assert agent.stop() == 0
    log = (tmp_path / f"agent-{agent.port}.log").read_text()
    lines = [line for line in log.splitlines() if "Kafka connection(s)" in line]
    assert f"refused 1 Kafka connection(s): connections_max={CONNECTIONS_MAX}" in lines[0]
    assert 1 <= len(lines) <= 1 + int(flood_s / REFUSALS_LOG_INTERVAL_S), lines
