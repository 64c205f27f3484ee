"""A lease holder's local deadline, on virtual clocks: the agent's and the store's apart.

The holder leads until lease_ttl_ms - lease_drift_margin_ms of its monotonic time after it
*sent* the acquire or renewal that succeeded; past it, appends, acks=1 answers and leader
reads are refused with NOT_LEADER_OR_FOLLOWER until a renewal at the same epoch succeeds
(a request first waits for one, until a renewal interval after the deadline). Wall-clock
steps move nothing; acks=all still completes through the epoch-fenced flush.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from sim.clock import VirtualClock
from sim.metadata import SimMetadataStore
from sim.rng import SeededRng
from streamhouse.config import Settings
from streamhouse.engine import log_store
from streamhouse.engine.log_store import LAPSED_WAIT_MS_MIN, LogStore
from streamhouse.errors import ErrorCode, MetadataUnavailable, NotLeader
from streamhouse.kafka.records import SimpleRecord, build_batch
from streamhouse.names import TopicPartition
from streamhouse.ports.leases import Lease
from tests.unit.log_world import LogWorld

TP = TopicPartition("t", 0)
TTL_MS = 9_000
MARGIN_MS = 1_500
LEAD_MS = TTL_MS - MARGIN_MS  # how long one successful request lets the holder lead
RENEWAL_INTERVAL_MS = TTL_MS // 3  # how long a request past the deadline waits for a renewal
SETTINGS = Settings(lease_ttl_ms=TTL_MS, lease_drift_margin_ms=MARGIN_MS)
HOUR_MS = 3_600_000


class SlowLeases(SimMetadataStore):
    """The sim store, whose acquire_lease and renew_leases answer only once `answer` is set (a
    slow store, or a holder paused between sending and reading the answer)."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(SeededRng(5), clock=clock)
        self.answer = asyncio.Event()
        self.answer.set()

    async def acquire_lease(self, tp: TopicPartition, agent: str, ttl_ms: int) -> Lease | None:
        await self.answer.wait()
        return await super().acquire_lease(tp, agent, ttl_ms)

    async def renew_leases(
        self, held: Mapping[TopicPartition, int], agent: str, ttl_ms: int
    ) -> dict[TopicPartition, Lease | None]:
        await self.answer.wait()
        return await super().renew_leases(held, agent, ttl_ms)


class World(LogWorld):
    """The holder's log over a store whose lease answers can be held back."""

    def __init__(self) -> None:
        super().__init__(SETTINGS, seed=3)
        self.metadata: SlowLeases = SlowLeases(self.store_clock)

    async def start(self) -> LogStore:
        return await self.open(TP.topic, 1, "holder")


def _batch(value: bytes) -> bytes:
    return build_batch([SimpleRecord(None, value, (), 5)])


async def _append(log: LogStore, value: bytes, *, durable: bool = False) -> Any:
    result = await log.append(TP, _batch(value), durable=durable)
    await result.synced
    return result


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def _refused(
    world: World, call: Any, waits_ms: int = RENEWAL_INTERVAL_MS, match: str = "local deadline"
) -> None:
    """`call` waits `waits_ms` for a renewal that does not come, then is refused."""
    waiting = asyncio.ensure_future(call)
    await _settle()
    assert not waiting.done(), "refused without waiting for the lease keeper"
    world.clock.advance_ms(waits_ms - 1)
    await _settle()
    assert not waiting.done()
    world.clock.advance_ms(1)
    with pytest.raises(NotLeader, match=match) as refused:
        await waiting
    assert refused.value.code == ErrorCode.NOT_LEADER_OR_FOLLOWER


def test_the_holder_leads_until_ttl_minus_margin_after_sending() -> None:
    async def main() -> None:
        world = World()
        log = await world.start()
        await _append(log, b"first")  # takes the lease at monotonic 0
        world.advance_ms(LEAD_MS - 1)
        last_in_time = await _append(log, b"in time")
        log.confirm_leader_ack(last_in_time)
        assert (await log.reads.read(TP, 0, 1 << 20)).high_watermark == 2
        world.advance_ms(1)  # the deadline: the store still has MARGIN_MS to go
        assert (await world.metadata.get_partition(TP)).lease_live
        with pytest.raises(NotLeader, match="local deadline"):
            log.confirm_leader_ack(last_in_time)
        await _refused(world, log.append(TP, _batch(b"late"), durable=False))
        # a renewal interval after the deadline, a request waits the least before refusal
        await _refused(world, log.reads.read(TP, 0, 1 << 20), LAPSED_WAIT_MS_MIN)
        assert log.led_partition(TP) is not None, "lapsed, not lost: it may renew"

        waiting = asyncio.ensure_future(log.append(TP, _batch(b"renewed"), durable=False))
        await _settle()
        await log.renew_leases()  # the same epoch: leading again, for LEAD_MS from now
        log.confirm_leader_ack(last_in_time)
        assert (await waiting).base_offset == 2  # it waited for the renewal, and went on
        world.advance_ms(LEAD_MS - 1)
        await _append(log, b"still")
        world.advance_ms(1)
        await _refused(world, log.partition(TP))

    asyncio.run(main())


