"""Every core: produce throughput (big batches, acks=1 and acks=all) through `streamhouse agent
--processes 1` and `--processes 2` on embedded defaults (one SQLite file, a local object store),
each on its own data directory, in the same run; rounds alternate between them and the median
is reported, with the leaders per process next to the figures."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from bench.cluster import _median_round
from bench.kafka import produce
from streamhouse.testing.agent_process import (
    AgentProcess,
    start_agent_process,
    start_agent_processes,
)
from streamhouse.testing.cluster import NO_LEADER, led_counts, partition_leaders

TOPIC = "bench-processes"
PARTITIONS = 8
PROCESS_COUNTS = (1, 2)
ROUNDS = 3  # per count and ack mode, alternating counts (two cores shared with others: noisy)
TOPIC_TIMEOUT_S = 30
SPREAD_TIMEOUT_S = 30
SPREAD_POLL_S = 0.2


def _start(data_dir: Path, count: int) -> AgentProcess:
    if count == 1:
        return start_agent_process(data_dir, "--processes", "1")
    return start_agent_processes(data_dir, count)


def _wait_for_spread(agents: AgentProcess, count: int) -> list[int]:
    """Partitions led per process once every process leads some (or the bound passed)."""
    deadline = time.monotonic() + SPREAD_TIMEOUT_S
    while True:
        leaders = partition_leaders(agents.bootstrap, TOPIC)
        spread = set(leaders.values()) - {NO_LEADER}
        if len(spread) >= count or time.monotonic() > deadline:
            return sorted(led_counts(leaders).values(), reverse=True)
        time.sleep(SPREAD_POLL_S)


def _rounds(records: int, value_bytes: int, counts: dict[int, AgentProcess]) -> Iterator[Any]:
    for _ in range(ROUNDS):
        for count, agents in counts.items():
            for acks in ("1", "all"):
                config = {"bootstrap.servers": agents.bootstrap, "acks": acks}
                yield count, acks, produce(config, TOPIC, records, value_bytes)


def run(records: int, value_bytes: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="streamhouse-pbench-", dir=".") as scratch,
        ExitStack() as stack,
    ):
        started: dict[int, AgentProcess] = {}
        for count in PROCESS_COUNTS:
            agents = stack.enter_context(_start(Path(scratch) / f"processes-{count}", count))
            admin = AdminClient({"bootstrap.servers": agents.bootstrap})
            admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(TOPIC_TIMEOUT_S)
            started[count] = agents
        leaders = {count: _wait_for_spread(a, count) for count, a in started.items()}
        measured: dict[tuple[int, str], list[dict[str, Any]]] = {}
        for count, acks, report in _rounds(records, value_bytes, started):
            measured.setdefault((count, acks), []).append(report)
        for agents in started.values():
            agents.check_alive()  # a figure from a dead agent is no figure
    runs = {
        f"processes_{count}": {
            "leaders_per_process": leaders[count],
            **{f"acks_{acks}": _median_round(measured[(count, acks)]) for acks in ("1", "all")},
        }
        for count in PROCESS_COUNTS
    }
    rate = "records_per_s"
    return {
        "records": records,
        "value_bytes": value_bytes,
        "partitions": PARTITIONS,
        **runs,
        **{
            f"acks_{acks}_two_vs_one_ratio": runs["processes_2"][f"acks_{acks}"][rate]
            / runs["processes_1"][f"acks_{acks}"][rate]
            for acks in ("1", "all")
        },
    }
