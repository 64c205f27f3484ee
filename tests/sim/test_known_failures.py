"""Known failures match their exact signature and nothing broader."""

from __future__ import annotations

from sim.known import COMMIT_BELOW_A_TRUNCATED_TAIL, known_failure, violations_signature
from sim.runner import RunOutcome

SEED_989_VIOLATIONS = [
    f"[group_offsets] member-1 {verb} offset {offset} for group sim-group sim/0 at {at}us, "
    "below 34 set by member-1 at 700000us"
    for offset, at in ((12, 1605000), (22, 1605000), (28, 1714000))
    for verb in ("committed", "read back committed")
]


def _outcome(seed: int, violations: list[str]) -> RunOutcome:
    return RunOutcome(seed=seed, options="", exit_code=129, violations=violations)


def test_the_recorded_seed_and_violations_are_known() -> None:
    outcome = _outcome(989, SEED_989_VIOLATIONS)
    assert violations_signature(outcome) == COMMIT_BELOW_A_TRUNCATED_TAIL[989]
    assert known_failure(outcome) == "commit-below-a-truncated-tail"


def test_another_seed_or_one_more_violation_is_not() -> None:
    assert known_failure(_outcome(990, SEED_989_VIOLATIONS)) == ""
    extra = [*SEED_989_VIOLATIONS, "[acked_durable] op 7 lost"]
    assert known_failure(_outcome(989, extra)) == ""
    assert known_failure(_outcome(989, SEED_989_VIOLATIONS[:-1])) == ""
