"""Chaos fixtures: the session's shared stores (containers or local binaries, named in the
test header) and a fresh cluster world per test, stopped afterwards whatever the test did."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sim.history import History
from streamhouse.testing.fault_proxy import FaultProxy, running_fault_proxy
from tests.chaos.stores import ChaosStores, running_stores
from tests.chaos.world import ChaosWorld

MakeWorld = Callable[..., ChaosWorld]
# a chaos test's bound: its phases' own bounds (safety grace, liveness) and agent starts fit
CHAOS_TEST_TIMEOUT_S = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in str(item.path) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(CHAOS_TEST_TIMEOUT_S))


@pytest.fixture(scope="session")
def chaos_stores(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[ChaosStores]:
    """The session's stores; which kind ran is written to the terminal (also under -q)."""
    with running_stores(tmp_path_factory.mktemp("chaos-stores")) as stores:
        _tell(pytestconfig, f"chaos stores: {stores.describe()}")
        yield stores


def _tell(config: pytest.Config, line: str) -> None:
    """Write a line to the terminal, past output capture."""
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if terminal is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        terminal.write_line("")
        terminal.write_line(line)


@pytest.fixture
def fault_proxy(tmp_path: Path) -> Iterator[FaultProxy]:
    """The toxiproxy API (ours, or a real one named by TOXIPROXY_URL) for one test."""
    with running_fault_proxy(tmp_path) as proxy:
        yield proxy


@pytest.fixture
def make_world(tmp_path: Path, chaos_stores: ChaosStores) -> Iterator[MakeWorld]:
    """make_world(agents=N, shared=True, extra_args=()): a world of N reserved agents (not
    started) on a fresh database and bucket, or (shared=False) one agent on embedded SQLite."""
    made: list[ChaosWorld] = []

    def make(agents: int = 2, shared: bool = True, extra_args: tuple[str, ...] = ()) -> ChaosWorld:
        world = ChaosWorld(None, tmp_path, History(), extra_args=extra_args)
        if shared:
            world.stores = chaos_stores
            world.metadata_url = chaos_stores.new_database()
            world.object_store_url = f"s3://chaos-{uuid.uuid4().hex[:12]}/cluster"
        for _ in range(agents):
            world.add_agent()
        made.append(world)
        return world

    yield make
    for world in made:
        world.stop_all()
