"""Seeds of the merger and compaction really act: across a few fixed seeds (default and
cluster profiles) merges and compaction runs swap, compaction rounds swap several runs, the
reconciler deletes released objects while clients read, and an agent crashes at every step
of the rewrite-and-swap (the crash-at-step nemesis); every checker passes."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sim.options import CLUSTER_PROFILE, CRASH_AT, DEFAULT_PROFILE, draw_options
from streamhouse.ports.buggify import CRASH_POINTS
from tests.sim.processes import run_sim

# (seed, profile): drawn to crash, between them, at every step of the swap
SEEDS = (
    (4, DEFAULT_PROFILE),  # merges, rounds of several runs, crashes between runs
    (9, DEFAULT_PROFILE),  # compaction only: a crash after the listeners
    (15, DEFAULT_PROFILE),  # crashes after the upload and after the swap
    (31, DEFAULT_PROFILE),  # a crash before the upload
    (4, CLUSTER_PROFILE),
    (9, CLUSTER_PROFILE),
)
JOBS = 2
CRASHED_AT = re.compile(r"fault crash agent-\d detail=(\S+)")


def _trace(seed: int, profile: str, failures_dir: Path) -> str:
    done = run_sim(
        "run",
        "--seed",
        str(seed),
        "--profile",
        profile,
        "--trace",
        "--failures-dir",
        str(failures_dir),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(rf"verdict seed={seed} exit=0 ", done.stdout), done.stdout[-3000:]
    return done.stdout


def test_the_seeds_draw_crashes_at_steps_of_the_swap() -> None:
    for seed, profile in SEEDS:
        drawn = [n for n in draw_options(seed, profile).nemeses if n.kind == CRASH_AT]
        assert drawn, (seed, profile)
        assert all(0 <= n.amount < len(CRASH_POINTS) for n in drawn)


@pytest.mark.slow
def test_merges_and_compaction_swap_and_crash_at_every_step(tmp_path: Path) -> None:
    with ThreadPoolExecutor(JOBS) as pool:
        traces = list(pool.map(lambda run: _trace(*run, tmp_path), SEEDS))
    crashed = {point for trace in traces for point in CRASHED_AT.findall(trace)}
    assert crashed >= set(CRASH_POINTS), crashed
    for profile in (DEFAULT_PROFILE, CLUSTER_PROFILE):
        of_profile = [t for t, (_, p) in zip(traces, SEEDS, strict=True) if p == profile]
        assert any("rewrite.swapped agent-" in trace for trace in of_profile), profile
        assert any("compaction.next_run agent-" in trace for trace in of_profile), profile
    assert any(re.search(r"object\.deleted \S+ 0\n", trace) for trace in traces)
