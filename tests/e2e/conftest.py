"""e2e fixtures: a real agent process started from the package, on free loopback ports."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer

from streamhouse.testing.agent_process import AgentProcess, start_agent_process

Agent = AgentProcess
E2E_FLUSH_INTERVAL_MS = "50"  # short, so durable acks come quickly
WITHIN_POLL_S = 0.2


def within(timeout_s: float, holds: Callable[[], bool], what: str) -> float:
    """Seconds until `holds()`, asked every WITHIN_POLL_S; fails after `timeout_s`."""
    started = time.monotonic()
    while not holds():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what} not within {timeout_s} s")
        time.sleep(WITHIN_POLL_S)
    return time.monotonic() - started


def produce_each(
    config: dict[str, Any], topic: str, values: list[bytes], timeout_s: float
) -> list[KafkaError | None]:
    """Each value's delivery error (None: written), sent one after another by a producer of
    `config`, so one refusal leaves the next value's fate its own."""
    producer = Producer(config)
    outcomes: list[KafkaError | None] = []
    for value in values:
        producer.produce(topic, value, on_delivery=lambda error, _: outcomes.append(error))
        producer.flush(timeout_s)
    assert len(outcomes) == len(values)
    return outcomes


def poll_messages(consumer: Consumer, count: int, timeout_s: float) -> list[Message]:
    """The next `count` messages `consumer` polls, each poll waiting a tenth of `timeout_s`
    and at most 10 * `count` polls; fails on a message that is an error."""
    found: list[Message] = []
    for _ in range(count * 10):
        if len(found) == count:
            break
        message = consumer.poll(timeout_s / 10)
        if message is None:
            continue
        assert message.error() is None, message.error()
        found.append(message)
    return found


def start_agent(data_dir: Path, *extra: str) -> AgentProcess:
    """An agent for e2e tests: flushes every 50 ms unless `extra` says otherwise."""
    return start_agent_process(data_dir, "--flush-interval-ms", E2E_FLUSH_INTERVAL_MS, *extra)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    with start_agent(tmp_path / "data") as running:
        yield running
        running.stop_cleanly()


@pytest.fixture
def group_agent(tmp_path: Path) -> Iterator[AgentProcess]:
    """An agent whose new groups wait only briefly for more members before generation 1."""
    with start_agent(tmp_path / "data", "--group-initial-rebalance-delay-ms", "300") as running:
        yield running
        running.stop_cleanly()
