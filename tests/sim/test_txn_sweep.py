"""The transactional profile (F8): seeds draw transactional producers, read_committed readers
and consume-transform-produce clients on 1 to 3 agents with a crash in every run, while the
default and cluster draws stay as they were; and the transactional sweep is clean: `make
test-all` sweeps TXN_SWEEP_SEEDS txn seeds (about a second and a half of wall time
each, two at a time: some 40 seconds; `make sweep` sweeps 1-120). `make test` has no txn
sweep of its own (it stays under 3 minutes): it replays the txn seeds that failed once, kept
in tests/sim/regressions (by test_cluster_sweep.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sim.options import (
    CLUSTER_PROFILE,
    CRASH,
    STORE_FAILOVER,
    TXN_PROFILE,
    draw_common_options,
    draw_options,
    options_from_json,
    options_to_json,
)
from tests.sim.test_cluster_sweep import SWEEP_TIMEOUT_S, _sweep

PROFILE_SEEDS = range(1, 30)
TXN_SWEEP_SEEDS = int(os.environ.get("SIM_TXN_SWEEP_SEEDS", "30"))  # was 40 until F11


def test_txn_profile_seeds_draw_transactional_clients_and_a_crash() -> None:
    agents, transformers, readers, failovers = set(), 0, 0, 0
    for seed in PROFILE_SEEDS:
        options = draw_options(seed, TXN_PROFILE)
        txn = options.txn
        assert txn is not None
        assert txn.producers >= 1 and txn.txns_per_producer >= 1
        kinds = {nemesis.kind for nemesis in options.nemeses}
        assert CRASH in kinds
        failovers += STORE_FAILOVER in kinds
        assert all(nemesis.agent <= options.cluster.agents for nemesis in options.nemeses)
        assert "profile=txn" in options.describe() and "txn=(" in options.describe()
        assert options_from_json(options_to_json(options)) == options
        agents.add(options.cluster.agents)
        transformers += txn.transformers
        readers += txn.readers
        default = draw_common_options(seed)  # the common draws stay, with no txn part
        assert default.txn is None and "txn=" not in default.describe()
        assert default.cluster.settings == options.cluster.settings
        assert default.workload == options.workload
        assert draw_options(seed, CLUSTER_PROFILE).txn is None
    assert agents == {1, 2, 3}
    assert transformers > 0 and readers > 0 and failovers > 0


@pytest.mark.slow
@pytest.mark.timeout(SWEEP_TIMEOUT_S)
def test_a_txn_sweep_finds_no_new_failure(tmp_path: Path) -> None:
    _sweep(1, TXN_SWEEP_SEEDS, tmp_path, TXN_PROFILE)
