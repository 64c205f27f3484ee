"""Membership port: the agents of a cluster, as each registers and heartbeats in the store.

Agents sharing a metadata store and a bucket form one cluster with no other
configuration (DESIGN §3). Each registers itself (agent id, advertised address,
start time) and gets a node id, allocated once per agent id and kept across its
restarts; it heartbeats with a TTL judged by the store's own clock; the live agents
are those whose heartbeat has not expired by the store's time, and those holding a
lease that has not (a renewal is as good a sign of life as a heartbeat, and a store
outage longer than the heartbeat TTL expires every heartbeat at once, while leases
are renewed again as soon as it ends: without this, agents that come back would see
each other as gone and name themselves leaders of partitions the others hold); a
clean shutdown deregisters (the node id stays the agent's), which no lease outlives.
Used by the membership service (engine/membership.py), which feeds the cluster directory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

NO_NODE_ID = -1  # an agent not registered yet


@dataclass(frozen=True)
class AgentRecord:
    """A registered agent as clients reach it."""

    agent_id: str
    node_id: int  # Kafka's broker id for this agent: allocated once, never reused
    host: str
    port: int
    started_ms: int  # the agent's own wall clock when it started: shown, never compared


class MembershipStore(ABC):
    """Registered agents and their heartbeats in the metadata store."""

    @abstractmethod
    async def register_agent(
        self, agent_id: str, host: str, port: int, started_ms: int, ttl_ms: int
    ) -> AgentRecord:
        """Register (or register again) the agent at this address, live for `ttl_ms` of the
        store's time. Its node id is the one it got the first time, else the next unused."""

    @abstractmethod
    async def heartbeat_agent(self, agent_id: str, ttl_ms: int) -> bool:
        """The agent is live for `ttl_ms` more of the store's time; False when it is not
        registered (it must register again)."""

    @abstractmethod
    async def list_live_agents(self) -> list[AgentRecord]:
        """Every agent whose heartbeat, or one of whose partition leases, has not expired by
        the store's time, except those deregistered since; by node id."""

    @abstractmethod
    async def deregister_agent(self, agent_id: str) -> None:
        """The agent leaves now (its node id stays reserved for its return)."""
