"""`python -m sim …` in a process of its own (a fresh hash seed), as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 120


def run_sim(*args: str, timeout_s: int = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim", *args],
        cwd=REPO,
        env={key: value for key, value in os.environ.items() if key != "PYTHONHASHSEED"},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
