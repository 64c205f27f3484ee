"""The cluster directory: the agents of a cluster and where clients should go.

The agents are those the membership service (engine/membership.py) last read as live
from the metadata store, each with the node id it registered under, plus this agent
itself, which is live as long as it runs (even when its heartbeats cannot reach the
store). Each partition (and coordinator slot) has a target agent, placed by the
ownership service (engine/ownership.py). A partition's requests go to the agent holding
its lease while the lease is live by the store's clock; without a live lease (or with a
holder not listed), to its target, which takes the lease when the client comes; with no
target known either, to this agent. A group's or transactional id's coordinator is
the holder of its coordinator slot's lease, found the same way. The cluster id is one for
the whole cluster, whichever orgs it serves (the one clients saw before there were orgs), and
each agent names itself controller (there is no election).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from streamhouse.names import TopicPartition
from streamhouse.ports.membership import NO_NODE_ID
from streamhouse.ports.topics import PartitionRecord

CLUSTER_ID = "streamhouse-default"


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

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.cluster_id = CLUSTER_ID
        self._advertised = AgentAddress(agent_id, NO_NODE_ID, "", 0)
        self._others: tuple[AgentAddress, ...] = ()
        self._targets: Mapping[TopicPartition, str] = {}
        self._holders: Mapping[TopicPartition, str] = {}

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

    def place(
        self, targets: Mapping[TopicPartition, str], holders: Mapping[TopicPartition, str]
    ) -> None:
        """Each partition's target agent, as the ownership service placed them last, and the
        live lease holders it read."""
        self._targets = targets
        self._holders = holders

    def target(self, tp: TopicPartition) -> str | None:
        """The agent the partition is placed on (None: not placed yet, e.g. a new topic)."""
        return self._targets.get(tp)

    def may_lead(self, tp: TopicPartition) -> bool:
        """Whether this agent may take the partition's lease: it is placed here, or not yet
        placed anywhere (the lease store then decides)."""
        return self._targets.get(tp, self.agent_id) == self.agent_id

    def leader_node(self, record: PartitionRecord) -> int:
        """The node clients should send this partition's requests to."""
        return self.leader(record).node_id

    def leader(self, record: PartitionRecord) -> AgentAddress:
        """The agent clients should send this partition's requests to: the live lease holder
        (judged by the metadata store's clock, not this agent's), else its target, else this
        agent."""
        listed = {agent.agent_id: agent for agent in self.agents()}
        if record.lease_live and record.leader_agent in listed:
            return listed[record.leader_agent]
        return listed.get(self._targets.get(record.tp, self.agent_id), self._advertised)

    def coordinator(self, slot: TopicPartition) -> AgentAddress:
        """The agent coordinating the keys of a coordinator slot (engine/coordinators.py): its
        live lease holder as the ownership service last read it, else its target, else this
        agent. Only the holder answers as coordinator: a stale answer is refused there with
        NOT_COORDINATOR, and the client asks again."""
        listed = {agent.agent_id: agent for agent in self.agents()}
        holder = self._holders.get(slot)
        if holder in listed:
            return listed[holder]
        return listed.get(self._targets.get(slot, self.agent_id), self._advertised)
