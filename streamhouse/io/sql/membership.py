"""SQL adapter of the membership port: registered agents, node ids, heartbeats by store time.

A registration locks the node id counter first, so registrations never race each other
for a node id on PostgreSQL (SQLite's writers are serialised anyway); a heartbeat or a
deregistration touches the agent's own row only.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import Connection, and_, insert, or_, select, update

from streamhouse.io.sql.rows import record_from_row
from streamhouse.io.sql.schema import NODE_ID_COUNTER, agents, counters, partitions
from streamhouse.io.sql.store_clock import StoreClock
from streamhouse.io.sql.transactions import SqlAdapter
from streamhouse.ports.membership import NO_NODE_ID, AgentRecord, MembershipStore

DEREGISTERED_MS = 0  # the heartbeat expiry of an agent that left: not live, leases or not


class SqlMembershipStore(SqlAdapter, MembershipStore):
    """The membership port over SQL: one transaction per call."""

    async def register_agent(
        self, agent_id: str, host: str, port: int, started_ms: int, ttl_ms: int
    ) -> AgentRecord:
        record = AgentRecord(agent_id, NO_NODE_ID, host, port, started_ms)
        clock = self._sql.store_clock
        return await self._sql.write("register_agent", _register, clock, record, ttl_ms)

    async def heartbeat_agent(self, agent_id: str, ttl_ms: int) -> bool:
        clock = self._sql.store_clock
        return await self._sql.write("heartbeat_agent", _heartbeat, clock, agent_id, ttl_ms)

    async def list_live_agents(self) -> list[AgentRecord]:
        return await self._sql.read("list_live_agents", _live_agents, self._sql.store_clock)

    async def deregister_agent(self, agent_id: str) -> None:
        await self._sql.write("deregister_agent", _expire_now, agent_id)


def _register(conn: Connection, clock: StoreClock, wanted: AgentRecord, ttl_ms: int) -> AgentRecord:
    assert ttl_ms > 0, f"heartbeat ttl must be positive, got {ttl_ms} ms"
    counter = counters.c.name == NODE_ID_COUNTER
    next_node: int = conn.execute(
        select(counters.c.next_value).where(counter).with_for_update()
    ).scalar_one()
    values = {
        "host": wanted.host,
        "port": wanted.port,
        "started_ms": wanted.started_ms,
        "heartbeat_expires_ms": clock(conn) + ttl_ms,
    }
    this_agent = agents.c.agent_id == wanted.agent_id
    node_id = conn.execute(select(agents.c.node_id).where(this_agent)).scalar_one_or_none()
    if node_id is not None:
        conn.execute(update(agents).where(this_agent).values(values))
        return replace(wanted, node_id=node_id)
    conn.execute(insert(agents).values(agent_id=wanted.agent_id, node_id=next_node, **values))
    conn.execute(update(counters).where(counter).values(next_value=next_node + 1))
    return replace(wanted, node_id=next_node)


def _heartbeat(conn: Connection, clock: StoreClock, agent_id: str, ttl_ms: int) -> bool:
    assert ttl_ms > 0, f"heartbeat ttl must be positive, got {ttl_ms} ms"
    return _set_expiry(conn, agent_id, clock(conn) + ttl_ms)


def _expire_now(conn: Connection, agent_id: str) -> None:
    _set_expiry(conn, agent_id, DEREGISTERED_MS)


def _set_expiry(conn: Connection, agent_id: str, expires_ms: int) -> bool:
    """Whether the agent is registered (and so its heartbeat's expiry was set)."""
    changed = conn.execute(
        update(agents).where(agents.c.agent_id == agent_id).values(heartbeat_expires_ms=expires_ms)
    )
    return changed.rowcount == 1


def _live_agents(conn: Connection, clock: StoreClock) -> list[AgentRecord]:
    now_ms = clock(conn)
    holding = select(partitions.c.leader_agent).where(partitions.c.lease_expires_ms > now_ms)
    live = or_(
        agents.c.heartbeat_expires_ms > now_ms,
        and_(agents.c.heartbeat_expires_ms != DEREGISTERED_MS, agents.c.agent_id.in_(holding)),
    )
    query = select(agents).where(live).order_by(agents.c.node_id)
    return [record_from_row(AgentRecord, row) for row in conn.execute(query)]
