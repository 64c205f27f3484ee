"""A simulated cluster: real agents on their own virtual hosts and disks, and their faults.

Each agent is the real composition (`assemble_agent`) on its own virtual
host, SimDisk and LoopClock (so its clock can drift or step); all share one
SimObjectStore and one SimMetadataStore, as agents sharing a bucket and a
PostgreSQL do, and form a cluster through it (membership: each registers and
heartbeats there); the store judges expiry by its own clock, with its own
offset and drift. The cluster can crash an agent (its tasks are cancelled
where they stand, its disk loses or tears what was not fsynced, its
listener vanishes and its connections reset), restart it (a fresh
`assemble_agent` on the same disk and agent id: WAL recovery), wipe its
disk before a restart (a replaced machine), pause it (every storage call it
makes waits and its links are clogged, so it stops answering and may lose
its leases, then carries on as if nothing happened), and step or drift its
wall clock. Every fault is recorded in the History as a `FaultInjected`,
and so is every lease that moves away from an agent (read from the metadata
store after each lease call), which is what excuses acks=1 losses.

An agent whose own invariant fails (its failure signal fires: a background
service died, or a request hit a bug) stops at once, as the real process
exits 70; `until_an_agent_fails` then ends the run with `AgentFailed`, which
the runner counts as a crash.

Tasks are tracked per host through the loop's task factory, so any host's
tasks (a client's too) can be cancelled at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from sim.buggify import SimBuggify
from sim.clock import DEFAULT_START_WALL_MS, LoopClock
from sim.disk import DiskFaults, SimDisk
from sim.history import (
    FAULT_CRASH,
    FAULT_DISK_LOSS,
    FAULT_HEAL,
    FAULT_LEASE_FENCED,
    FAULT_PAUSE,
    FAULT_RESTART,
    FAULT_RESUME,
    FaultInjected,
    History,
)
from sim.loop import SimLoop
from sim.metadata import MetadataFaults, SimMetadataStore
from sim.network import NetworkFaults, SimNetwork, current_host, spawn_on_host
from sim.object_store import ObjectStoreFaults, SimObjectStore
from sim.rng import SeededRng
from sim.trace import Trace
from streamhouse.agent import Agent, assemble_agent
from streamhouse.config import Settings
from streamhouse.engine.failure import AgentFailure
from streamhouse.errors import StorageError
from streamhouse.names import TopicPartition
from streamhouse.ports.buggify import COMPACTION_BETWEEN_RUNS, REWRITE_BEFORE_LISTENERS
from streamhouse.ports.metadata import MetadataStore
from streamhouse.ports.object_store import ObjectStore

T = TypeVar("T")
KAFKA_PORT = 9092
TASKS_PRUNE_EVERY = 512  # forget finished tasks of a host after this many new ones
LEASE_CALLS = frozenset({"acquire_lease", "release_lease"})
TRACED_POINTS = {
    REWRITE_BEFORE_LISTENERS: "rewrite.swapped",
    COMPACTION_BETWEEN_RUNS: "compaction.next_run",
}

UP = "up"
DOWN = "down"
PAUSED = "paused"


@dataclass(frozen=True)
class ClusterOptions:
    """The world the agents live in; drawn from the seed by `sim.options`."""

    agents: int = 1
    settings: Settings = field(default_factory=Settings)
    disk_faults: DiskFaults = field(default_factory=DiskFaults)
    object_faults: ObjectStoreFaults = field(default_factory=ObjectStoreFaults)
    metadata_faults: MetadataFaults = field(default_factory=MetadataFaults)
    buggify_sites: tuple[str, ...] = ()
    buggify_rate: float = 0.0
    # the metadata store's own clock (it judges lease and heartbeat expiry): how far its
    # wall time starts from the agents' and how fast it drifts, apart from any agent's clock
    store_clock_offset_ms: int = 0
    store_clock_drift_ppm: int = 0


class AgentFailed(Exception):
    """An agent's own invariant failed (the cause is its error): the run cannot be judged."""


