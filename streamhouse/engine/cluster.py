"""The cluster directory: the agents of a cluster and where clients should go.

Agents sharing one bucket and one metadata store are listed, in node id order
from 0, in `Settings.cluster_agents` as "agent_id@host:port"; an empty list is
a cluster of this agent alone, at the address its Kafka listener advertises.
A partition's requests go to the agent holding its unexpired lease (no live
lease: this agent, which takes the lease when the client comes); a group's or
transactional id's coordinator is the agent its key hashes to. The cluster id
is the org's, and each agent names itself controller (there is no election).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from streamhouse.config import Settings
from streamhouse.ports.clock import Clock
from streamhouse.ports.topics import PartitionRecord

CLUSTER_ID_PREFIX = "streamhouse-"


@dataclass(frozen=True)
class AgentAddress:
    """One agent of the cluster as clients reach it."""

    agent_id: str
    node_id: int
    host: str
    port: int


@dataclass(frozen=True)
class ClusterDescription:
    """What DescribeCluster and Metadata answer about the cluster itself."""

    cluster_id: str
    controller_id: int
    agents: tuple[AgentAddress, ...]


def parse_cluster_agent(entry: str, node_id: int) -> AgentAddress:
    """One "agent_id@host:port" entry of `cluster_agents`; ValueError if malformed."""
    agent_id, at, address = entry.partition("@")
    host, colon, port = address.rpartition(":")
    if not (agent_id and at and host and colon and port.isdigit()):
        raise ValueError(f"cluster agent {entry!r} is not agent_id@host:port")
    return AgentAddress(agent_id, node_id, host, int(port))


class ClusterDirectory:
    """The agents of this cluster, this one included, and request placement among them."""

    def __init__(self, settings: Settings, clock: Clock, agent_id: str) -> None:
        self._clock = clock
        self.agent_id = agent_id
        self.cluster_id = CLUSTER_ID_PREFIX + settings.org
        self._node_id = settings.node_id
        self._configured = tuple(
            parse_cluster_agent(entry, node) for node, entry in enumerate(settings.cluster_agents)
        )
        self._advertised = AgentAddress(agent_id, settings.node_id, "", 0)

    def advertise(self, host: str, port: int) -> None:
        """Where this agent's Kafka listener is reached (known once it listens)."""
        self._advertised = AgentAddress(self.agent_id, self._node_id, host, port)

    @property
    def advertised(self) -> AgentAddress:
        return self._advertised

    def agents(self) -> tuple[AgentAddress, ...]:
        """Every agent of the cluster, this one included, in node id order."""
        return self._configured or (self._advertised,)

    def self_node(self) -> int:
        return next(
            (a.node_id for a in self.agents() if a.agent_id == self.agent_id), self._node_id
        )

    def describe(self) -> ClusterDescription:
        return ClusterDescription(self.cluster_id, self.self_node(), self.agents())

    def leader_node(self, record: PartitionRecord) -> int:
        """The node clients should send this partition's requests to."""
        if record.lease_live:  # judged by the metadata store's clock, not this agent's
            for agent in self.agents():
                if agent.agent_id == record.leader_agent:
                    return agent.node_id
        return self.self_node()

    def coordinator(self, key: str) -> AgentAddress:
        """The agent coordinating a group or transactional id: a stable hash of its key."""
        agents = self.agents()
        return agents[zlib.crc32(key.encode()) % len(agents)]
