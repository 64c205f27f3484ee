"""Shared pytest setup: fixture plugins live in tests/fixtures/, one file per world piece; the
longest files are collected first."""

import pytest

from tests.chaos.stores import describe_stores

pytest_plugins: list[str] = [
    "tests.fixtures.moto_server",
    "tests.fixtures.postgres",
    "tests.fixtures.views_agent",
]

# The suites run on two xdist workers with `--dist loadfile`, which hands files out in the
# order they were collected: the longest started first end beside the others instead of
# alone at the end (phase 17 alone takes some 100 s and was collected among the last)
LONGEST_FIRST = (
    "tests/e2e/test_phase17_cluster_chaos.py",
    "tests/chaos/test_metadata_lost.py",
    "tests/chaos/test_disk_full.py",
    "tests/load/test_load_short.py",
    "tests/e2e/test_phase14_view_moves.py",
    "tests/dr/test_phase3_rebuild.py",
    "tests/sim/test_cluster_sweep.py",
    "tests/unit/test_log_store_model.py",
    "tests/unit/test_metadata_model.py",
    "tests/sim/test_txn_sweep.py",
    "tests/sim/test_dr_sweep.py",
)


def pytest_report_header() -> str:
    """Which stores the chaos suite runs on: containers where Docker runs, else local ones."""
    return f"chaos stores: {describe_stores()}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In runs with the slow tests (make test-all), the files of LONGEST_FIRST first, in that
    order; every other file after them, in collection order (the sort is stable, so no
    file's tests change order). `make test` keeps collection order: there the long files'
    fast tests are short, and a sweep started beside the model tests only slowed both."""
    if "not slow" in str(config.getoption("markexpr", "")):
        return
    rank = {path: index for index, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.partition("::")[0], len(rank)))
