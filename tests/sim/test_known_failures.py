"""Known failures match their exact signature -- the seed and the digest of its violations --
and nothing broader; every one listed has its note."""

from __future__ import annotations

from pathlib import Path

from sim.known import KNOWN_FAILURES, known_failure, violations_signature
from sim.runner import RunOutcome

NOTES = Path(__file__).resolve().parent / "known_failures"
VIOLATIONS = [
    "[group_offsets] member-1 committed offset 12 for group sim-group sim/0 at 1605000us, "
    "below 34 set by member-1 at 700000us",
    "[acked_durable] acks=all record op 7 (key=null value=b'p-op-7') acked at sim/0@3 was lost",
]


def _outcome(seed: int, violations: list[str], exit_code: int = 129) -> RunOutcome:
    return RunOutcome(seed=seed, options="", exit_code=exit_code, violations=violations)


def test_a_seed_with_exactly_its_recorded_violations_is_known() -> None:
    known = {"a-note": {989: violations_signature(_outcome(989, VIOLATIONS))}}
    assert known_failure(_outcome(989, VIOLATIONS), known) == "a-note"
    assert known_failure(_outcome(989, VIOLATIONS[::-1]), known) == "a-note"  # order aside


def test_another_seed_or_other_violations_are_not() -> None:
    known = {"a-note": {989: violations_signature(_outcome(989, VIOLATIONS))}}
    assert known_failure(_outcome(990, VIOLATIONS), known) == ""
    assert known_failure(_outcome(989, [*VIOLATIONS, "[one_value] two values"]), known) == ""
    assert known_failure(_outcome(989, VIOLATIONS[:-1]), known) == ""
    assert known_failure(_outcome(989, VIOLATIONS, exit_code=0), known) == ""


def test_every_known_failure_has_its_note() -> None:
    notes = {path.stem for path in NOTES.glob("*.md")}
    assert set(KNOWN_FAILURES) <= notes
    for seeds in KNOWN_FAILURES.values():
        assert seeds and all(len(signature) == 16 for signature in seeds.values())
