"""Failures the simulator finds that are known and not fixed yet, each with its note in
tests/sim/known_failures/. A sweep counts them apart so that it stays useful meanwhile;
a single run still exits with its real verdict.
"""

from __future__ import annotations

from collections.abc import Callable

from sim.history import ACKS_ALL, FetchObserved, History, ProduceAcked, ProduceAttempt
from sim.runner import RunOutcome

LEASE_FENCED_FAULT = '"kind": "lease_fenced"'
FINAL_SCAN = "final-scan"


def _zombie_acks_without_epochs(outcome: RunOutcome) -> bool:
    """A deposed leader (its lease moved, e.g. another agent's clock stepped) acks acks=1
    records in its old epoch at offsets the new leader fills; aiokafka does not tell the
    epochs, so the checkers see two values at one offset, and a group member whose position
    was past the truncation commits lower offsets. Only when every acks=all record is
    really in the final scan at its offset (nothing durable was lost)."""
    if not outcome.violations or LEASE_FENCED_FAULT not in outcome.history:
        return False
    zombie_checkers = ("[acked_durable]", "[one_value]", "[group_offsets]")
    if not all(v.startswith(zombie_checkers) for v in outcome.violations):
        return False
    history = History.from_jsonl(outcome.history)
    durable = {a.op: a for a in history.of_type(ProduceAttempt) if a.acks == ACKS_ALL}
    final: dict[tuple[str, int, int], bytes | None] = {}
    for fetch in history.of_type(FetchObserved):
        if fetch.client == FINAL_SCAN:
            for record in fetch.records:
                final[(fetch.topic, fetch.partition, record.offset)] = record.value
    for ack in history.of_type(ProduceAcked):
        attempt = durable.get(ack.op)
        if attempt is not None:
            where = (attempt.topic, attempt.partition, ack.offset)
            if final.get(where) != attempt.value:
                return False
    return True


KNOWN_FAILURES: tuple[tuple[str, Callable[[RunOutcome], bool]], ...] = (
    ("zombie-acks-without-epochs", _zombie_acks_without_epochs),
)


def known_failure(outcome: RunOutcome) -> str:
    """The name of the known failure `outcome` shows, or "" (passed, or something new)."""
    if outcome.exit_code == 0:
        return ""
    return next((name for name, matches in KNOWN_FAILURES if matches(outcome)), "")
