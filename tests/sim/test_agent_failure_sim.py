"""Our own invariant failing inside a simulated agent, on the request path or in a background
service, stops that agent and ends the run as a crash (exit 127); the reproduction file keeps
the agents' log lines with the traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.runner import run_seed
from sim.sweep import write_reproduction
from sim.verdict import EXIT_CRASH
from streamhouse.engine.groups import GroupCoordinator
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.connection import Request
from streamhouse.server import kafka_handlers
from streamhouse.server.kafka_context import Completion, KafkaContext

SEED = 1  # three agents, producers from the start: Produce is the first request they send
BROKEN = "invariant broken on purpose by the test"


async def _broken_produce(ctx: KafkaContext, request: Request) -> Completion:
    raise AssertionError(BROKEN)


async def _broken_retention(self: GroupCoordinator) -> None:
    raise AssertionError(BROKEN)


def test_a_handler_breaking_an_invariant_crashes_the_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(kafka_handlers.HANDLERS, ApiKey.PRODUCE, _broken_produce)
    outcome = run_seed(SEED)
    assert outcome.exit_code == EXIT_CRASH
    (note,) = outcome.notes
    assert "AgentFailed: agent-" in note and BROKEN in note and "_broken_produce" in note
    document = json.loads(write_reproduction(outcome, tmp_path).read_text())
    log = "\n".join(document["log"])
    assert "CRITICAL streamhouse.agent: our own invariant failed in the Kafka PRODUCE" in log
    assert "Traceback (most recent call last)" in log and f"AssertionError: {BROKEN}" in log


def test_a_dying_background_service_crashes_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GroupCoordinator, "_run_retention", _broken_retention)
    outcome = run_seed(SEED)
    assert outcome.exit_code == EXIT_CRASH
    assert any(BROKEN in note for note in outcome.notes)
    assert any("background service group-offset-retention" in line for line in outcome.log)


def test_a_clean_run_keeps_no_failure() -> None:
    outcome = run_seed(SEED)
    assert outcome.exit_code == 0, outcome.violations + outcome.notes
    assert not any("CRITICAL" in line for line in outcome.log)
