"""Failures the simulator finds that are known and not fixed yet, each with its note in
tests/sim/known_failures/. A sweep counts them apart so that it stays useful meanwhile;
a single run still exits with its real verdict.
"""

from __future__ import annotations

from collections.abc import Callable

from sim.runner import RunOutcome

RESTART_FAULT = '"kind": "restart"'
DISK_LOSS_FAULT = '"kind": "disk_loss"'


def _generation_reuse(outcome: RunOutcome) -> bool:
    """The group coordinator keeps generations in memory: after its agent restarts, a group
    starts again at generation 1, so generation 1 has owners from before and after."""
    return (
        bool(outcome.violations)
        and all(v.startswith("[group_owners]") for v in outcome.violations)
        and RESTART_FAULT in outcome.history
    )


def _same_epoch_after_disk_loss(outcome: RunOutcome) -> bool:
    """An agent back with a wiped disk keeps its leader epoch, so records written after
    the loss sit at offsets acked before it, in the same epoch."""
    return (
        bool(outcome.violations)
        and all(v.startswith(("[acked_durable]", "[one_value]")) for v in outcome.violations)
        and DISK_LOSS_FAULT in outcome.history
    )


KNOWN_FAILURES: tuple[tuple[str, Callable[[RunOutcome], bool]], ...] = (
    ("group-generation-reuse", _generation_reuse),
    ("same-epoch-after-disk-loss", _same_epoch_after_disk_loss),
)


def known_failure(outcome: RunOutcome) -> str:
    """The name of the known failure `outcome` shows, or "" (passed, or something new)."""
    if outcome.exit_code == 0:
        return ""
    return next((name for name, matches in KNOWN_FAILURES if matches(outcome)), "")
