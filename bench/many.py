"""Issue 11's many clients (item 5): CONNECTIONS producer connections, each sending one
100-byte record per request RATE_PER_CONNECTION times a second, acks=1 and acks=all, against
librdkafka's mock broker, the agent and the agent with `--storage null`; p99 latency from each
request's scheduled time, and the agent's memory and open file descriptors sampled under load.

The generator is the C load generator's `many` mode: one thread and epoll over raw sockets
speaking Produce v3, so a thousand connections cost it a thousand sockets, not a thousand
librdkafka clients; its own CPU time is reported beside each run."""

from __future__ import annotations

from typing import Any

from bench import loadgen
from bench.agents import (
    NULL_STORAGE,
    Target,
    create_topic,
    figure,
    open_fds,
    print_table,
    proc_status_mib,
    running_agent,
    scratch_dir,
    wait_until_idle,
)
from streamhouse.testing.agent_process import AgentProcess

TOPIC = "bench-many"
PARTITIONS = 8
VALUE_BYTES = 100
CONNECTIONS = 1_000
RATE_PER_CONNECTION = 10.0  # requests a second
WARMUP_S = 1.0
MEASURE_S = 4.0
DRAIN_S = 5.0
P99_MS_MAX = {"1": 20.0, "all": 300.0}
ACKS = ("1", "all")


class Sampler:
    """The highest RSS, peak RSS and open-file count seen of one agent process."""

    def __init__(self, agent: AgentProcess) -> None:
        self.pid = agent.pid
        self.high: dict[str, float] = {"rss_mib": 0.0, "peak_rss_mib": 0.0, "open_fds": 0}

    def __call__(self) -> None:
        seen = {**proc_status_mib(self.pid), "open_fds": float(open_fds(self.pid))}
        self.high = {name: max(value, seen[name]) for name, value in self.high.items()}


def drive(target: str | None, acks: str, sampler: Sampler | None) -> dict[str, Any]:
    options: dict[str, Any] = {
        "acks": acks,
        "partitions": PARTITIONS,
        "value_bytes": VALUE_BYTES,
        "connections": CONNECTIONS,
        "rate": RATE_PER_CONNECTION,
        "warmup_s": WARMUP_S,
        "seconds": MEASURE_S,
        "drain_s": DRAIN_S,
    }
    if sampler is None:
        return loadgen.run("many", target, TOPIC, **options)
    report = loadgen.run_sampled("many", target, TOPIC, sampler, **options)
    settle_s = wait_until_idle(sampler.pid)  # what it did not answer, served before going on
    return {**report, "agent": sampler.high, "agent_settle_s": settle_s}


def measure() -> dict[str, list[dict[str, Any]]]:
    """Per ack mode, the mock, the agent and the agent storing nothing, one after another."""
    runs: dict[str, list[dict[str, Any]]] = {"mock": [], "agent": [], "agent_storage_null": []}
    with (
        scratch_dir("streamhouse-many-") as scratch,
        running_agent(scratch / "agent") as agent,
        running_agent(scratch / "null", *NULL_STORAGE) as null,
    ):
        for running in (agent, null):
            create_topic(running.bootstrap, TOPIC, PARTITIONS)
        for acks in ACKS:
            runs["mock"].append(drive(None, acks, None))
            runs["agent"].append(drive(agent.bootstrap, acks, Sampler(agent)))
            runs["agent_storage_null"].append(drive(null.bootstrap, acks, Sampler(null)))
    return runs


def p99(run: dict[str, Any]) -> str:
    """The p99 as the table shows it: '≥' when requests still unanswered at the end were
    counted at their age then (a lower bound)."""
    prefix = "≥ " if run["latencies_unanswered"] else ""
    return prefix + figure(run["p99_ms"])


def show(rows: list[dict[str, Any]], limits: tuple[int, int]) -> None:
    lines = []
    for row in rows:
        agent = row["agent"]
        check = row["target"]
        lines.append(
            [
                f"acks={row['acks']}",
                p99(row["mock"]),
                p99(agent),
                p99(row["agent_storage_null"]),
                figure(agent["requests_per_s"]),
                figure(agent["agent"]["peak_rss_mib"]),
                figure(agent["agent"]["open_fds"]),
                figure(agent["generator_cpu_s"]),
                check["target"],
                "met" if check["met"] else "NOT met",
            ]
        )
    columns = ["", "mock p99 ms", "agent p99 ms", "null p99 ms", "agent req/s", "peak RSS MiB"]
    print_table(
        f"{CONNECTIONS} connections x {RATE_PER_CONNECTION:g} records/s "
        f"(open-file limit {limits[0]}/{limits[1]})",
        [*columns, "agent fds", "generator CPU s", "target", ""],
        lines,
    )


def run() -> dict[str, Any]:
    limits = loadgen.raise_open_files_limit()
    runs = measure()
    rows = []
    for index, acks in enumerate(ACKS):
        row = {column: runs[column][index] for column in runs}
        check = Target("p99 ms", row["agent"]["p99_ms"], P99_MS_MAX[acks], at_most=True)
        rows.append({"acks": acks, **row, "target": check.as_json()})
    show(rows, limits)
    return {
        "connections": CONNECTIONS,
        "rate_per_connection": RATE_PER_CONNECTION,
        "measure_s": MEASURE_S,
        "open_files_limit": {"soft": limits[0], "hard": limits[1]},
        "rows": rows,
        "note": "p99 counts requests unanswered at the end at their age then: a lower bound "
        "when latencies_unanswered > 0",
    }
