"""The transaction coordinator on simulated ports: real log stores leading the coordinator
slots, the simulated metadata store; the markers go to a recording stand-in for the log's
marker write (its real one is the log store's, tested with it). Init, add, commit with
offsets, fencing, timeouts, and a moved slot whose decided transaction the next holder
completes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from sim.clock import DEFAULT_START_WALL_MS, VirtualClock
from sim.disk import SimDisk
from sim.metadata import MetadataFaults, SimMetadataStore
from sim.object_store import SimObjectStore
from sim.rng import SeededRng
from streamhouse.config import Settings
from streamhouse.engine.cluster import ClusterDirectory
from streamhouse.engine.coordinators import CoordinatorSlots, ensure_coordinator_slots, slot_of
from streamhouse.engine.groups import Committer, GroupCoordinator
from streamhouse.engine.log_store import AppendResult, LogStore
from streamhouse.engine.transactions import TransactionCoordinator
from streamhouse.engine.txn_markers import MarkerDelivery
from streamhouse.errors import ErrorCode, NotLeader
from streamhouse.kafka.control_records import TxnMarker
from streamhouse.log.txn_state import TxnState
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import OffsetToCommit
from streamhouse.ports.txn_markers import MarkerSender
from tests.unit.log_world import one_store_log

TXN_ID = "orders-writer"
SLOT = slot_of(TXN_ID)
TP0 = TopicPartition("orders", 0)
TP1 = TopicPartition("orders", 1)
GROUP = "billing"
TIMEOUT_MS = 10_000
SETTINGS = Settings(transaction_check_interval_ms=100)
E = ErrorCode


@dataclass
class RecordingMarkers:
    """Stands in for LogStore.write_marker: records each marker, durable at once."""

    written: list[tuple[TopicPartition, TxnMarker]] = field(default_factory=list)
    refusing: bool = False  # answer NotLeader meanwhile (as a partition between leaders)

    async def write_marker(self, tp: TopicPartition, marker: TxnMarker) -> AppendResult:
        if self.refusing:
            raise NotLeader(f"{tp} is between leaders")
        self.written.append((tp, marker))
        loop = asyncio.get_running_loop()
        synced, durable = loop.create_future(), loop.create_future()
        synced.set_result(None)
        durable.set_result(None)
        return AppendResult(tp, 1, 0, 0, 0, synced, durable)


class NoPeers(MarkerSender):
    async def send_markers(self, *args: object) -> dict[TopicPartition, int]:
        raise AssertionError("every partition is led by the one agent here")


class Agent:
    def __init__(
        self, log: LogStore, txns: TransactionCoordinator, groups: GroupCoordinator
    ) -> None:
        self.log = log
        self.txns = txns
        self.groups = groups


class World:
    def __init__(self) -> None:
        self.rng = SeededRng(5)
        self.clock = VirtualClock()
        self.metadata = SimMetadataStore(
            self.rng.fork("metadata"), clock=VirtualClock(DEFAULT_START_WALL_MS + 3_600_000)
        )
        self.objects = SimObjectStore(None, self.rng.fork("objects"))
        self.markers = RecordingMarkers()

    async def agent(self, agent_id: str) -> Agent:
        await ensure_coordinator_slots(self.metadata, self.clock.now_ms())
        if await self.metadata.get_topic(TP0.topic) is None:
            await self.metadata.create_topic(TP0.topic, 2, {}, self.clock.now_ms())
        log = one_store_log(
            SETTINGS,
            self.clock,
            self.rng.fork(agent_id),
            SimDisk(self.rng.fork(f"disk-{agent_id}")),
            self.objects,
            self.metadata,
            agent_id,
        )
        await log.open(run_background=False)
        slots = CoordinatorSlots(log, self.clock)
        cluster = ClusterDirectory(agent_id)
        delivery = MarkerDelivery(
            SETTINGS,
            self.clock,
            log=self.markers,
            topics=self.metadata,
            cluster=cluster,
            sender=NoPeers(),
        )
        txns = TransactionCoordinator(
            SETTINGS,
            self.clock,
            store=self.metadata,
            producers=self.metadata,
            topics=self.metadata,
            slots=slots,
            markers=delivery,
        )
        groups = GroupCoordinator(
            SETTINGS,
            self.clock,
            self.rng.fork(f"groups-{agent_id}"),
            topics=self.metadata,
            groups=self.metadata,
            pending=self.metadata,
        )
        return Agent(log, txns, groups)


async def _settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def _wait_state(agent: Agent, state: TxnState) -> None:
    for _ in range(100):
        txn = await agent.txns.describe(TXN_ID)
        if txn is not None and txn.state is state:
            return
        await _settle()
    raise AssertionError(f"never reached {state}: {await agent.txns.describe(TXN_ID)}")


def test_a_transaction_with_offsets_commits_and_writes_its_markers() -> None:
    async def main() -> None:
        world = World()
        a = await world.agent("a")
        first = await a.txns.init_producer(TXN_ID, TIMEOUT_MS)
        assert (first.code, first.producer_epoch) == (E.NONE, 0)
        pid = first.producer_id
        added = await a.txns.add_partitions(TXN_ID, pid, 0, [TP0, TP1])
        assert {answer.code for answer in added.values()} == {E.NONE}
        assert (await a.txns.add_offsets(TXN_ID, pid, 0, GROUP)).code is E.NONE
        offsets = {TP0: OffsetToCommit(7, -1, None)}
        unchecked = Committer(-1, "", None, unchecked=True)
        assert await a.groups.commit_txn_offsets(GROUP, pid, unchecked, offsets) == {TP0: E.NONE}
        assert await world.metadata.fetch_offsets(GROUP) == {}  # pending until the decision
        assert await a.groups.pending_partitions(GROUP) == {TP0}  # not stable (KIP-447)
        assert (await a.txns.end(TXN_ID, pid, 0, True)).code is E.NONE
        assert (await world.metadata.fetch_offsets(GROUP))[TP0].offset == 7
        assert await a.groups.pending_partitions(GROUP) == set()
        await _wait_state(a, TxnState.COMPLETE_COMMIT)
        assert world.markers.written == [
            (TP0, TxnMarker(pid, 0, True, world_slot_epoch(a))),
            (TP1, TxnMarker(pid, 0, True, world_slot_epoch(a))),
        ]
        assert (await a.txns.end(TXN_ID, pid, 0, True)).code is E.NONE  # a retry
        assert (a.txns.stats.committed, a.txns.stats.markers_written) == (1, 2)
        assert (a.txns.open_count, a.txns.completing_count) == (0, 0)
        await a.txns.close()

    asyncio.run(main())


def world_slot_epoch(agent: Agent) -> int:
    return agent.log.led_partition(SLOT).state.leader_epoch  # type: ignore[union-attr]


def test_a_second_producer_fences_the_first_and_aborts_its_transaction() -> None:
    async def main() -> None:
        world = World()
        a = await world.agent("a")
        pid = (await a.txns.init_producer(TXN_ID, TIMEOUT_MS)).producer_id
        await a.txns.add_partitions(TXN_ID, pid, 0, [TP0])
        again = await a.txns.init_producer(TXN_ID, TIMEOUT_MS)
        assert again.code is E.CONCURRENT_TRANSACTIONS  # the open transaction aborts first
        await _wait_state(a, TxnState.COMPLETE_ABORT)
        assert world.markers.written == [(TP0, TxnMarker(pid, 1, False, world_slot_epoch(a)))]
        second = await a.txns.init_producer(TXN_ID, TIMEOUT_MS)
        assert (second.code, second.producer_id, second.producer_epoch) == (E.NONE, pid, 2)
        zombie = await a.txns.end(TXN_ID, pid, 0, True)
        assert zombie.code is E.PRODUCER_FENCED and "fenced" in zombie.message
        assert (await a.txns.add_partitions(TXN_ID, pid, 0, [TP1]))[TP1].code is (E.PRODUCER_FENCED)
        await a.txns.close()

    asyncio.run(main())


@pytest.mark.parametrize("wall_step_ms", [0, -60_000], ids=["same-clock", "clock-behind"])
def test_a_transaction_past_its_timeout_is_aborted_with_its_epoch_bumped(wall_step_ms: int) -> None:
    """Also when the coordinator's wall clock is a minute behind the one that stamped the
    transaction's start (stepped back, or the slot moved to an agent whose clock is behind):
    it times out one timeout after the coordinator saw it, by its monotonic clock (before:
    once its wall clock passed the stamped start plus the timeout, a minute later; a harder
    txn seed, 64, never ended its read_committed scan)."""

    async def main() -> None:
        world = World()
        a = await world.agent("a")
        pid = (await a.txns.init_producer(TXN_ID, TIMEOUT_MS)).producer_id
        await a.txns.add_partitions(TXN_ID, pid, 0, [TP0])
        world.clock.step_wall_ms(wall_step_ms)
        await a.txns.check()  # sees it: times it out a timeout from now
        world.clock.advance_ms(TIMEOUT_MS // 2)
        await a.log.renew_leases()
        await a.txns.check()
        assert (await a.txns.describe(TXN_ID)).state is TxnState.ONGOING  # type: ignore[union-attr]
        world.clock.advance_ms(TIMEOUT_MS)
        await a.log.renew_leases()
        await a.txns.check()
        await _wait_state(a, TxnState.COMPLETE_ABORT)
        assert world.markers.written == [(TP0, TxnMarker(pid, 1, False, world_slot_epoch(a)))]
        assert (await a.txns.end(TXN_ID, pid, 0, True)).code is E.PRODUCER_FENCED
        await a.txns.close()

    asyncio.run(main())


def test_only_the_slot_holder_coordinates_and_a_new_holder_completes_a_decided_commit() -> None:
    async def main() -> None:
        world = World()
        a, b = await world.agent("a"), await world.agent("b")
        await a.log.take(SLOT)
        pid = (await a.txns.init_producer(TXN_ID, TIMEOUT_MS)).producer_id
        assert (await b.txns.init_producer(TXN_ID, TIMEOUT_MS)).code is E.NOT_COORDINATOR
        await a.txns.add_partitions(TXN_ID, pid, 0, [TP0])
        # the decision is stored, then the agent stops before its completion writes a marker
        assert (await a.txns.end(TXN_ID, pid, 0, True)).code is E.NONE
        await a.txns.close()
        assert world.markers.written == []
        assert await a.log.hand_over(SLOT)
        await b.log.take(SLOT)
        await b.txns.check()  # recovers the slot it took
        await _wait_state(b, TxnState.COMPLETE_COMMIT)
        assert world.markers.written == [(TP0, TxnMarker(pid, 0, True, world_slot_epoch(b)))]
        await b.txns.close()

    asyncio.run(main())


def test_an_idle_transactional_id_expires_and_starts_afresh() -> None:
    async def main() -> None:
        world = World()
        a = await world.agent("a")
        first = await a.txns.init_producer(TXN_ID, TIMEOUT_MS)
        assert await a.txns.expire_ids() == 0  # not idle for long yet
        world.clock.advance_ms(SETTINGS.transactional_id_expiration_ms + 1)
        await a.log.renew_leases()
        assert await a.txns.expire_ids() == 1
        assert await world.metadata.get_transaction(TXN_ID) is None
        again = await a.txns.init_producer(TXN_ID, TIMEOUT_MS)
        assert again.producer_id != first.producer_id and again.producer_epoch == 0
        await a.txns.close()

    asyncio.run(main())


def test_a_decision_whose_write_outcome_was_lost_still_completes() -> None:
    """The store applied EndTxn's decision but the answer was lost (an unknown outcome): the
    client is told to retry, and even if it never does, the next round completes it."""

    async def main() -> None:
        world = World()
        a = await world.agent("a")
        pid = (await a.txns.init_producer(TXN_ID, TIMEOUT_MS)).producer_id
        await a.txns.add_partitions(TXN_ID, pid, 0, [TP0])
        await a.txns.check()  # the slot is recovered once
        world.metadata.faults = MetadataFaults(unknown_outcome_rate=1.0)
        lost = await a.txns.end(TXN_ID, pid, 0, True)
        world.metadata.faults = MetadataFaults()
        assert lost.code is E.COORDINATOR_LOAD_IN_PROGRESS
        assert world.markers.written == []
        await a.txns.check()  # no retry from the client: the round reads the slot again
        await _wait_state(a, TxnState.COMPLETE_COMMIT)
        assert world.markers.written == [(TP0, TxnMarker(pid, 0, True, world_slot_epoch(a)))]
        await a.txns.close()

    asyncio.run(main())


def test_a_decided_commit_whose_completion_gave_up_while_the_slot_lapsed_completes() -> None:
    """The commit's marker cannot be written yet; meanwhile the agent's hold on the slot
    lapses (its lease's local deadline passes before a renewal), so the completion gives up
    for the slot's next holder; but the renewal keeps the slot here at the same epoch. The
    next check round reads the slot again and completes the commit (before: nobody did, and
    the partition's last stable offset stayed below the transaction for good; txn seed 42)."""

    async def main() -> None:
        world = World()
        a = await world.agent("a")
        pid = (await a.txns.init_producer(TXN_ID, TIMEOUT_MS)).producer_id
        await a.txns.add_partitions(TXN_ID, pid, 0, [TP0])
        await a.txns.check()
        epoch = world_slot_epoch(a)
        world.markers.refusing = True
        assert (await a.txns.end(TXN_ID, pid, 0, True)).code is E.NONE
        await _settle()
        world.clock.advance_ms(SETTINGS.lease_ttl_ms)  # no renewal: the hold lapses
        await _settle()
        world.markers.refusing = False
        await a.log.renew_leases()
        assert world_slot_epoch(a) == epoch  # held again, at the same epoch
        await a.txns.check()
        await _wait_state(a, TxnState.COMPLETE_COMMIT)
        assert world.markers.written == [(TP0, TxnMarker(pid, 0, True, epoch))]
        await a.txns.close()

    asyncio.run(main())
