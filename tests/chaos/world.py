"""A chaos cluster: real `streamhouse agent` processes sharing one PostgreSQL database and one
bucket (or one agent on its embedded SQLite store), which a test kills, pauses and restarts,
and every fault it injects recorded into the run's History in the simulator's terms.

Agents keep their Kafka port across restarts (and their data directory unless the test wipes
it), so a client's node ids and the history's agent names stay the same: an agent is named in
the history as `agent-<n>`, through the port the client was told to connect to.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from sim.history import (
    FAULT_CRASH,
    FAULT_LEASE_FENCED,
    FAULT_PAUSE,
    FAULT_RESTART,
    FAULT_RESUME,
    FaultInjected,
    History,
    TopicCreated,
)
from streamhouse.testing.agent_process import AgentProcess, start_agent_process
from streamhouse.testing.network import LOOPBACK, free_loopback_port
from tests.chaos.stores import ChaosStores

FLUSH_INTERVAL_MS = 100
LEASE_TTL_MS = 4_000  # short, so a failover or a pause past the lease fits a quick run
AGENT_SESSION_TIMEOUT_MS = 4_000
GROUP_DELAY_MS = 300  # a new group's first generation comes quickly
SNAPSHOT_INTERVAL_MS = 1_000
ADMIN_TIMEOUT_S = 30
RESTART_ATTEMPTS_MAX = 3


def now_us() -> int:
    """The history's clock: monotonic, in microseconds."""
    return time.monotonic_ns() // 1_000


@dataclass
class ChaosAgent:
    """One agent of the cluster: where it lives, and its process while it runs."""

    name: str
    data_dir: Path
    kafka_port: int
    advertised_port: int  # the port clients are told (a fault proxy's, or kafka_port)
    process: AgentProcess | None = None
    paused: bool = False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.process.poll() is None


