"""What the load-generator benchmarks share: an agent process in a scratch directory, topics
created on it, its memory and open files read from /proc, and a target checked and printed."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from rich.console import Console
from rich.table import Table

from streamhouse.testing.agent_process import AgentProcess, start_agent_process

TOPIC_TIMEOUT_S = 30
STOP_TIMEOUT_S = 120
KIB_PER_MIB = 1024
LIBRDKAFKA_LOG_LEVEL = 4  # warnings and worse; not the notice of its purge at exit
IDLE_CPU_FRACTION = 0.15  # of one core: an agent below it has no backlog left
IDLE_SAMPLE_S = 0.5
IDLE_WAIT_MAX_S = 30.0
TABLE_WIDTH_MIN = 150  # columns, when stderr is not a terminal that says its own
NULL_STORAGE = ("--storage", "null")


def agent_log() -> Path:
    """One log per bench process, outliving the scratch directory (named in any failure)."""
    return Path(tempfile.gettempdir()) / f"streamhouse-bench-agent-{os.getpid()}.log"


@contextmanager
def running_agent(data_dir: Path, *extra: str) -> Iterator[AgentProcess]:
    """An agent on `data_dir`, stopped cleanly on exit; a figure from a dead agent is refused."""
    agent = start_agent_process(data_dir, *extra, log_path=agent_log())
    try:
        yield agent
        agent.check_alive()
    finally:
        agent.stop_cleanly(STOP_TIMEOUT_S)


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A scratch directory on the disk being measured (here), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix, dir=".") as scratch:
        yield Path(scratch)


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": LIBRDKAFKA_LOG_LEVEL})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(TOPIC_TIMEOUT_S)


def proc_status_mib(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak resident set) of process `pid`, in MiB."""
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) / KIB_PER_MIB
    return {"rss_mib": found["VmRSS"], "peak_rss_mib": found["VmHWM"]}


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time process `pid` has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(pid: int) -> float:
    """Wait (at most IDLE_WAIT_MAX_S) until process `pid` uses under IDLE_CPU_FRACTION of a
    core: requests left over from a run that outran it are served before the next run starts.
    Returns the seconds waited."""
    started = time.monotonic()
    used = cpu_seconds(pid)
    while time.monotonic() - started < IDLE_WAIT_MAX_S:
        time.sleep(IDLE_SAMPLE_S)
        now = cpu_seconds(pid)
        if now - used < IDLE_CPU_FRACTION * IDLE_SAMPLE_S:
            break
        used = now
    return time.monotonic() - started


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


@dataclass(frozen=True)
class Target:
    """One of issue 11's targets: what is measured, the bound, and whether it holds."""

    what: str
    measured: float | None
    bound: float
    at_most: bool = False  # True: measured ≤ bound; False: measured ≥ bound

    @property
    def met(self) -> bool:
        if self.measured is None:
            return False
        return self.measured <= self.bound if self.at_most else self.measured >= self.bound

    def text(self) -> str:
        sign = "≤" if self.at_most else "≥"
        return f"{self.what} {sign} {_figure(self.bound)}"

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.text(),
            "measured": self.measured,
            "bound": self.bound,
            "met": self.met,
        }


def _figure(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.2f} M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.1f} k"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}"


def figure(value: float | None) -> str:
    """A number as a table shows it: 2.06 M, 515.0 k, 44, 0.56."""
    return _figure(value)


def verdict(targets: list[Target]) -> str:
    if not targets:
        return ""
    return "met" if all(t.met for t in targets) else "NOT met"


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A Rich table on stderr (stdout carries the JSON document)."""
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=TABLE_WIDTH_MIN)
    console.print(table)
