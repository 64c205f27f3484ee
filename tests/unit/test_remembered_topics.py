"""RememberedTopics: the admin service's view of topics answers from the store's last answers
while the store fails over, and fails (after a pause) only for what it never read."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from sim.clock import VirtualClock
from sim.metadata import SimMetadataStore
from streamhouse.engine.remembered_topics import UNREMEMBERED_DELAY_MS, RememberedTopics
from streamhouse.errors import MetadataUnavailable
from streamhouse.names import TopicPartition

T = TypeVar("T")
T0_MS = 1_000
TP = TopicPartition("orders", 0)


def run(clock: VirtualClock, call: Awaitable[T]) -> T:
    """Run `call`, moving the virtual clock whenever everything waits on it."""

    async def main() -> T:
        task = asyncio.ensure_future(call)
        while not task.done():
            await asyncio.sleep(0)
            deadline = clock.next_deadline_ms()
            if deadline is not None and not task.done():
                clock.advance_ms(deadline - clock.monotonic_ms())
        return task.result()

    return asyncio.run(main())


@pytest.fixture
def world() -> tuple[VirtualClock, SimMetadataStore, RememberedTopics]:
    clock = VirtualClock()
    store = SimMetadataStore(clock=VirtualClock())
    return clock, store, RememberedTopics(store, clock)


def test_what_was_read_is_answered_while_the_store_fails_over(
    world: tuple[VirtualClock, SimMetadataStore, RememberedTopics],
) -> None:
    clock, store, topics = world
    created = run(clock, topics.create_topic("orders", 2, {}, T0_MS))
    listing = run(clock, topics.list_topics())
    partition = run(clock, topics.get_partition(TP))
    every = run(clock, topics.list_partitions())
    store.begin_failover()
    assert run(clock, topics.list_partitions()) == every
    assert run(clock, topics.get_topic("orders")) == created
    assert run(clock, topics.list_topics()) == listing
    assert run(clock, topics.get_partition(TP)) == partition
    assert clock.monotonic_ms() == 0  # answered at once
    store.end_failover()
    run(clock, store.create_topic("payments", 1, {}, T0_MS))  # through another agent
    assert [t.name for t in run(clock, topics.list_topics())] == ["orders", "payments"]


def test_what_was_never_read_fails_after_a_pause(
    world: tuple[VirtualClock, SimMetadataStore, RememberedTopics],
) -> None:
    clock, store, topics = world
    run(clock, store.create_topic("orders", 1, {}, T0_MS))
    store.begin_failover()
    with pytest.raises(MetadataUnavailable):
        run(clock, topics.get_topic("orders"))
    assert clock.monotonic_ms() == UNREMEMBERED_DELAY_MS
    with pytest.raises(MetadataUnavailable):
        run(clock, topics.get_partition(TP))
    assert clock.monotonic_ms() == 2 * UNREMEMBERED_DELAY_MS
    store.end_failover()
    assert run(clock, topics.get_topic("orders")) is not None


def test_a_topic_this_agent_deleted_is_not_answered_from_memory(
    world: tuple[VirtualClock, SimMetadataStore, RememberedTopics],
) -> None:
    clock, store, topics = world
    run(clock, topics.create_topic("orders", 1, {}, T0_MS))
    run(clock, topics.get_partition(TP))
    run(clock, topics.delete_topic("orders"))
    store.begin_failover()
    assert run(clock, topics.get_topic("orders")) is None
    with pytest.raises(MetadataUnavailable):
        run(clock, topics.get_partition(TP))


def test_overlapping_failovers_keep_the_store_down_until_the_last_ends(
    world: tuple[VirtualClock, SimMetadataStore, RememberedTopics],
) -> None:
    clock, store, _ = world
    store.begin_failover()
    store.begin_failover()
    store.end_failover(clock_step_ms=-1_000)
    with pytest.raises(MetadataUnavailable):
        run(clock, store.list_topics())
    store.end_failover()
    assert run(clock, store.list_topics()) == []
