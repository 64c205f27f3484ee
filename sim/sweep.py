"""Many seeds at once, reproduction files, and their replay.

`sweep(seeds, jobs)` runs each seed in its own process, forked from this
(already deterministic, already imported) one, at most `jobs` at a time; a
child that outlives `run_wall_s_max` is killed and counted as a crash. A
failing seed writes a reproduction file (`write_reproduction`): JSON with the
seed, its options, the verdict, the violations, the trace and history
digests, the history itself and the agents' log lines (`sim.logs`).
`replay(path)` runs the seed again and compares.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sim.known import known_failure
from sim.options import DEFAULT_PROFILE, draw_options, options_from_json
from sim.runner import RunOutcome, run_seed
from sim.verdict import EXIT_CRASH

RUN_WALL_S_MAX = 30.0
READ_BYTES = 1 << 16
POLL_S = 0.05


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
class _Child:
    seed: int
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
    queue = list(seeds)
    queue.reverse()
    running: dict[int, _Child] = {}
    results: list[SeedResult] = []
    while queue or running:
        while queue and len(running) < jobs:
            child = _fork(queue.pop(), failures_dir, profile)
            running[child.fd] = child
        readable, _, _ = select.select(list(running), [], [], POLL_S)
        for fd in readable:
            child = running[fd]
            chunk = os.read(fd, READ_BYTES)
            if chunk:
                child.data += chunk
                continue
            del running[fd]
            results.append(_reap(child))
            if on_result is not None:
                on_result(results[-1])
        now_s = time.monotonic()
        for fd, child in list(running.items()):
            if now_s - child.started_s > run_wall_s_max:
                os.kill(child.pid, signal.SIGKILL)
                del running[fd]
                _reap(child)
                hung = SeedResult(child.seed, EXIT_CRASH, violations=["hung: killed"])
                results.append(hung)
                if on_result is not None:
                    on_result(hung)
    return sorted(results, key=lambda result: result.seed)


def _fork(seed: int, failures_dir: Path, profile: str) -> _Child:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run one seed, report, and leave without cleanup
        os.close(read_fd)
        code = 0
        try:
            outcome = run_seed(seed, options=draw_options(seed, profile))
            result = SeedResult(
                seed, outcome.exit_code, outcome.virtual_ms, outcome.wall_s, outcome.violations
            )
            result.known = known_failure(outcome)
            if result.new_failure:
                result.reproduction = str(write_reproduction(outcome, failures_dir))
            payload = json.dumps(asdict(result)).encode()
            while payload:
                payload = payload[os.write(write_fd, payload) :]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    return _Child(seed, pid, read_fd, time.monotonic())


def _reap(child: _Child) -> SeedResult:
    os.close(child.fd)
    os.waitpid(child.pid, 0)
    if not child.data:
        return SeedResult(child.seed, EXIT_CRASH, violations=["the run died without a verdict"])
    return SeedResult(**json.loads(child.data))


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
