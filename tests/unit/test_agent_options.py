"""`streamhouse agent` options are Settings fields: one name and one default each."""

from __future__ import annotations

import dataclasses
from typing import Any

import typer
from typer.testing import CliRunner

from streamhouse.cli.main import build_app
from streamhouse.config import Settings

RENAMED_FLAGS = {  # flags older than this rule, kept for operators
    "object_store_url": ("--object-store", "STREAMHOUSE_OBJECT_STORE"),
    "s3_endpoint_url": ("--s3-endpoint", "STREAMHOUSE_S3_ENDPOINT"),
}


def _agent_command() -> Any:
    group: Any = typer.main.get_command(build_app(lambda settings: 0))
    return group.commands["agent"]


def test_every_option_is_a_settings_field_with_its_default() -> None:
    fields = {field.name: field.default for field in dataclasses.fields(Settings)}
    for param in _agent_command().params:
        if param.name == "help" or not param.opts[0].startswith("--"):
            continue
        assert param.name in fields, f"--{param.name} is not a Settings field"
        assert param.default == fields[param.name], param.name
        flag, envvar = RENAMED_FLAGS.get(
            param.name, ("--" + param.name.replace("_", "-"), "STREAMHOUSE_" + param.name.upper())
        )
        assert flag in param.opts
        assert param.envvar == envvar


def test_flags_and_environment_reach_the_settings() -> None:
    seen: list[Settings] = []

    def run_agent(settings: Settings) -> int:
        seen.append(settings)
        return 0

    result = CliRunner().invoke(
        build_app(run_agent),
        ["agent", "--num-partitions", "3", "--no-auto-create-topics", "--group-max-size", "7"],
        env={"STREAMHOUSE_GROUP_MIN_SESSION_TIMEOUT_MS": "10", "STREAMHOUSE_DATA_DIR": "/d"},
    )
    assert result.exit_code == 0, result.output
    assert seen == [
        Settings(
            num_partitions=3,
            auto_create_topics=False,
            group_max_size=7,
            group_min_session_timeout_ms=10,
            data_dir="/d",
        )
    ]


def test_settings_that_cannot_hold_together_stop_the_start() -> None:
    result = CliRunner().invoke(
        build_app(lambda settings: 0), ["agent", "--num-partitions", "0"], env={}
    )
    assert result.exit_code == 2
    assert "num_partitions must be between 1 and" in result.output