class _Gate:
    """Open: calls pass. Closed: every call through a gated port waits (a paused process)."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def passed(self) -> None:
        await self._open.wait()


class _GatedPort:
    """Forwards every call to a port; the async ones wait at the gate before and after
    (a paused process neither sends the request nor reads the answer), then `after`.
    Closing one leaves the shared port open."""

    def __init__(
        self,
        inner: object,
        gate: _Gate,
        after: Callable[[str, tuple[Any, ...]], Awaitable[None]] | None = None,
    ) -> None:
        self._inner = inner
        self._gate = gate
        self._after = after

    async def close(self) -> None:
        """The stores are shared by every agent: the cluster owns them, an agent's close
        leaves them open."""

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute
        gate, after = self._gate, self._after

        async def gated(*args: Any, **kwargs: Any) -> Any:
            await gate.passed()
            try:
                return await attribute(*args, **kwargs)
            finally:
                if after is not None:
                    await after(name, args)
                await gate.passed()

        return gated


class SimAgent:
    """One agent process: its host, disk, clock and (while up) its running composition."""

    def __init__(self, cluster: SimCluster, index: int) -> None:
        self.cluster = cluster
        self.index = index
        self.host = f"agent-{index}"
        rng = cluster.rng.fork(self.host)
        self.rng = rng
        self.disk = SimDisk(rng.fork("disk"))
        self.clock = LoopClock(cluster.loop)
        self.gate = _Gate()
        self.buggify = SimBuggify(
            rng.fork("buggify"),
            frozenset(cluster.options.buggify_sites),
            cluster.options.buggify_rate,
        )
        self.settings = cluster.options.settings.with_overrides(
            kafka_host=self.host, kafka_port=KAFKA_PORT, agent_id=self.host
        )
        self.buggify.on_reached = self._at_crash_point
        self.state = DOWN
        self.incarnation = 0
        self.running: Agent | None = None
        self.restarts = 0
        # crash points armed by a crash-at-step nemesis: the first time one is reached (in
        # any incarnation) the process dies there, and the future is told
        self._armed: dict[str, asyncio.Future[None]] = {}

    async def start(self) -> bool:
        """Start (or restart) the agent; False if recovery failed on a storage fault."""
        assert self.state == DOWN, self.state
        self.incarnation += 1
        objects = cast(ObjectStore, _GatedPort(self.cluster.objects, self.gate))
        metadata = cast(
            MetadataStore, _GatedPort(self.cluster.metadata, self.gate, self.cluster.lease_call)
        )
        failure = AgentFailure()
        failure.on_failure(self._failed)
        boot = assemble_agent(
            self.settings,
            self.clock,
            self.rng.fork(f"incarnation-{self.incarnation}"),
            self.disk,
            objects,
            metadata,
            self.buggify,
            failure,
        )
        self.state = UP
        try:
            self.running = await self.cluster.spawn(self.host, boot, f"{self.host}:boot")
        except StorageError as error:
            self.cluster.record_trace("agent.start-failed", self.host, type(error).__name__)
            self.crash(record=False)
            return False
        self.cluster.record_trace("agent.up", self.host, self.incarnation)
        return True

    async def crash_at(self, point: str, armed_ms: int) -> bool:
        """Arm crash point `point` (engine/rewrite.py's steps) for `armed_ms`: the first
        time this agent's engine reaches it, the process dies right there. True if it did."""
        reached: asyncio.Future[None] = self.cluster.loop.create_future()
        self._armed[point] = reached
        try:
            await asyncio.wait_for(asyncio.shield(reached), armed_ms / 1000)
        except TimeoutError:
            return False
        finally:
            if self._armed.get(point) is reached:
                del self._armed[point]
        return True

    def _at_crash_point(self, point: str) -> None:
        """The engine reached `point`: if it is armed, the process dies here (the engine's
        call does not return: its task ends cancelled, as the crash cancels the others).
        A swap that committed, and a compaction round going on to its next run, are traced."""
        if point in TRACED_POINTS:
            self.cluster.record_trace(TRACED_POINTS[point], self.host)
        reached = self._armed.get(point)
        if reached is None or self.state == DOWN or current_host() != self.host:
            return
        del self._armed[point]
        self.crash(detail=point)
        reached.set_result(None)
        raise asyncio.CancelledError(f"{self.host} crashed at {point}")

    def crash(self, record: bool = True, detail: str | None = None) -> None:
        """The process dies where it stands (`detail`: at which crash point)."""
        if record:
            fields = {} if detail is None else {"detail": detail}
            self.cluster.fault(FAULT_CRASH, self.host, **fields)
        self.state = DOWN
        self.running = None
        self.gate.open()
        self.cluster.kill_host(self.host)
        self.disk.crash()

    def wipe_disk(self) -> None:
        """The machine is replaced: the agent comes back with an empty disk."""
        assert self.state == DOWN, self.state
        self.cluster.fault(FAULT_DISK_LOSS, self.host)
        self.disk.files.clear()

    def pause(self, duration_ms: int) -> None:
        """Stop answering and stop reaching storage for `duration_ms` (until resumed)."""
        assert self.state == UP, self.state
        self.cluster.fault(FAULT_PAUSE, self.host, detail=f"{duration_ms}ms")
        self.state = PAUSED
        self.gate.close()
        for other in self.cluster.hosts():
            if other != self.host:
                self.cluster.network.clog(self.host, other, duration_ms)
                self.cluster.network.clog(other, self.host, duration_ms)

    def resume(self) -> None:
        if self.state == PAUSED:
            self.cluster.fault(FAULT_RESUME, self.host)
            self.state = UP
            self.gate.open()

    def _failed(self, error: BaseException) -> None:
        """Our own invariant failed in this agent: the process stops where it stands."""
        self.cluster.record_trace("agent.failed", self.host, type(error).__name__)
        if self.state != DOWN:
            self.crash(record=False)
        self.cluster.agent_failed(self.host, error)


class SimCluster:
    """The agents, their shared stores, the task registry and the fault log."""

    def __init__(
        self,
        loop: SimLoop,
        network: SimNetwork,
        rng: SeededRng,
        options: ClusterOptions,
        history: History,
        trace: Trace,
    ) -> None:
        self.loop = loop
        self.network = network
        self.rng = rng
        self.options = options
        self.history = history
        self.trace = trace
        self.clock = LoopClock(loop)  # the world's clock (object store latency), never skewed
        self.store_clock = LoopClock(loop, DEFAULT_START_WALL_MS + options.store_clock_offset_ms)
        self.store_clock.set_drift_ppm(options.store_clock_drift_ppm)
        # faults are armed once the cluster is set up (`arm_faults`)
        self.objects = SimObjectStore(self.clock, rng.fork("objects"))
        self.metadata = SimMetadataStore(rng.fork("metadata"), clock=self.store_clock)
        self._tasks: dict[str, dict[asyncio.Task[Any], None]] = {}
        self._created = 0
        self._client_hosts: list[str] = []
        self._dead_clients: set[str] = set()  # killed client processes: never run again
        self._leases: dict[TopicPartition, tuple[str | None, int]] = {}
        self._failed: asyncio.Future[None] = loop.create_future()
        loop.set_task_factory(self._task_factory)  # type: ignore[arg-type]
        self.agents = [SimAgent(self, index) for index in range(1, options.agents + 1)]

    # --- tasks per host --------------------------------------------------------------------

    def _task_factory(
        self,
        loop: asyncio.AbstractEventLoop,
        coroutine: Coroutine[Any, Any, Any],
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[Any]:
        task = asyncio.Task(coroutine, loop=loop, context=context)
        host = context.run(current_host) if context is not None else current_host()
        if host in self._dead_clients:
            task.cancel()  # a dead process's last `finally` starts nothing that runs on
        self._tasks.setdefault(host, {})[task] = None
        self._created += 1
        if self._created % TASKS_PRUNE_EVERY == 0:
            for tasks in self._tasks.values():
                for done in [t for t in tasks if t.done()]:
                    del tasks[done]
        return task

    async def spawn(self, host: str, coroutine: Coroutine[Any, Any, T], name: str) -> T:
        return await spawn_on_host(host, coroutine, name)

    def kill_host(self, host: str) -> None:
        """Cancel every task of `host` and drop its listeners and connections; a client host
        (never restarted) starts no task again."""
        if host in self._client_hosts:
            self._dead_clients.add(host)
        tasks = [task for task in self._tasks.pop(host, {}) if not task.done()]
        for task in tasks:
            task.cancel()
        self.network.crash_host(host)
        self.record_trace("host.killed", host, len(tasks))

    def exit_when_done(self, host: str, main: asyncio.Task[Any]) -> None:
        """The client process on `host` exits when its main task ends: background tasks its
        library left running (a metadata refresh, a heartbeat) stop with it."""
        main.add_done_callback(lambda _: self.kill_host(host))

    def add_client_host(self, host: str) -> None:
        if host not in self._client_hosts:
            self._client_hosts.append(host)

    def hosts(self) -> list[str]:
        return [agent.host for agent in self.agents] + self._client_hosts

    # --- recording ---------------------------------------------------------------------------

    def now_us(self) -> int:
        return self.loop.time_ns() // 1000

    def record_trace(self, event: str, *fields: object) -> None:
        self.trace.record(event, *fields)

    def fault(self, kind: str, agent: str, **fields: Any) -> None:
        event = FaultInjected(self.now_us(), kind, agent, **fields)
        self.history.append(event)
        self.record_trace("fault", kind, agent, *(f"{k}={v}" for k, v in sorted(fields.items())))

    async def lease_call(self, name: str, args: tuple[Any, ...]) -> None:
        """After any agent's lease call, note a lease that moved away from its holder."""
        if name not in LEASE_CALLS or not args or not isinstance(args[0], TopicPartition):
            return
        tp = args[0]
        record = await self.metadata.unfaulted.get_partition(tp)
        holder = (record.leader_agent, record.leader_epoch)
        before = self._leases.get(tp)
        self._leases[tp] = holder
        if before is None or before == holder:
            return
        old_agent, old_epoch = before
        if old_agent is not None and old_agent != record.leader_agent:
            self.fault(
                FAULT_LEASE_FENCED,
                old_agent,
                topic=tp.topic,
                partition=tp.partition,
                epoch=old_epoch,
                detail=f"to {record.leader_agent} epoch {record.leader_epoch}",
                next_agent=record.leader_agent,
                next_epoch=record.leader_epoch,
            )

    # --- the whole cluster -------------------------------------------------------------------

    async def start(self) -> None:
        """Start every agent, then let each read the others' registrations (the cluster is
        formed, as a deployment waits for it, before any client comes)."""
        for agent in self.agents:
            assert await agent.start(), f"{agent.host} failed to start without faults"
        for agent in self.agents:
            assert agent.running is not None
            await self.spawn(agent.host, agent.running.membership.beat_once(), "formed")

    def arm_faults(self) -> None:
        """Storage faults on, as the options say (the cluster starts without them)."""
        self.objects.faults = self.options.object_faults
        self.metadata.faults = self.options.metadata_faults
        for agent in self.agents:
            agent.disk.faults = self.options.disk_faults

    def heal_faults(self) -> None:
        """Every background fault off: network, disks, object store, metadata, clocks."""
        self.network.faults = NetworkFaults()
        self.network.heal()
        self.objects.faults = ObjectStoreFaults()
        self.metadata.faults = MetadataFaults()
        self.metadata.end_every_failover()  # any cut short by the end of the safety phase
        for agent in self.agents:
            agent.disk.faults = DiskFaults()
            agent.clock.set_drift_ppm(0)
            agent.resume()
        self.fault(FAULT_HEAL, "*")

    async def restart_down_agents(self) -> None:
        for agent in self.agents:
            while agent.state == DOWN:
                agent.restarts += 1
                self.fault(FAULT_RESTART, agent.host)
                if not await agent.start():
                    await self.clock.sleep_ms(100)

    def agent_failed(self, host: str, error: BaseException) -> None:
        if not self._failed.done():
            failed = AgentFailed(f"{host}: our own invariant failed: {error!r}")
            failed.__cause__ = error
            self._failed.set_exception(failed)

    async def until_an_agent_fails(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` to its end, unless an agent fails first: then stop `work` and raise
        AgentFailed (caused by the agent's error)."""
        task: asyncio.Future[Any] = asyncio.ensure_future(work)
        await asyncio.wait([task, self._failed], return_when=asyncio.FIRST_COMPLETED)
        if self._failed.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._failed.result()  # raises AgentFailed
        result: T = task.result()
        return result

    async def close(self) -> None:
        """Stop every client process still running (a killed one may have left tasks behind
        that keep reconnecting), then every agent. The caller's own host stays: it is closing."""
        for host in self._client_hosts:
            if host != current_host():
                self.kill_host(host)
        for agent in self.agents:
            if agent.running is not None and agent.state != DOWN:
                running, agent.running = agent.running, None
                await self.spawn(agent.host, running.close(), f"{agent.host}:close")
