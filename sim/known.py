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
KNOWN_FAILURES: Mapping[str, Mapping[int, str]] = {}


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
