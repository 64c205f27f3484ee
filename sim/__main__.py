"""`python -m sim`: simulated cluster runs, seed sweeps, replays, and the smoke run.

    python -m sim run --seed N [--trace] [--failures-dir DIR]
    python -m sim sweep --seeds A-B [--jobs 2] [--failures-dir DIR]
    python -m sim replay FILE [FILE ...] [--jobs 2]
    python -m sim smoke --seed N [--trace] [--faulty-network]

`run` prints the seed and every option first, then (with --trace) the trace
as it happens, then the verdict; a failing seed writes a reproduction file.
`sweep` runs each seed in its own process and prints a summary table with
the failing seeds. `replay` runs each reproduction file's seed again (several
files: each in its own process, forked as a sweep forks) and exits with the
worst of today's verdicts. Exit codes: 0 passed, 127 the simulation crashed,
128 liveness, 129 correctness (`sim.verdict`).

String hashing and object addresses must not vary between runs of one seed,
so the runner re-executes itself with PYTHONHASHSEED fixed and, on Linux,
address-space randomisation off.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sim.loop import hash_seed_fixed

EXIT_CRASH = 127
EXIT_CORRECTNESS = 129
PINNED_HASH_SEED = "0"
DEFAULT_FAILURES_DIR = Path("sim-failures")
ADDR_NO_RANDOMIZE = 0x0040000  # Linux personality flag
PERSONALITY_QUERY = 0xFFFFFFFF
# the profile names, kept here too: sim.options is heavy, imported after any re-exec
DEFAULT_PROFILE = "default"
PROFILES = (DEFAULT_PROFILE, "cluster", "txn", "dr")
PROFILE_HELP = (
    "which options seeds draw: default, cluster (2+ agents, clock steps, pauses, store "
    "failovers), txn (transactional producers, read_committed readers, crashes) or dr "
    "(the metadata store wiped and rebuilt from the bucket)"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="one simulated cluster run")
    run.add_argument("--seed", type=int, required=True)
    run.add_argument("--trace", action="store_true", help="print every trace line")
    run.add_argument("--failures-dir", type=Path, default=DEFAULT_FAILURES_DIR)
    run.add_argument("--profile", choices=PROFILES, default=DEFAULT_PROFILE, help=PROFILE_HELP)
    sweep = commands.add_parser("sweep", help="many seeds, each in its own process")
    sweep.add_argument("--seeds", type=_seed_range, required=True, help="A-B, both included")
    sweep.add_argument("--jobs", type=int, default=2)
    sweep.add_argument("--failures-dir", type=Path, default=DEFAULT_FAILURES_DIR)
    sweep.add_argument("--profile", choices=PROFILES, default=DEFAULT_PROFILE, help=PROFILE_HELP)
    again = commands.add_parser("replay", help="run reproduction files' seeds again")
    again.add_argument("files", type=Path, nargs="+")
    again.add_argument("--jobs", type=int, default=2, help="replays at once (several files)")
    smoke = commands.add_parser("smoke", help="one agent, one client: the smoke run")
    smoke.add_argument("--seed", type=int, required=True)
    smoke.add_argument("--trace", action="store_true", help="print every trace line")
    smoke.add_argument(
        "--faulty-network", action="store_true", help="delay, reset, clog and partition"
    )
    smoke.add_argument("--records", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)  # clients log their retries; the trace tells
    if args.command == "run":
        return _run(args.seed, args.trace, args.failures_dir, args.profile)
    if args.command == "sweep":
        return _sweep(args.seeds, args.jobs, args.failures_dir, args.profile)
    if args.command == "replay":
        return _replay(args.files, args.jobs)
    return _smoke(args.seed, args.trace, args.faulty_network, args.records)


def _seed_range(text: str) -> range:
    first, _, last = text.partition("-")
    return range(int(first), int(last or first) + 1)


def _run(seed: int, trace: bool, failures_dir: Path, profile: str) -> int:
    from sim.options import draw_options  # heavy: imported after any re-exec
    from sim.runner import run_seed
    from sim.sweep import write_reproduction

    options = draw_options(seed, profile)
    print(f"sim run {options.describe()}", flush=True)
    outcome = run_seed(seed, echo=print if trace else None, options=options)
    for note in outcome.notes:
        print(f"NOTE {note}")
    for violation in outcome.violations:
        print(f"VIOLATION {violation}")
    print(f"verdict {outcome.summary()}", flush=True)
    if outcome.exit_code != 0:
        print(f"reproduction {write_reproduction(outcome, failures_dir)}")
    return outcome.exit_code


def _sweep(seeds: range, jobs: int, failures_dir: Path, profile: str) -> int:
    from rich.console import Console
    from rich.table import Table

    from sim.sweep import SeedResult, sweep

    console = Console()
    started_s = time.monotonic()

    def progress(result: SeedResult) -> None:
        if result.new_failure:
            console.print(f"seed {result.seed} FAILED exit={result.exit_code}")

    results = sweep(list(seeds), jobs, failures_dir, on_result=progress, profile=profile)
    wall_s = time.monotonic() - started_s
    failed = [result for result in results if result.new_failure]
    known = [result for result in results if result.known]
    virtual_s = sum(result.virtual_ms for result in results) / 1000
    run_wall_s = sum(result.wall_s for result in results)
    title = f"sim sweep {seeds.start}-{seeds.stop - 1}"
    table = Table(title=title if profile == DEFAULT_PROFILE else f"{title} ({profile})")
    for column in ("seeds", "passed", "known", "crash 127", "liveness 128", "correctness 129"):
        table.add_column(column, justify="right")
    table.add_column("virtual s", justify="right")
    table.add_column("virtual s / run wall s", justify="right")
    table.add_column("wall s", justify="right")
    counts = [sum(1 for r in failed if r.exit_code == code) for code in (127, 128, 129)]
    rate = virtual_s / run_wall_s if run_wall_s else 0.0
    table.add_row(
        str(len(results)),
        str(len(results) - len(failed) - len(known)),
        str(len(known)),
        *map(str, counts),
        f"{virtual_s:.0f}",
        f"{rate:.1f}",
        f"{wall_s:.1f}",
    )
    console.print(table)
    for result in failed:
        first = result.violations[0] if result.violations else ""
        console.print(f"FAILED seed {result.seed} exit={result.exit_code} {first[:200]}")
        if result.reproduction:
            console.print(f"  reproduction {result.reproduction}")
    for result in known:
        console.print(f"known failure seed {result.seed}: {result.known}")
    print(f"failing seeds: {' '.join(str(r.seed) for r in failed) or 'none'}", flush=True)
    return max((result.exit_code for result in failed), default=0)


def _replay(paths: list[Path], jobs: int) -> int:
    """Each file's block as its replay ends: the recorded and replayed exits, whether the
    options, history and trace are the same, the violations and the verdict."""
    from sim.sweep import REPLAY_WALL_S_MAX, in_children, replay

    def run(path: Path) -> dict[str, Any]:
        done = replay(path)
        outcome = done.outcome
        lines = [
            f"sim replay {path}: recorded exit {done.recorded_exit_code}, "
            f"replayed exit {outcome.exit_code}",
            f"same options={done.same_options} same history={done.same_history} "
            f"same trace={done.same_trace}",
            *(f"VIOLATION {violation}" for violation in outcome.violations),
            f"verdict {outcome.summary()}",
        ]
        return {"exit_code": outcome.exit_code, "text": "\n".join(lines)}

    answers: Iterator[tuple[Path, dict[str, Any] | None, str]]
    if len(paths) == 1:  # in this process (a debugger's way in)
        answers = iter([(paths[0], run(paths[0]), "")])
    else:
        answers = in_children(paths, run, jobs, REPLAY_WALL_S_MAX)
    worst = 0
    for path, answer, problem in answers:
        if answer is None:
            answer = {
                "exit_code": EXIT_CRASH,
                "text": f"sim replay {path}: replayed exit {EXIT_CRASH}\nCRASH {problem}",
            }
        print(answer["text"], flush=True)
        worst = max(worst, answer["exit_code"])
    return worst


def _smoke(seed: int, trace: bool, faulty_network: bool, records: int | None) -> int:
    from sim.smoke import SmokeOptions, run_smoke

    count = SmokeOptions(0).records_per_ack_mode if records is None else records
    options = SmokeOptions.faulty(seed, count) if faulty_network else SmokeOptions(seed, count)
    print(f"sim run {options.describe()}", flush=True)
    try:
        result = run_smoke(options, echo=print if trace else None)
    except Exception:
        traceback.print_exc()
        print(f"CRASH seed={seed}", flush=True)
        return EXIT_CRASH
    print(
        f"acked={result.acked} unacked={result.unacked} consumed={result.consumed} "
        f"resets={result.resets} virtual_ms={result.virtual_ms} "
        f"trace_lines={result.trace.count} trace_digest={result.trace.digest()}"
    )
    for problem in result.problems:
        print(f"PROBLEM {problem}")
    return EXIT_CORRECTNESS if result.problems else 0


def _addresses_fixed() -> bool:
    """Turn off address-space randomisation for the next exec, where Linux allows it:
    sets of objects hash by address, so their order follows the addresses. Returns
    whether this process already runs without it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        current = libc.personality(PERSONALITY_QUERY)
        if current < 0 or current & ADDR_NO_RANDOMIZE:
            return True  # unsupported, or already off
        libc.personality(current | ADDR_NO_RANDOMIZE)
        return False
    except (OSError, AttributeError):
        return True


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends the output quietly
    if not hash_seed_fixed() or not _addresses_fixed():
        os.environ.setdefault("PYTHONHASHSEED", PINNED_HASH_SEED)
        os.execv(sys.executable, [sys.executable, "-m", "sim", *sys.argv[1:]])
    sys.exit(main())
