"""What every `streamctl` command shares: `--bootstrap` in its help, one clear error when no
agent answers, and no metadata store of its own (it only talks Kafka to an agent: of the real
adapters it loads only the Kafka client `streamctl cluster` sends its raw requests with)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from streamhouse.cli.streamctl import app
from streamhouse.testing.network import free_loopback_port

COMMANDS = [
    ("topics", "list"),
    ("topics", "create"),
    ("topics", "describe"),
    ("topics", "alter-config"),
    ("topics", "delete"),
    ("groups", "list"),
    ("groups", "describe"),
    ("groups", "lag"),
    ("groups", "reset-offsets"),
    ("groups", "delete"),
    ("cluster",),
    ("produce",),
    ("consume",),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "--bootstrap" in result.output


@pytest.mark.parametrize("command", [["groups", "list"], ["topics", "list"], ["cluster"]])
def test_unreachable_agent_is_one_clear_error(command: list[str]) -> None:
    """The installed entry point, as an operator runs it, against a port nobody listens on."""
    env = {**os.environ, "STREAMHOUSE_BOOTSTRAP": f"127.0.0.1:{free_loopback_port()}"}
    code = "from streamhouse.cli.streamctl import app; app(prog_name='streamctl')"
    done = subprocess.run(
        [sys.executable, "-c", code, *command, "--timeout", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot reach an agent at 127.0.0.1:" in done.stderr
    assert "Traceback" not in done.stderr


def test_streamctl_never_loads_the_metadata_store() -> None:
    code = (
        "import sys, streamhouse.cli.streamctl; "
        "print(sorted(m for m in sys.modules if m.startswith(('streamhouse.io', 'sqlalchemy'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "['streamhouse.io', 'streamhouse.io.kafka_client']"
