"""The membership service: this agent in the cluster's list, and that list in the directory.

Once the Kafka listener knows its port, `join` registers the agent (its id, the
address clients reach it at, its start time) in the metadata store and takes the
node id the store gives it; `start` then heartbeats every
`agent_heartbeat_interval_ms` on the Clock port, each beat refreshing the cluster
directory with the agents live by the store's clock, so an agent that stops
beating leaves every directory within `agent_session_timeout_ms` plus one
interval. A store outage is retried at the next beat: meanwhile the agent keeps
serving what its leases allow and the directory keeps the last list it read. A
store that forgot the agent is told again (register anew). `leave` deregisters on
a clean shutdown. Only our own bugs end the heartbeat (the failure signal watches it).
"""

from __future__ import annotations

import asyncio
import logging

from streamhouse.config import Settings
from streamhouse.engine.cluster import AgentAddress, ClusterDirectory
from streamhouse.engine.failure import AgentFailure
from streamhouse.errors import StorageError
from streamhouse.ports.clock import Clock
from streamhouse.ports.membership import MembershipStore

log = logging.getLogger("streamhouse.membership")


class Membership:
    """Registers this agent, heartbeats, and keeps the directory's live agents current."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        store: MembershipStore,
        directory: ClusterDirectory,
    ) -> None:
        self._interval_ms = settings.agent_heartbeat_interval_ms
        self._ttl_ms = settings.agent_session_timeout_ms
        self._clock = clock
        self._store = store
        self._directory = directory
        self._started_ms = clock.now_ms()
        self._beating: asyncio.Task[None] | None = None
        self._leaving = False

    async def join(self) -> None:
        """Register at the directory's advertised address and read who else is live.
        Raises StorageError when the store cannot be reached (the agent cannot start)."""
        await self._register()
        await self.refresh()

    def start(self, failure: AgentFailure) -> None:
        """Heartbeat from now on, until `leave`."""
        self._beating = asyncio.get_running_loop().create_task(self._beat(), name="membership")
        failure.watch(self._beating, stopping=lambda: self._leaving)

    async def leave(self) -> None:
        """Stop heartbeating and deregister (if the store is out, the session timeout ends
        the agent's membership instead)."""
        self._leaving = True
        if self._beating is not None:
            self._beating.cancel()
            await asyncio.gather(self._beating, return_exceptions=True)
        try:
            await self._store.deregister_agent(self._directory.agent_id)
        except StorageError as error:
            log.warning("could not deregister (the session timeout will): %s", error)

    async def beat_once(self) -> None:
        """One heartbeat (registering again if the store forgot this agent), then a refresh
        of the live agents. Raises StorageError."""
        if not await self._store.heartbeat_agent(self._directory.agent_id, self._ttl_ms):
            await self._register()
        await self.refresh()

    async def _beat(self) -> None:
        while True:
            await self._clock.sleep_ms(self._interval_ms)
            try:
                await self.beat_once()
            except StorageError as error:  # retried at the next beat
                log.warning("heartbeat failed, retrying in %d ms: %s", self._interval_ms, error)

    async def _register(self) -> None:
        me = self._directory.advertised
        record = await self._store.register_agent(
            me.agent_id, me.host, me.port, self._started_ms, self._ttl_ms
        )
        self._directory.advertise(me.host, me.port, record.node_id)

    async def refresh(self) -> None:
        """Read the live agents into the directory. Raises StorageError."""
        live = await self._store.list_live_agents()
        self._directory.update(AgentAddress(a.agent_id, a.node_id, a.host, a.port) for a in live)
