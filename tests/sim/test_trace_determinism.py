"""Seeds whose traces once differed between two runs give the same trace digest in separate
processes: a killed or finished client process left library tasks running (a metadata refresh
choosing a broker from a set, reconnects while the cluster closed), which now stop with it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 120
ONCE_DIFFERED = [("1048", "default"), ("61", "dr")]  # each once had two trace digests


def _trace_digest(seed: str, profile: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "sim", "run", "--seed", seed, "--profile", profile],
        cwd=REPO,
        env={key: value for key, value in os.environ.items() if key != "PYTHONHASHSEED"},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    found = re.search(r"verdict seed=\d+ exit=0 .* trace_digest=([0-9a-f]+)", done.stdout)
    assert found, done.stdout[-2000:] + done.stderr[-2000:]
    return found.group(1)


@pytest.mark.parametrize(("seed", "profile"), ONCE_DIFFERED)
def test_a_seed_gives_one_trace_digest_in_separate_processes(seed: str, profile: str) -> None:
    assert _trace_digest(seed, profile) == _trace_digest(seed, profile)
