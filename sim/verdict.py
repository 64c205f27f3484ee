"""The verdict of a simulation run: its process exit code and a human report of violations.

Exit codes (issue F4): 0 every promise held; 127 the simulation crashed (an
exception escaped, the simulated world got stuck, or the history it wrote
is malformed, so the run cannot be judged); 128 liveness (the cluster did
not recover within its bound after healing); 129 correctness (a safety
checker found a broken promise). Correctness outranks liveness: a run that
lost data and also stalled reports the data loss.

`python -m sim.verdict HISTORY.jsonl [--liveness-bound-ms N]` judges a saved
history (a reproduction file) and exits with its code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sim.checkers import LIVENESS, Violation, check_all
from sim.history import Event, History, event_to_json

EXIT_OK = 0
EXIT_CRASH = 127
EXIT_LIVENESS = 128
EXIT_CORRECTNESS = 129

REPORT_VIOLATIONS_MAX = 50


def exit_code(violations: Sequence[Violation], *, crashed: bool = False) -> int:
    """The process exit code for a run's violations (`crashed`: the run itself blew up)."""
    if crashed or any(violation.checker == "history" for violation in violations):
        return EXIT_CRASH
    if any(violation.checker != LIVENESS for violation in violations):
        return EXIT_CORRECTNESS
    if violations:
        return EXIT_LIVENESS
    return EXIT_OK


def report(violations: Sequence[Violation], history: History) -> str:
    """Violations as text, each with the history positions and JSON of the events involved."""
    if not violations:
        return "all checkers passed\n"
    positions = {id(event): position for position, event in enumerate(history)}
    lines = [f"{len(violations)} violation(s)"]
    for violation in violations[:REPORT_VIOLATIONS_MAX]:
        lines.append(f"[{violation.checker}] {violation.message}")
        lines += [f"    #{_position(positions, e)} {event_to_json(e)}" for e in violation.events]
    if len(violations) > REPORT_VIOLATIONS_MAX:
        lines.append(f"... and {len(violations) - REPORT_VIOLATIONS_MAX} more")
    return "".join(line + "\n" for line in lines)


def _position(positions: dict[int, int], event: Event) -> str:
    position = positions.get(id(event))
    return "?" if position is None else str(position)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.verdict", description=__doc__)
    parser.add_argument("history", type=Path, help="a history in JSON lines")
    parser.add_argument("--liveness-bound-ms", type=int, default=None)
    args = parser.parse_args(argv)
    history = History.load(args.history)
    violations = check_all(history, liveness_bound_ms=args.liveness_bound_ms)
    sys.stdout.write(report(violations, history))
    return exit_code(violations)


if __name__ == "__main__":
    sys.exit(main())
