"""The cluster directory: the agents of a cluster and where clients should go.

The agents are those the membership service (engine/membership.py) last read as live
from the metadata store, each with the node id it registered under, plus this agent
itself, which is live as long as it runs (even when its heartbeats cannot reach the
store). A partition's requests go to the agent holding its lease while the lease is
live by the store's clock (no live lease, or a holder not listed: this agent, which
takes the lease when the client comes); a group's or transactional id's coordinator
is the listed agent its key hashes to (until coordinators are placed by lease). The
cluster id is the org's, and each agent names itself controller (there is no election).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from streamhouse.ports.membership import NO_NODE_ID
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


class ClusterDirectory:
    """The agents of this cluster, this one included, and request placement among them."""

    def __init__(self, org: str, agent_id: str) -> None:
        self.agent_id = agent_id
        self.cluster_id = CLUSTER_ID_PREFIX + org
        self._advertised = AgentAddress(agent_id, NO_NODE_ID, "", 0)
        self._others: tuple[AgentAddress, ...] = ()

    def advertise(self, host: str, port: int, node_id: int = NO_NODE_ID) -> None:
        """Where this agent's Kafka listener is reached (known once it listens), and its node
        id (known once it registered)."""
        self._advertised = AgentAddress(self.agent_id, node_id, host, port)

    @property
    def advertised(self) -> AgentAddress:
        return self._advertised

    def update(self, live: Iterable[AgentAddress]) -> None:
        """The live agents as the metadata store listed them last."""
        self._others = tuple(agent for agent in live if agent.agent_id != self.agent_id)

    def agents(self) -> tuple[AgentAddress, ...]:
        """Every live agent of the cluster, this one included, in node id order."""
        return tuple(sorted((self._advertised, *self._others), key=lambda a: a.node_id))

    def self_node(self) -> int:
        return self._advertised.node_id

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
        """The agent coordinating a group or transactional id: the live agent whose hash with
        the key is highest (rendezvous hashing: an agent joining or leaving moves only the
        keys it wins or won, not a share of every agent's)."""
        return max(self.agents(), key=lambda agent: _weight(key, agent.agent_id))


def _weight(key: str, agent_id: str) -> int:
    digest = hashlib.blake2b(f"{key}\0{agent_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
