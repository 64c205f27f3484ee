"""The phase 15 e2e tests' agent: a real agent process requiring API keys, its first admin key,
and streamctl to create orgs and issue keys in them (over the HTTP API, as an operator does)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from streamhouse.cli.streamctl import app
from streamhouse.testing.agent_process import AgentProcess
from tests.e2e.conftest import start_agent
from tests.fixtures.tls import self_signed_certificate


class Secured:
    """A running agent requiring keys, its protocol and CA file, and a key of acme's admin."""

    def __init__(self, agent: AgentProcess, protocol: str, cafile: str) -> None:
        self.agent = agent
        self.protocol = protocol
        self.cafile = cafile
        admin = json.loads((agent.data_dir / "admin-credentials.json").read_text())
        self.admin_env = {
            "STREAMHOUSE_HTTP": agent.http_base,
            "STREAMHOUSE_KEY": admin["key"],
            "STREAMHOUSE_SECRET": admin["secret"],
        }
        self.key, self.secret = self.issue("acme", "admin")  # ACLs aside

    @property
    def admin(self) -> tuple[str, str]:
        """The default org's admin key, written at the first start: (key, secret)."""
        return self.admin_env["STREAMHOUSE_KEY"], self.admin_env["STREAMHOUSE_SECRET"]

    def streamctl(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return CliRunner().invoke(app, list(args), env=env or self.admin_env)

    def issue(self, org: str, role: str = "member") -> tuple[str, str]:
        if org != "default" and org not in self.streamctl("orgs", "list").stdout:
            created = self.streamctl("orgs", "create", org)
            assert created.exit_code == 0, created.output
        issued = self.streamctl("keys", "create", "--org", org, "--role", role, "-o", "json")
        assert issued.exit_code == 0, issued.output
        document = json.loads(issued.stdout)
        return document["key"], document["secret"]

    @property
    def listener(self) -> tuple[AgentProcess, str, str]:
        return (self.agent, self.protocol, self.cafile)


@contextmanager
def secured_agent(directory: Path, protocol: str = "SASL_PLAINTEXT") -> Iterator[Secured]:
    """An agent started with `--auth required` in `directory`, its Kafka listener on
    `protocol` (SASL_SSL with a self-signed certificate made there); stopped cleanly after."""
    args = ["--auth", "required"]
    cafile = ""
    if protocol == "SASL_SSL":
        cafile, keyfile = self_signed_certificate(directory)
        args += ["--kafka-security-protocol", protocol, "--ssl-certfile", cafile]
        args += ["--ssl-keyfile", keyfile]
    with start_agent(directory / "data", *args) as agent:
        yield Secured(agent, protocol, cafile)
        agent.stop_cleanly()
