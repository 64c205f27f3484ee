"""Every core (issue 11, item 4): big-batch produce throughput (acks=1 and acks=all) through
`streamhouse agent --processes 1` and `--processes 2` on embedded defaults (one SQLite file, a
local object store), each on its own data directory, against librdkafka's mock broker in the
same run. The C load generator drives every run (bench/table.py's big-batch workloads); rounds
alternate between mock, one process and two, and the median round is reported."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.agents import Target, create_topic, figure, print_table, ratio, verdict
from bench.cluster import _median_round
from bench.table import WORKLOADS, Workload, ceiling, produce
from streamhouse.testing.agent_process import (
    AgentProcess,
    start_agent_process,
    start_agent_processes,
)
from streamhouse.testing.cluster import NO_LEADER, led_counts, partition_leaders

TOPIC = "bench-processes"
BIG_BATCHES = {"1": WORKLOADS[0], "all": WORKLOADS[1]}  # linger 5 ms, 1 MB batches
PROCESS_COUNTS = (1, 2)
ROUNDS = 3  # per count and ack mode, alternating (two cores shared with others: noisy)
VS_MOCK_MIN = {"1": 0.8, "all": 0.6}  # with one process per core
SPREAD_TIMEOUT_S = 30
SPREAD_POLL_S = 0.2


def _start(data_dir: Path, count: int) -> AgentProcess:
    if count == 1:
        return start_agent_process(data_dir, "--processes", "1")
    return start_agent_processes(data_dir, count)


def _wait_for_spread(agents: AgentProcess, count: int, partitions: int) -> list[int]:
    """Partitions led per process once every process leads some (or the bound passed)."""
    deadline = time.monotonic() + SPREAD_TIMEOUT_S
    while True:
        leaders = partition_leaders(agents.bootstrap, TOPIC)
        spread = set(leaders.values()) - {NO_LEADER}
        if (len(spread) >= count and len(leaders) == partitions) or time.monotonic() > deadline:
            return sorted(led_counts(leaders).values(), reverse=True)
        time.sleep(SPREAD_POLL_S)


def _rounds(started: dict[int, AgentProcess]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(column, acks, report) for every run: the mock, then each process count."""
    for _ in range(ROUNDS):
        for acks, workload in BIG_BATCHES.items():
            yield "mock", acks, ceiling(TOPIC, workload)
            for count, agents in started.items():
                yield f"processes_{count}", acks, produce(agents.bootstrap, TOPIC, workload)


def measure() -> tuple[dict[tuple[str, str], dict[str, Any]], dict[int, list[int]]]:
    workload: Workload = BIG_BATCHES["1"]
    with (
        tempfile.TemporaryDirectory(prefix="streamhouse-pbench-", dir=".") as scratch,
        ExitStack() as stack,
    ):
        started: dict[int, AgentProcess] = {}
        for count in PROCESS_COUNTS:
            agents = stack.enter_context(_start(Path(scratch) / f"processes-{count}", count))
            create_topic(agents.bootstrap, TOPIC, workload.partitions)
            started[count] = agents
        leaders = {
            count: _wait_for_spread(agents, count, workload.partitions)
            for count, agents in started.items()
        }
        measured: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for column, acks, report in _rounds(started):
            measured.setdefault((column, acks), []).append(report)
        for agents in started.values():
            agents.check_alive()  # a figure from a dead agent is no figure
    return {key: _median_round(reports) for key, reports in measured.items()}, leaders


def _rate(run: dict[str, Any]) -> float:
    return float(run["records_per_s"])


def run() -> dict[str, Any]:
    medians, leaders = measure()
    rows, lines = [], []
    for acks in BIG_BATCHES:
        mock = _rate(medians[("mock", acks)])
        one, two = (_rate(medians[(f"processes_{n}", acks)]) for n in PROCESS_COUNTS)
        target = Target("2 processes vs mock", ratio(two, mock), VS_MOCK_MIN[acks])
        rows.append(
            {
                "acks": acks,
                "mock": medians[("mock", acks)],
                **{f"processes_{n}": medians[(f"processes_{n}", acks)] for n in PROCESS_COUNTS},
                "ratio_1_vs_mock": ratio(one, mock),
                "ratio_2_vs_mock": ratio(two, mock),
                "ratio_2_vs_1": ratio(two, one),
                "target": target.as_json(),
            }
        )
        shown = (mock, one, two, ratio(one, mock), ratio(two, mock), ratio(two, one))
        lines.append(
            [f"acks={acks}", *(figure(v) for v in shown), target.text(), verdict([target])]
        )
    columns = ["big batches (rec/s)", "mock", "1 process", "2 processes", "1/mock", "2/mock"]
    print_table("every core: --processes 1 and 2", [*columns, "2/1", "target", ""], lines)
    return {
        "leaders_per_process": {f"processes_{n}": leaders[n] for n in PROCESS_COUNTS},
        "rows": rows,
    }