def test_a_renewal_counts_from_when_it_was_sent_not_answered() -> None:
    sent_ms = 5_000

    async def main() -> None:
        world = World()
        log = await world.start()
        await _append(log, b"first")
        world.advance_ms(sent_ms)
        world.metadata.answer.clear()  # the renewal is sent now, answered much later
        renewing = asyncio.ensure_future(log.renew_leases())
        await _settle()
        world.advance_ms(LEAD_MS - sent_ms)  # the first deadline passes meanwhile
        await _refused(world, log.append(TP, _batch(b"waiting"), durable=False))
        world.store_clock.advance_ms(RENEWAL_INTERVAL_MS)
        world.metadata.answer.set()
        await renewing
        await _append(log, b"renewed")  # until sent_ms + LEAD_MS, not LEAD_MS from now
        world.advance_ms(sent_ms - RENEWAL_INTERVAL_MS - 1)
        await _append(log, b"last")
        world.advance_ms(1)
        await _refused(world, log.append(TP, _batch(b"late"), durable=False))

    asyncio.run(main())


def test_wall_clock_steps_take_no_lease_and_end_no_deadline() -> None:
    async def main() -> None:
        world = World()
        log = await world.start()
        first = await _append(log, b"first")
        world.clock.step_wall_ms(HOUR_MS)  # the holder's wall clock jumps an hour ahead
        log.confirm_leader_ack(first)
        await _append(log, b"after a step forward")
        world.clock.step_wall_ms(-2 * HOUR_MS)  # and back
        await _append(log, b"after a step back")
        # A thief whose clock is an hour ahead cannot tell the store any time: refused.
        assert await world.metadata.acquire_lease(TP, "thief", TTL_MS) is None
        world.advance_ms(LEAD_MS - 1)
        log.confirm_leader_ack(first)

    asyncio.run(main())


def test_a_lease_taken_by_another_agent_fences_the_old_epochs_acks() -> None:
    async def main() -> None:
        world = World()
        log = await world.start()
        before = await _append(log, b"acked in epoch 1")
        world.advance_ms(TTL_MS)  # the holder stood still past the store's expiry
        stolen = await world.metadata.acquire_lease(TP, "thief", TTL_MS)
        assert stolen is not None and stolen.epoch == before.leader_epoch + 1
        with pytest.raises(NotLeader):
            log.confirm_leader_ack(before)
        waiting = asyncio.ensure_future(log.append(TP, _batch(b"zombie"), durable=False))
        await _settle()
        assert not waiting.done()
        await log.renew_leases()  # finds the lease moved: fenced, the waiter refused at once
        assert log.led_partition(TP) is None
        with pytest.raises(NotLeader, match="moved"):
            await waiting
        with pytest.raises(NotLeader, match="moved"):
            log.confirm_leader_ack(before)

    asyncio.run(main())


def test_acks_all_completes_past_the_deadline_through_the_fenced_flush() -> None:
    async def main() -> None:
        world = World()
        log = await world.start()
        result = await _append(log, b"durable", durable=True)
        world.advance_ms(LEAD_MS)  # lapsed locally; nobody took the lease in the store
        with pytest.raises(NotLeader):
            log.confirm_leader_ack(result)
        await log.flusher.flush_once()  # the commit is judged by the epoch, not the deadline
        assert result.durable is not None
        await result.durable
        assert (await world.metadata.get_partition(TP)).durable_end_offset == 1

    asyncio.run(main())


@pytest.mark.parametrize("margin_ms", [-1, 6_000, TTL_MS])
def test_a_margin_that_leaves_less_than_a_renewal_interval_is_refused(margin_ms: int) -> None:
    with pytest.raises(ValueError, match="lease_drift_margin_ms"):
        Settings(lease_ttl_ms=TTL_MS, lease_drift_margin_ms=margin_ms)
    Settings(lease_ttl_ms=TTL_MS, lease_drift_margin_ms=5_999)  # leads 3 001 > 3 000 ms


class FlakyLeases(SlowLeases):
    """Fails the renewal call that holds one partition (a store failing that one call)."""

    failing: TopicPartition | None = None

    async def renew_leases(
        self, held: Mapping[TopicPartition, int], agent: str, ttl_ms: int
    ) -> dict[TopicPartition, Lease | None]:
        if self.failing in held:
            raise MetadataUnavailable(f"simulated: no answer for {self.failing}")
        return await super().renew_leases(held, agent, ttl_ms)


def test_a_failed_renewal_leaves_the_others_renewed_and_a_deleted_topic_is_let_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = TopicPartition("u", 0)
    monkeypatch.setattr(log_store, "RENEWALS_PER_CALL_MAX", 1)  # a store call per partition

    async def main() -> None:
        world = World()
        world.metadata = flaky = FlakyLeases(world.store_clock)
        log = await world.start()
        await world.metadata.create_topic(other.topic, 1, {}, 0)
        await log.partition(TP)
        await log.partition(other)
        world.advance_ms(LEAD_MS - 1)
        flaky.failing = TP
        with pytest.raises(MetadataUnavailable):
            await log.renew_leases()
        world.advance_ms(1)
        await _refused(world, log.partition(TP))  # its renewal failed: lapsed
        assert (await log.partition(other)).state.tp == other  # renewed all the same

        await world.metadata.delete_topic(other.topic)  # through another agent
        flaky.failing = None
        await log.renew_leases()
        assert log.led_partition(other) is None
        assert log.led_partition(TP) is not None

    asyncio.run(main())
