"""Issue 11's read rows: consume from the tail (just written, the agent still running) and from
cold objects (the agent restarted: empty tail and block cache), next to librdkafka's mock
broker and the agent with `--storage null`; and the agent's peak RSS (VmHWM) through writing
and reading back 1,000 partitions with the default caches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import loadgen
from bench.agents import (
    NULL_STORAGE,
    Target,
    create_topic,
    figure,
    print_table,
    proc_status_mib,
    ratio,
    running_agent,
    scratch_dir,
)

TOPIC = "bench-reads"
PARTITIONS = 8
VALUE_BYTES = 100
FILL_SECONDS = 2.0
FILL_RECORDS_MAX = 4_000_000
CONSUME_SECONDS_MAX = 60.0
CONSUME_IDLE_S = 3.0
MANY_PARTITIONS_IDLE_S = 15.0  # cold reads of 1,000 partitions can pause for seconds
MOCK_RECORDS = 2_000_000  # the mock keeps only the newest few hundred thousand of them
MANY_PARTITIONS = 1_000
TAIL_RECORDS_PER_S_MIN = 3_000_000
COLD_RECORDS_PER_S_MIN = 2_500_000
PEAK_RSS_MIB_MAX = 512.0


def fill(bootstrap: str, topic: str, partitions: int) -> dict[str, Any]:
    """Big batches, acks=1, for FILL_SECONDS: the data the reads read back."""
    create_topic(bootstrap, topic, partitions)
    return loadgen.run(
        "produce",
        bootstrap,
        topic,
        records=FILL_RECORDS_MAX,
        seconds=FILL_SECONDS,
        partitions=partitions,
        value_bytes=VALUE_BYTES,
    )


def consume(target: str | None, topic: str, records: int, **extra: Any) -> dict[str, Any]:
    options = {"seconds": CONSUME_SECONDS_MAX, "idle_s": CONSUME_IDLE_S, **extra}
    return loadgen.run("consume", target, topic, records=records, **options)


def tail_and_cold(data_dir: Path) -> dict[str, Any]:
    """Fill, read the tail, restart the agent, read the same records from objects."""
    with running_agent(data_dir) as agent:
        written = fill(agent.bootstrap, TOPIC, PARTITIONS)["delivered"]
        tail = consume(agent.bootstrap, TOPIC, written)
    with running_agent(data_dir) as agent:
        cold = consume(agent.bootstrap, TOPIC, written)
    return {"written": written, "tail": tail, "cold": cold}


def null_tail(data_dir: Path) -> dict[str, Any]:
    with running_agent(data_dir, *NULL_STORAGE) as agent:
        written = fill(agent.bootstrap, TOPIC, PARTITIONS)["delivered"]
        return consume(agent.bootstrap, TOPIC, written)


def many_partitions_rss(data_dir: Path) -> dict[str, Any]:
    """Peak RSS of an agent writing and reading back MANY_PARTITIONS partitions, then of a
    restarted one reading them all from objects."""
    with running_agent(data_dir) as agent:
        written = fill(agent.bootstrap, TOPIC, MANY_PARTITIONS)["delivered"]
        tail = consume(agent.bootstrap, TOPIC, written, idle_s=MANY_PARTITIONS_IDLE_S)
        writing = proc_status_mib(agent.pid)
    with running_agent(data_dir) as agent:
        cold = consume(agent.bootstrap, TOPIC, written, idle_s=MANY_PARTITIONS_IDLE_S)
        reading = proc_status_mib(agent.pid)
    return {
        "partitions": MANY_PARTITIONS,
        "written": written,
        "tail_records": tail["records"],
        "cold_records": cold["records"],
        "cold_records_per_s": cold["records_per_s"],
        "writing_and_tail": writing,
        "cold_restart": reading,
        "peak_rss_mib": max(writing["peak_rss_mib"], reading["peak_rss_mib"]),
    }


def measure() -> dict[str, Any]:
    with scratch_dir("streamhouse-reads-") as scratch:
        agent = tail_and_cold(scratch / "agent")
        null = null_tail(scratch / "null")
        rss = many_partitions_rss(scratch / "many")
    mock = consume(None, TOPIC, MOCK_RECORDS, partitions=PARTITIONS)
    return {"mock": mock, **agent, "tail_storage_null": null, "many_partitions": rss}


def targets(runs: dict[str, Any]) -> dict[str, Target]:
    return {
        "tail": Target("rec/s", runs["tail"]["records_per_s"], TAIL_RECORDS_PER_S_MIN),
        "cold": Target("rec/s", runs["cold"]["records_per_s"], COLD_RECORDS_PER_S_MIN),
        "rss": Target(
            "peak MiB", runs["many_partitions"]["peak_rss_mib"], PEAK_RSS_MIB_MAX, at_most=True
        ),
    }


def show(runs: dict[str, Any], checks: dict[str, Target]) -> None:
    mock = runs["mock"]["records_per_s"]
    rate = "records_per_s"
    lines = [
        ["consume from the tail (rec/s)", figure(mock), figure(runs["tail"][rate])],
        ["consume from cold objects (rec/s)", figure(mock), figure(runs["cold"][rate])],
        ["peak RSS, 1,000 partitions (MiB)", "", figure(runs["many_partitions"]["peak_rss_mib"])],
    ]
    lines[0] += [figure(runs["tail_storage_null"][rate]), figure(ratio(runs["tail"][rate], mock))]
    lines[1] += ["", figure(ratio(runs["cold"][rate], mock))]
    lines[2] += ["", ""]
    for line, check in zip(lines, checks.values(), strict=True):
        line += [check.text(), "met" if check.met else "NOT met"]
    columns = ["read", "mock", "agent", "null", "agent/mock", "target", ""]
    print_table(f"reads, {VALUE_BYTES}-byte records", columns, lines)


def run() -> dict[str, Any]:
    runs = measure()
    checks = targets(runs)
    show(runs, checks)
    return {
        **runs,
        "targets": {name: check.as_json() for name, check in checks.items()},
        "note": "the mock keeps only its newest records, so it is read for fewer of them",
    }
