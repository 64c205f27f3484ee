"""The README's quick start works as written: its Python snippet runs unchanged (only the port
differs) and kcat produces and consumes with default settings."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Agent

README = Path(__file__).resolve().parents[2] / "README.md"
README_BOOTSTRAP = "127.0.0.1:9092"
README_REGISTRY = "http://127.0.0.1:8081"
COMMAND_TIMEOUT_S = 60


def readme_section(title: str) -> str:
    """The README's text under `## title`, up to the next section."""
    return README.read_text().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def _readme_python_snippets() -> list[str]:
    """The Python of the quick start (producing, consuming, registering a schema)."""
    sections = ("Produce and consume", "Schemas")
    return [block for title in sections for block in code_blocks(readme_section(title), "python")]


def _kcat() -> str:
    found = shutil.which("kcat") or shutil.which("kafkacat")
    if found is None:
        pytest.fail("kcat is not installed: apt-get install kcat (.ci/run does this)")
    return found


def test_readme_python_snippet_runs_unchanged(agent: Agent) -> None:
    snippets = _readme_python_snippets()
    assert snippets, "the README has no Python quick start"
    for snippet in snippets:
        assert README_BOOTSTRAP in snippet
        here = snippet.replace(README_BOOTSTRAP, agent.bootstrap)
        result = subprocess.run(
            [sys.executable, "-c", here.replace(README_REGISTRY, agent.registry_url)],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        assert result.returncode == 0, result.stderr
        expected = "b'hello'" if "hello" in snippet else "version 1"
        assert expected in result.stdout, result.stdout


def test_kcat_produces_and_consumes(agent: Agent) -> None:
    kcat = _kcat()
    lines = [f"key-{index}:value {index}" for index in range(20)]
    produced = subprocess.run(
        [kcat, "-b", agent.bootstrap, "-P", "-t", "kcat-demo", "-K:"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run(
        [kcat, "-b", agent.bootstrap, "-C", "-t", "kcat-demo", "-e", "-f", "%k:%s@%o\n"],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.splitlines() == [f"{line}@{i}" for i, line in enumerate(lines)]
    listing = subprocess.run(
        [kcat, "-b", agent.bootstrap, "-L", "-t", "kcat-demo"],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert listing.returncode == 0 and "1 partitions" in listing.stdout, listing.stdout


README_REST = "127.0.0.1:8082"


def _readme_rest_commands() -> str:
    """The shell block of the README's REST and gRPC section."""
    blocks = code_blocks(readme_section("REST and gRPC"), "sh")
    assert blocks, "the REST section has no shell block"
    return blocks[0]


def test_readme_rest_commands_run_unchanged(agent: Agent) -> None:
    """Each curl of the README answers without an error (only the port differs)."""
    if shutil.which("curl") is None:
        pytest.fail("curl is not installed: apt-get install curl")
    script = _readme_rest_commands().replace(README_REST, f"127.0.0.1:{agent.rest_port}")
    ran = subprocess.run(
        ["bash", "-eu", "-c", script.replace("curl -s", "curl -s -S -w '\\n'")],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    answers = [json.loads(line) for line in ran.stdout.splitlines() if line.strip()]
    assert len(answers) == 6, ran.stdout  # two topics, two produces, a record, partitions
    for answer in answers:
        code = answer.get("error_code") if isinstance(answer, dict) else None
        assert code in (None, 200), answer  # v3's delivery report says 200
    produced = answers[2]["offsets"]
    assert [o["error_code"] for o in produced] == [None, None], produced
    assert answers[3]["value_schema_id"] is not None, answers[3]