@dataclass
class ChaosWorld:
    """The cluster of one chaos run and the history its clients and faults write."""

    stores: ChaosStores | None  # None: one agent on its embedded SQLite and local objects
    base_dir: Path
    history: History
    metadata_url: str = ""
    object_store_url: str = ""
    extra_args: tuple[str, ...] = ()
    agents: list[ChaosAgent] = field(default_factory=list)
    s3_via: str = ""  # the S3 endpoint agents are given, when not the store's own (a proxy)

    # ------------------------------------------------------------ the cluster

    def add_agent(self, advertised_port: int = 0) -> ChaosAgent:
        """Reserve an agent (named agent-<n>), not yet started."""
        number = len(self.agents) + 1
        port = free_loopback_port()
        agent = ChaosAgent(
            f"agent-{number}", self.base_dir / f"agent-{number}", port, advertised_port or port
        )
        self.agents.append(agent)
        return agent

    def start(self, agent: ChaosAgent, *more_args: str) -> None:
        """Start `agent` on its port and data directory (retried: a port may be briefly held
        by the process that just died)."""
        for attempt in range(RESTART_ATTEMPTS_MAX):
            try:
                agent.process = start_agent_process(
                    agent.data_dir,
                    *self._args(agent),
                    *more_args,
                    log_path=self.base_dir / f"{agent.name}.log",
                    env=None if self.stores is None else self.stores.agent_environment(),
                )
                return
            except Exception:
                if attempt + 1 == RESTART_ATTEMPTS_MAX:
                    raise
                time.sleep(1)

    def _args(self, agent: ChaosAgent) -> list[str]:
        args = ["--kafka-port", str(agent.kafka_port)]
        if agent.advertised_port != agent.kafka_port:
            args += ["--advertised-port", str(agent.advertised_port)]
        args += ["--flush-interval-ms", str(FLUSH_INTERVAL_MS)]
        args += ["--lease-ttl-ms", str(LEASE_TTL_MS)]
        args += ["--agent-session-timeout-ms", str(AGENT_SESSION_TIMEOUT_MS)]
        args += ["--group-initial-rebalance-delay-ms", str(GROUP_DELAY_MS)]
        if self.stores is not None:
            args += ["--metadata-url", self.metadata_url, "--object-store", self.object_store_url]
            args += ["--s3-endpoint", self.s3_endpoint]
            args += ["--snapshot-interval-ms", str(SNAPSHOT_INTERVAL_MS)]
        return args + list(self.extra_args)

    @property
    def s3_endpoint(self) -> str:
        assert self.stores is not None
        return self.s3_via or self.stores.s3_endpoint

    def start_all(self) -> None:
        for agent in self.agents:
            self.start(agent)

    def stop_all(self) -> None:
        """Stop every agent (SIGCONT first for a paused one), killing any that hangs."""
        for agent in self.agents:
            if agent.process is None:
                continue
            if agent.paused:
                agent.process.send_signal(signal.SIGCONT)
                agent.paused = False
            with agent.process:
                pass

    @property
    def bootstrap(self) -> str:
        """Every agent's advertised address, as clients are given it."""
        return ",".join(f"{LOOPBACK}:{agent.advertised_port}" for agent in self.agents)

    def agent_at_port(self, port: int) -> str | None:
        """The history name of the agent clients reach at `port`."""
        for agent in self.agents:
            if port in (agent.advertised_port, agent.kafka_port):
                return agent.name
        return None

    def log_tails(self) -> str:
        """Every agent's last log lines, for a failure's report."""
        return "\n".join(
            f"--- {agent.name}\n{agent.process.log_tail()}"
            for agent in self.agents
            if agent.process is not None
        )

    # ------------------------------------------------------------ faults, recorded

    def fault(self, kind: str, agent: str, detail: str = "") -> None:
        self.history.append(FaultInjected(now_us(), kind, agent, detail=detail))

    def fence_leases(self, agent: ChaosAgent | None) -> None:
        """Record that `agent` (None: every agent) loses the leases of every partition it
        leads now: the test is about to keep it away past the lease TTL."""
        self.record_fenced(self.all_leaders(), agent)

    def all_leaders(self) -> dict[tuple[str, int], str | None]:
        """(topic, partition) -> its leader's name, for every topic of the history."""
        topics = sorted({event.topic for event in self.history.of_type(TopicCreated)})
        return {
            (topic, partition): leader
            for topic in topics
            for partition, leader in self.leaders(topic).items()
        }

    def record_fenced(
        self, leaders: dict[tuple[str, int], str | None], agent: ChaosAgent | None = None
    ) -> None:
        """Record the fenced lease of every partition in `leaders` led by `agent` (None: by
        anyone). What a fenced leader had not flushed may be lost (its acks=1 records, what
        consumers read up to its WAL's high watermark), which the checkers excuse only after
        such a fault; so it is recorded before any new leader can answer, while the old one
        acts no more (killed, paused, or cut off from the store past the lease)."""
        for (topic, partition), leader in sorted(leaders.items()):
            if leader is not None and (agent is None or leader == agent.name):
                fenced = FaultInjected(
                    now_us(), FAULT_LEASE_FENCED, leader, topic=topic, partition=partition
                )
                self.history.append(fenced)

    def kill(self, agent: ChaosAgent) -> None:
        """SIGKILL: the process dies with whatever it had not written."""
        assert agent.process is not None
        self.fault(FAULT_CRASH, agent.name, "SIGKILL")
        agent.process.kill()
        agent.paused = False

    def restart(self, agent: ChaosAgent) -> None:
        """Start a killed agent again on its disk (its WAL is replayed)."""
        self.fault(FAULT_RESTART, agent.name)
        self.start(agent)

    async def down_past_the_lease(self, agent: ChaosAgent, down_s: float) -> None:
        """Kill `agent` (its leases recorded fenced: others take them), keep it down
        `down_s`, and start it again on its disk."""
        await in_thread(self.fence_leases, agent)
        self.kill(agent)
        await asyncio.sleep(down_s)
        await in_thread(self.restart, agent)

    def pause(self, agent: ChaosAgent) -> None:
        assert agent.process is not None
        self.fault(FAULT_PAUSE, agent.name, "SIGSTOP")
        agent.process.send_signal(signal.SIGSTOP)
        agent.paused = True

    def resume(self, agent: ChaosAgent) -> None:
        assert agent.process is not None
        agent.process.send_signal(signal.SIGCONT)
        agent.paused = False
        self.fault(FAULT_RESUME, agent.name, "SIGCONT")

    # ------------------------------------------------------------ topics

    def create_topic(self, topic: str, partitions: int) -> None:
        """Create `topic` through the first running agent and record it in the history."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(topic, partitions, 1)])
        futures[topic].result(timeout=ADMIN_TIMEOUT_S)
        self.history.append(TopicCreated(now_us(), "admin", topic, partitions))

    def leaders(self, topic: str) -> dict[int, str | None]:
        """partition -> the history name of its leader, as one Metadata answer says."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        metadata = admin.list_topics(topic, timeout=ADMIN_TIMEOUT_S)
        ports = {node: broker.port for node, broker in metadata.brokers.items()}
        listed = metadata.topics[topic].partitions
        return {p: self.agent_at_port(ports.get(meta.leader, -1)) for p, meta in listed.items()}

    def busiest(self, topic: str, among: Sequence[ChaosAgent] | None = None) -> ChaosAgent:
        """The running agent leading the most partitions of `topic`."""
        counts: dict[str, int] = {}
        for name in self.leaders(topic).values():
            if name is not None:
                counts[name] = counts.get(name, 0) + 1
        candidates = [a for a in (among or self.agents) if a.running]
        return max(candidates, key=lambda agent: counts.get(agent.name, 0))


async def in_thread(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking step (a process start, an admin call) off the event loop."""
    return await asyncio.to_thread(call, *args, **kwargs)
