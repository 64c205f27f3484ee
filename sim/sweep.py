"""Many seeds at once, reproduction files, and their replay.

`sweep(seeds, jobs)` runs each seed in its own process, forked from this
(already deterministic, already imported) one, at most `jobs` at a time; a
child that outlives `run_wall_s_max` is killed and counted as a crash. A
failing seed writes a reproduction file (`write_reproduction`): JSON with the
seed, its options, the verdict, the violations, the trace and history
digests, the history itself and the agents' log lines (`sim.logs`).
`replay(path)` runs the seed again and compares (`in_children` runs any work
the way a sweep runs seeds: `python -m sim replay` replays many files so).
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from sim.known import known_failure
from sim.options import DEFAULT_PROFILE, draw_options, options_from_json
from sim.runner import RunOutcome, run_seed
from sim.verdict import EXIT_CRASH

RUN_WALL_S_MAX = 30.0
REPLAY_WALL_S_MAX = 120.0  # a replay's own bound, as each ran in a process of its own before
READ_BYTES = 1 << 16
POLL_S = 0.05
K = TypeVar("K")


@dataclass
class SeedResult:
    """One seed's verdict as a sweep sees it (the child's RunOutcome, history left out)."""

    seed: int
    exit_code: int
    virtual_ms: int = 0
    wall_s: float = 0.0
    violations: list[str] = field(default_factory=list)
    reproduction: str = ""
    known: str = ""  # the known failure it shows (sim.known), if any

    @property
    def new_failure(self) -> bool:
        return self.exit_code != 0 and not self.known


@dataclass
class _Child(Generic[K]):
    key: K
    pid: int
    fd: int
    started_s: float
    data: bytearray = field(default_factory=bytearray)


def sweep(
    seeds: Sequence[int],
    jobs: int,
    failures_dir: Path,
    run_wall_s_max: float = RUN_WALL_S_MAX,
    on_result: Callable[[SeedResult], None] | None = None,
    profile: str = DEFAULT_PROFILE,
) -> list[SeedResult]:
    """Run every seed in a forked child, `jobs` at a time; failing seeds get a file."""

    def run(seed: int) -> dict[str, Any]:
        outcome = run_seed(seed, options=draw_options(seed, profile))
        result = SeedResult(
            seed, outcome.exit_code, outcome.virtual_ms, outcome.wall_s, outcome.violations
        )
        result.known = known_failure(outcome)
        if result.new_failure:
            result.reproduction = str(write_reproduction(outcome, failures_dir))
        return asdict(result)

    results: list[SeedResult] = []
    for seed, payload, problem in in_children(seeds, run, jobs, run_wall_s_max):
        results.append(SeedResult(seed, EXIT_CRASH, violations=[problem]))
        if payload is not None:
            results[-1] = SeedResult(**payload)
        if on_result is not None:
            on_result(results[-1])
    return sorted(results, key=lambda result: result.seed)


def in_children(
    keys: Sequence[K], work: Callable[[K], dict[str, Any]], jobs: int, run_wall_s_max: float
) -> Iterator[tuple[K, dict[str, Any] | None, str]]:
    """`work(key)` for every key, each in a child forked from this (already deterministic,
    already imported) process, `jobs` at a time; yields (key, what work returned, "") as each
    child ends, or (key, None, the problem) for a child that died without an answer or
    outlived `run_wall_s_max` (killed)."""
    queue = list(keys)
    queue.reverse()
    running: dict[int, _Child[K]] = {}
    while queue or running:
        while queue and len(running) < jobs:
            child = _fork(queue.pop(), work)
            running[child.fd] = child
        readable, _, _ = select.select(list(running), [], [], POLL_S)
        for fd in readable:
            child = running[fd]
            chunk = os.read(fd, READ_BYTES)
            if chunk:
                child.data += chunk
                continue
            del running[fd]
            _reap(child)
            if child.data:
                yield child.key, json.loads(child.data), ""
            else:
                yield child.key, None, "the run died without a verdict"
        now_s = time.monotonic()
        for fd, child in list(running.items()):
            if now_s - child.started_s > run_wall_s_max:
                os.kill(child.pid, signal.SIGKILL)
                del running[fd]
                _reap(child)
                yield child.key, None, "hung: killed"


def _fork(key: K, work: Callable[[K], dict[str, Any]]) -> _Child[K]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: do the work, report, and leave without cleanup
        os.close(read_fd)
        code = 0
        try:
            payload = json.dumps(work(key)).encode()
            while payload:
                payload = payload[os.write(write_fd, payload) :]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    return _Child(key, pid, read_fd, time.monotonic())


def _reap(child: _Child[K]) -> None:
    os.close(child.fd)
    os.waitpid(child.pid, 0)


def write_reproduction(outcome: RunOutcome, failures_dir: Path) -> Path:
    """A JSON reproduction file for a failing run; returns its path."""
    failures_dir.mkdir(parents=True, exist_ok=True)
    path = failures_dir / f"seed-{outcome.seed}.json"
    document = {
        "seed": outcome.seed,
        "options": outcome.options,
        "options_json": outcome.options_json,
        "exit_code": outcome.exit_code,
        "violations": outcome.violations,
        "notes": outcome.notes,
        "virtual_ms": outcome.virtual_ms,
        "trace_digest": outcome.trace_digest,
        "history_digest": outcome.history_digest,
        "history": outcome.history.splitlines(),
        "log": outcome.log,
    }
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class Replay:
    """A reproduction run again: its recorded verdict and what this run gave."""

    recorded_exit_code: int
    outcome: RunOutcome
    same_options: bool
    same_history: bool
    same_trace: bool


def replay(path: Path) -> Replay:
    document = json.loads(path.read_text(encoding="utf-8"))
    options = document.get("options_json")
    outcome = run_seed(int(document["seed"]), options=options and options_from_json(options))
    return Replay(
        int(document["exit_code"]),
        outcome,
        outcome.options == document["options"],
        outcome.history_digest == document["history_digest"],
        outcome.trace_digest == document["trace_digest"],
    )
