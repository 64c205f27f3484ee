"""e2e phase 15 (quotas): an agent process requiring API keys, two orgs, and the operator's
quota on one of them set with `streamctl quotas`. That org's producer is answered with
throttle_time_ms and slows to its quota past Kafka's burst (a generous upper bound on its
throughput, never a lower bound on speed); the other org's producer gets throttle 0."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from streamhouse.cli.streamctl import app
from streamhouse.testing.agent_process import AgentProcess
from tests.e2e.conftest import start_agent
from tests.unit.test_quotas_kafka import (
    BURST_BYTES,
    QUOTA_BYTES_PER_S,
    SENT_BYTES,
    TAIL_THROUGHPUT_MAX_BYTES_PER_S,
    produce_timed,
)
from tests.unit.test_sasl_clients import confluent_config

PROTOCOL = "SASL_PLAINTEXT"
MECHANISM = "SCRAM-SHA-256"


class Operated:
    """A running agent requiring keys, driven by its first admin through streamctl."""

    def __init__(self, agent: AgentProcess) -> None:
        self.agent = agent
        admin = json.loads((agent.data_dir / "admin-credentials.json").read_text())
        self.env = {
            "STREAMHOUSE_HTTP": agent.http_base,
            "STREAMHOUSE_KEY": admin["key"],
            "STREAMHOUSE_SECRET": admin["secret"],
        }

    def streamctl(self, *args: str) -> Any:
        done = CliRunner().invoke(app, list(args), env=self.env)
        assert done.exit_code == 0, done.output
        return done

    def client_config(self, org: str) -> dict[str, Any]:
        self.streamctl("orgs", "create", org)
        # the org's admin: quotas, not ACLs, are under test
        created = self.streamctl("keys", "create", "--org", org, "--role", "admin", "-o", "json")
        issued = json.loads(created.stdout)
        listener = (self.agent, PROTOCOL, "")
        return confluent_config(listener, MECHANISM, issued["key"], issued["secret"])


@pytest.fixture(scope="module")
def operated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operated]:
    directory: Path = tmp_path_factory.mktemp("quotas")
    with start_agent(directory / "data", "--auth", "required") as agent:
        yield Operated(agent)
        agent.stop_cleanly()


def test_a_throttled_org_slows_to_its_quota_while_another_keeps_its_rate(
    operated: Operated,
) -> None:
    slow, fast = operated.client_config("slow"), operated.client_config("fast")
    operated.streamctl("quotas", "set", "--org", "slow", f"producer_byte_rate={QUOTA_BYTES_PER_S}")
    listed = json.loads(operated.streamctl("quotas", "list", "--org", "slow", "-o", "json").stdout)
    assert listed == [{"entity": {}, "values": {"producer_byte_rate": QUOTA_BYTES_PER_S}}]
    elapsed_s, throttle_ms = produce_timed(slow, "slow-orders")
    assert throttle_ms > 0
    assert (SENT_BYTES - BURST_BYTES) / elapsed_s < TAIL_THROUGHPUT_MAX_BYTES_PER_S, elapsed_s
    _, free_throttle_ms = produce_timed(fast, "fast-orders")
    assert free_throttle_ms == 0
