"""A log store on simulated ports for unit tests: the agent's virtual clock, a disk and an
object store that survive its restarts, and a metadata store judging expiry by a virtual
clock of its own (its wall time hours away from the agent's, as nothing may compare them)."""

from __future__ import annotations

from collections.abc import Callable

from sim.clock import DEFAULT_START_WALL_MS, VirtualClock
from sim.disk import SimDisk
from sim.metadata import SimMetadataStore
from sim.object_store import SimObjectStore
from sim.rng import SeededRng
from streamhouse.config import Settings
from streamhouse.engine.log_store import LogStore
from streamhouse.names import TopicPartition

STORE_CLOCK_AHEAD_MS = 5 * 3_600_000


class LogWorld:
    """One agent's log store over sim adapters; `open` again is a restart on the same disk."""

    def __init__(self, settings: Settings, seed: int) -> None:
        rng = SeededRng(seed)
        self.settings = settings
        self.rng = rng
        self.clock = VirtualClock()  # the agent's
        self.store_clock = VirtualClock(DEFAULT_START_WALL_MS + STORE_CLOCK_AHEAD_MS)
        self.disk = SimDisk(rng.fork("disk"))
        self.objects = SimObjectStore(None, rng.fork("objects"))
        self.metadata = SimMetadataStore(rng.fork("metadata"), clock=self.store_clock)

    async def open(self, topic: str, partitions: int, agent_id: str = "a") -> LogStore:
        """Agent `agent_id`'s log, recovered (no background services), the topic created
        first if it is not there yet."""
        if await self.metadata.get_topic(topic) is None:
            await self.metadata.create_topic(topic, partitions, {}, self.clock.now_ms())
        log = one_store_log(
            self.settings, self.clock, self.rng, self.disk, self.objects, self.metadata, agent_id
        )
        await log.open(run_background=False)
        return log

    def advance_ms(self, delta_ms: int) -> None:
        """Time passes for the agent and the store alike."""
        self.clock.advance_ms(delta_ms)
        self.store_clock.advance_ms(delta_ms)


def one_store_log(
    settings: Settings,
    clock: VirtualClock,
    rng: SeededRng,
    disk: SimDisk,
    objects: SimObjectStore,
    metadata: SimMetadataStore,
    agent_id: str,
    may_lead: Callable[[TopicPartition], bool] = lambda _: True,
) -> LogStore:
    """An agent's log store whose topics, leases and producers are all in `metadata`."""
    return LogStore(
        settings,
        clock,
        rng,
        disk,
        objects,
        agent_id,
        topics=metadata,
        leases=metadata,
        producers=metadata,
        may_lead=may_lead,
    )
