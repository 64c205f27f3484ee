"""Authentication cost (issue F13): new Kafka connections per second that complete their
handshake and one Metadata request, over PLAINTEXT and over SASL_PLAINTEXT with PLAIN,
SCRAM-SHA-256 and SCRAM-SHA-512.

Two agent processes on embedded defaults, one open (PLAINTEXT) and one requiring API keys
(`--auth required`, SASL_PLAINTEXT; an agent serves one security protocol); one key issued
over the HTTP API, with SCRAM credentials of 4096 iterations as issued keys get. The client is
streamctl's own raw one (io/kafka_client.py): connect, ApiVersions, SaslHandshake and
SaslAuthenticate (one token for PLAIN, two for SCRAM), Metadata, close; one connection after
another. Each round gives each mode up to ROUND_CONNECTIONS connections or ROUND_S seconds,
modes alternating, and the median round is reported. PLAIN checks the key's slow salted hash
once and then remembers the success for a while (engine/authentication.py), as a client
reconnecting with one key sees it; SCRAM's cost is the client's and agent's PBKDF2 work on
every connection.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.agents import figure, print_table, ratio
from streamhouse.cli.tenancy import TenancyClient
from streamhouse.io.kafka_client import KafkaClient, SaslCredentials
from streamhouse.kafka.apis import ApiKey
from streamhouse.testing.agent_process import AgentProcess, start_agent_process
from streamhouse.testing.network import LOOPBACK

MODES = ("PLAINTEXT", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ROUNDS = 3
ROUND_CONNECTIONS = 2000  # per mode and round, at most
ROUND_S = 3.0  # per mode and round, at most
CALL_TIMEOUT_S = 10.0
EVERY_TOPIC = {"topics": None, "allow_auto_topic_creation": False}


def _connect_once(port: int, credentials: SaslCredentials | None) -> float:
    """Milliseconds to connect, authenticate, get Metadata and close."""
    started = time.perf_counter()
    with KafkaClient(LOOPBACK, port, CALL_TIMEOUT_S, credentials) as client:
        client.call(ApiKey.METADATA, EVERY_TOPIC)
    return (time.perf_counter() - started) * 1000


def _round(port: int, credentials: SaslCredentials | None) -> dict[str, float]:
    """One mode's round: connections one after another, within both bounds."""
    latencies_ms: list[float] = []
    started = time.perf_counter()
    while len(latencies_ms) < ROUND_CONNECTIONS and time.perf_counter() - started < ROUND_S:
        latencies_ms.append(_connect_once(port, credentials))
    elapsed_s = time.perf_counter() - started
    latencies_ms.sort()
    return {
        "connections": len(latencies_ms),
        "per_s": round(len(latencies_ms) / elapsed_s, 1),
        "p50_ms": round(statistics.median(latencies_ms), 2),
        "p99_ms": round(latencies_ms[max(0, int(len(latencies_ms) * 0.99) - 1)], 2),
    }


def _issued_key(agent: AgentProcess) -> tuple[str, str]:
    """A member key of the default org, issued with the admin key the first start wrote."""
    admin = json.loads((agent.data_dir / "admin-credentials.json").read_text())
    client = TenancyClient(agent.http_base, admin["key"], admin["secret"], CALL_TIMEOUT_S)
    issued = client.call("POST", "/api/v1/orgs/default/keys", {"role": "member"})
    return issued["key"], issued["secret"]


def _targets(open_agent: AgentProcess, secured: AgentProcess) -> dict[str, tuple[int, Any]]:
    """(port, credentials) of each mode."""
    key, secret = _issued_key(secured)
    targets: dict[str, tuple[int, Any]] = {"PLAINTEXT": (open_agent.port, None)}
    for mechanism in MODES[1:]:
        targets[mechanism] = (secured.port, SaslCredentials(mechanism, key, secret))
    return targets


def _measure(scratch: Path) -> dict[str, Any]:
    with (
        start_agent_process(scratch / "open") as open_agent,
        start_agent_process(scratch / "secured", "--auth", "required") as secured,
    ):
        targets = _targets(open_agent, secured)
        rounds: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        for _ in range(ROUNDS):
            for mode, (port, credentials) in targets.items():
                rounds[mode].append(_round(port, credentials))
        for agent in (open_agent, secured):
            agent.check_alive()  # a figure from a dead agent is no figure
            agent.stop_cleanly()
    return {mode: _median_round(measured) for mode, measured in rounds.items()}


def _median_round(measured: list[dict[str, float]]) -> dict[str, float]:
    ordered = sorted(measured, key=lambda report: report["per_s"])
    return ordered[len(ordered) // 2]


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as scratch:
        results: dict[str, Any] = _measure(Path(scratch))
    plaintext = results["PLAINTEXT"]["per_s"]
    for mode in MODES[1:]:
        results[mode]["vs_plaintext"] = round(ratio(results[mode]["per_s"], plaintext) or 0, 3)
    rows = [
        [mode, figure(r["per_s"]), str(r["p50_ms"]), str(r["p99_ms"]), str(r["connections"])]
        for mode, r in results.items()
    ]
    print_table(
        "connections per second (handshake + one Metadata), median of rounds",
        ["mode", "per s", "p50 ms", "p99 ms", "connections"],
        rows,
    )
    return results
