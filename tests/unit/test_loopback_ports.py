"""Test servers' loopback ports: each xdist worker picks from a slice no other worker uses."""

from __future__ import annotations

import pytest

from streamhouse.testing import network
from streamhouse.testing.network import PICKED_PORTS_MIN, worker_port_slice

EPHEMERAL_LOW = 32768


def test_outside_xdist_the_whole_range_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert worker_port_slice(EPHEMERAL_LOW) == (PICKED_PORTS_MIN, EPHEMERAL_LOW)


@pytest.mark.parametrize("count", [2, 3, 8])
def test_workers_slices_are_disjoint_and_below_the_ephemeral_range(
    monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(count))
    slices = []
    for index in range(count):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
        slices.append(worker_port_slice(EPHEMERAL_LOW))
    ports = [set(range(low, high)) for low, high in slices]
    assert all(PICKED_PORTS_MIN <= low < high <= EPHEMERAL_LOW for low, high in slices)
    assert sum(len(share) for share in ports) == len(set().union(*ports))


def test_a_picked_port_is_in_this_workers_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    low, high = worker_port_slice(network._ephemeral_range()[0])
    for _ in range(20):
        assert low <= network.free_loopback_port() < high
