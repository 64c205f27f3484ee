"""The cluster directory: "agent_id@host:port" entries in node id order, this agent alone
when there are none, partition leaders by live lease, coordinators by key hash; and its
Kafka encoding as brokers."""

from __future__ import annotations

import pytest

from sim.clock import VirtualClock
from streamhouse.config import Settings
from streamhouse.engine.cluster import (
    AgentAddress,
    ClusterDescription,
    ClusterDirectory,
    parse_cluster_agent,
)
from streamhouse.ports.topics import PartitionRecord
from streamhouse.server.kafka_cluster import broker

TRIO = ("a@h0:9092", "b@h1:9092", "c@h2:9092")


def test_an_entry_names_the_agent_its_host_and_port() -> None:
    assert parse_cluster_agent("agent-2@agent-2:9092", 1) == AgentAddress(
        "agent-2", 1, "agent-2", 9092
    )
    assert broker(parse_cluster_agent("a@10.0.0.7:19092", 0)) == {
        "node_id": 0,
        "host": "10.0.0.7",
        "port": 19092,
        "rack": None,
    }


@pytest.mark.parametrize("entry", ["agent-1", "@host:1", "a@host", "a@:1", "a@host:port"])
def test_a_malformed_entry_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="agent_id@host:port"):
        parse_cluster_agent(entry, 0)


def test_a_malformed_directory_is_refused_when_the_agent_is_built() -> None:
    with pytest.raises(ValueError, match="agent_id@host:port"):
        ClusterDirectory(Settings(cluster_agents=("a@h:1", "b")), VirtualClock(), "a")


def test_without_a_directory_the_agent_is_alone_at_its_advertised_address() -> None:
    directory = ClusterDirectory(Settings(node_id=4, org="acme"), VirtualClock(), "solo")
    directory.advertise("10.0.0.9", 19092)
    alone = AgentAddress("solo", 4, "10.0.0.9", 19092)
    assert directory.describe() == ClusterDescription("streamhouse-acme", 4, (alone,))
    assert directory.coordinator("any-group") == alone


def _partition(leader: str | None, *, live: bool) -> PartitionRecord:
    return PartitionRecord("t", 0, leader, 3, 0, 0, 0, lease_live=live)


def test_requests_go_to_the_live_lease_holder_else_to_this_agent() -> None:
    directory = ClusterDirectory(Settings(cluster_agents=TRIO), VirtualClock(), "b")
    assert directory.describe().controller_id == 1
    assert directory.leader_node(_partition("c", live=True)) == 2
    assert directory.leader_node(_partition(None, live=False)) == 1
    assert directory.leader_node(_partition("gone", live=True)) == 1
    assert directory.leader_node(_partition("c", live=False)) == 1  # expired by store time


def test_every_agent_names_the_same_coordinator_for_a_key() -> None:
    directories = [
        ClusterDirectory(Settings(cluster_agents=TRIO), VirtualClock(), agent)
        for agent in ("a", "b", "c")
    ]
    for key in ("billing", "orders", "tx-1"):
        assert len({d.coordinator(key) for d in directories}) == 1
    spread = {directories[0].coordinator(f"group-{n}").agent_id for n in range(30)}
    assert spread == {"a", "b", "c"}
