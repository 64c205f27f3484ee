"""Failures the simulator finds that are known and not fixed yet, each matched by its exact
signature -- the seed and a digest of its violations, nothing broader -- and each with its
note in tests/sim/known_failures/. A sweep counts them apart so that it stays useful
meanwhile; a single run still exits with its real verdict. A seed whose violations change
in any way is a new failure again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from sim.runner import RunOutcome

# name (its note: tests/sim/known_failures/<name>.md) -> {seed: violations_signature}
KNOWN_FAILURES: Mapping[str, Mapping[int, str]] = {
    # dr seeds: the reconciler judges an orphan's age by its agent's clock, stepped ahead
    "reconciler-clock-ahead": {
        16: "6959de0d1692243b",
        214: "f60b3de1be518240",
        228: "2079f58e506578fa",
        240: "f3d4612650f0a657",
        272: "7066a4071e044415",
        286: "8bf46cbd2b0da61e",
    },
    # dr seed 225: after a rebuild under metadata faults, a partition's lease stays live with
    # an agent that does not lead it, and nobody else may take it
    "lease-held-but-not-led-after-a-rebuild": {225: "c632c74d54e09866"},
}


def violations_signature(outcome: RunOutcome) -> str:
    """The exact signature of a run's violations: a digest of their sorted text."""
    text = "\n".join(sorted(outcome.violations))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def known_failure(
    outcome: RunOutcome, known: Mapping[str, Mapping[int, str]] = KNOWN_FAILURES
) -> str:
    """The name of the known failure `outcome` is exactly, or "" (passed, or something new)."""
    if outcome.exit_code == 0:
        return ""
    signature = violations_signature(outcome)
    return next((name for name, seeds in known.items() if seeds.get(outcome.seed) == signature), "")
