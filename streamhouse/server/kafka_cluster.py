"""The Kafka encoding of the cluster directory (`engine.cluster`): an agent as a broker."""

from __future__ import annotations

from streamhouse.engine.cluster import AgentAddress
from streamhouse.server.kafka_context import Values

NO_RACK = None


def broker(agent: AgentAddress, id_field: str = "node_id") -> Values:
    """The agent as Metadata lists a broker (DescribeCluster names the id `broker_id`)."""
    return {id_field: agent.node_id, "host": agent.host, "port": agent.port, "rack": NO_RACK}
