"""Where a cluster of agents sends Kafka clients: brokers, partition leaders, coordinators.

Agents sharing one bucket and one metadata store are listed, in node id order
from 0, in `Settings.cluster_agents` as "agent_id@host:port"; an empty list
is a cluster of this agent alone. Metadata answers every agent as a broker
and, for each partition, the node of the agent holding its unexpired lease
(no live lease: this agent, which takes the lease when the client comes).
A group's or transactional id's coordinator is the agent its key hashes to.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from streamhouse.ports.topics import PartitionRecord
from streamhouse.server.kafka_context import KafkaContext, Values


@dataclass(frozen=True)
class AgentAddress:
    agent_id: str
    node_id: int
    host: str
    port: int

    def broker(self) -> Values:
        return {"node_id": self.node_id, "host": self.host, "port": self.port, "rack": None}


def parse_cluster_agent(entry: str, node_id: int) -> AgentAddress:
    """One "agent_id@host:port" entry of `cluster_agents`; ValueError if malformed."""
    agent_id, at, address = entry.partition("@")
    host, colon, port = address.rpartition(":")
    if not (agent_id and at and host and colon and port.isdigit()):
        raise ValueError(f"cluster agent {entry!r} is not agent_id@host:port")
    return AgentAddress(agent_id, node_id, host, int(port))


def cluster_agents(ctx: KafkaContext) -> list[AgentAddress]:
    """Every agent of the cluster, this one included."""
    if not ctx.settings.cluster_agents:
        node = ctx.settings.node_id
        return [AgentAddress(ctx.log.agent_id, node, ctx.advertised_host, ctx.advertised_port)]
    return [parse_cluster_agent(e, n) for n, e in enumerate(ctx.settings.cluster_agents)]


def self_node(ctx: KafkaContext) -> int:
    return next(
        (a.node_id for a in cluster_agents(ctx) if a.agent_id == ctx.log.agent_id),
        ctx.settings.node_id,
    )


def leader_node(ctx: KafkaContext, record: PartitionRecord) -> int:
    """The node clients should send this partition's requests to."""
    if record.leader_agent is not None and record.lease_expires_ms > ctx.clock.now_ms():
        for agent in cluster_agents(ctx):
            if agent.agent_id == record.leader_agent:
                return agent.node_id
    return self_node(ctx)


def coordinator(ctx: KafkaContext, key: str) -> AgentAddress:
    """The agent coordinating a group or transactional id: a stable hash of its key."""
    agents = cluster_agents(ctx)
    return agents[zlib.crc32(key.encode()) % len(agents)]
