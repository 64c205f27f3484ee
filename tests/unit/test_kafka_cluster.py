"""The cluster directory entries: "agent_id@host:port", node ids in list order."""

from __future__ import annotations

import pytest

from streamhouse.server.kafka_cluster import AgentAddress, parse_cluster_agent


def test_an_entry_names_the_agent_its_host_and_port() -> None:
    assert parse_cluster_agent("agent-2@agent-2:9092", 1) == AgentAddress(
        "agent-2", 1, "agent-2", 9092
    )
    assert parse_cluster_agent("a@10.0.0.7:19092", 0).broker() == {
        "node_id": 0,
        "host": "10.0.0.7",
        "port": 19092,
        "rack": None,
    }


@pytest.mark.parametrize("entry", ["agent-1", "@host:1", "a@host", "a@:1", "a@host:port"])
def test_a_malformed_entry_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="agent_id@host:port"):
        parse_cluster_agent(entry, 0)
