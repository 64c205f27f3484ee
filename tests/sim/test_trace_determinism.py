"""Seeds whose traces once differed between two runs give the same trace digest in separate
processes: a killed or finished client process left library tasks running (a metadata refresh
choosing a broker from a set, reconnects while the cluster closed), which now stop with it."""

from __future__ import annotations

import re

import pytest

from tests.sim.processes import run_sim

ONCE_DIFFERED = [("1048", "default"), ("61", "dr")]  # each once had two trace digests


def _trace_digest(seed: str, profile: str) -> str:
    done = run_sim("run", "--seed", seed, "--profile", profile)
    found = re.search(r"verdict seed=\d+ exit=0 .* trace_digest=([0-9a-f]+)", done.stdout)
    assert found, done.stdout[-2000:] + done.stderr[-2000:]
    return found.group(1)


@pytest.mark.slow  # four sim processes: part of make test-all, not of the inner loop
@pytest.mark.parametrize(("seed", "profile"), ONCE_DIFFERED)
def test_a_seed_gives_one_trace_digest_in_separate_processes(seed: str, profile: str) -> None:
    assert _trace_digest(seed, profile) == _trace_digest(seed, profile)
