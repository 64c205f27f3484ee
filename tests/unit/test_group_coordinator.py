"""The group coordinator service on a virtual clock and the simulated metadata store.

Joins wait for the initial delay and answer together; followers' syncs wait for the
leader; lost sessions and missed rebalances remove members; commits are checked against
generations and members; empty groups' offsets expire after the retention; groups are
deleted and listed; the group bound answers COORDINATOR_NOT_AVAILABLE.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from sim.clock import VirtualClock
from sim.metadata import MetadataFaults, SimMetadataStore
from sim.rng import SeededRng
from streamhouse.config import Settings
from streamhouse.engine.groups import GroupCoordinator
from streamhouse.errors import ErrorCode
from streamhouse.log.group_state import GroupState, JoinRequest, JoinResponse
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import CommittedOffset, CoordinatorFence, OffsetToCommit

T = TypeVar("T")
SESSION_MS = 10_000
REBALANCE_MS = 20_000
DELAY_MS = 3000
RETENTION_MS = 60_000
CHECK_MS = 1000
TP0 = TopicPartition("t", 0)
SETTLE_ROUNDS = 20
E = ErrorCode


class Harness:
    """A started coordinator, its virtual clock and its metadata store."""

    def __init__(self, **overrides: int) -> None:
        self.clock = VirtualClock()
        self.metadata = SimMetadataStore()
        settings = Settings(
            group_initial_rebalance_delay_ms=DELAY_MS,
            offsets_retention_ms=RETENTION_MS,
            offsets_retention_check_interval_ms=CHECK_MS,
        ).with_overrides(**overrides)
        self.groups = GroupCoordinator(
            settings, self.clock, SeededRng(1), topics=self.metadata, groups=self.metadata
        )

    async def settle(self) -> None:
        for _ in range(SETTLE_ROUNDS):
            await asyncio.sleep(0)

    async def advance(self, elapsed_ms: int, step_ms: int = 100) -> None:
        for _ in range(elapsed_ms // step_ms):
            self.clock.advance_ms(step_ms)
            await self.settle()

    async def join(
        self, member_id: str = "", instance: str | None = None
    ) -> asyncio.Task[JoinResponse]:
        request = JoinRequest(
            member_id,
            instance,
            "client",
            "host",
            SESSION_MS,
            REBALANCE_MS,
            "consumer",
            (("range", b"meta-" + member_id.encode()),),
            5,
        )
        task = asyncio.ensure_future(self.groups.join("g", request))
        await self.settle()
        return task

    async def member(self) -> asyncio.Task[JoinResponse]:
        """A new dynamic member: MEMBER_ID_REQUIRED, then a join with the given id."""
        first = await (await self.join())
        assert first.error is E.MEMBER_ID_REQUIRED
        return await self.join(first.member_id)


def run(scenario: Callable[[Harness], Awaitable[None]], **overrides: int) -> None:
    """Run `scenario` against a started coordinator with topic "t" (2 partitions)."""

    async def main() -> None:
        harness = Harness(**overrides)
        harness.groups.start()
        await harness.metadata.create_topic("t", 2, {}, harness.clock.now_ms())
        try:
            await scenario(harness)
        finally:
            await harness.groups.close()

    asyncio.run(main())


async def answer(task: Awaitable[T]) -> T:
    return await asyncio.wait_for(task, 1)


def test_joins_wait_for_the_initial_delay_and_the_leader_assigns() -> None:
    run(_joins_wait_for_the_initial_delay_and_the_leader_assigns)


async def _joins_wait_for_the_initial_delay_and_the_leader_assigns(harness: Harness) -> None:
    first, second = await harness.member(), await harness.member()
    await harness.advance(DELAY_MS - 100)
    assert not first.done() and not second.done()
    await harness.advance(200)
    one, two = await answer(first), await answer(second)
    assert one.generation == two.generation == 1
    assert one.leader == two.leader == one.member_id
    assert [m.member_id for m in one.members] == [one.member_id, two.member_id]
    assert two.members == ()
    follower = asyncio.ensure_future(
        harness.groups.sync("g", two.member_id, None, 1, None, None, {})
    )
    await harness.settle()
    assert not follower.done()
    assignments = {one.member_id: b"p0", two.member_id: b"p1"}
    leader = await harness.groups.sync(
        "g", one.member_id, None, 1, "consumer", "range", assignments
    )
    assert (leader.error, leader.assignment) == (E.NONE, b"p0")
    assert (await answer(follower)).assignment == b"p1"
    group = harness.groups.group("g")
    assert group is not None and group.state is GroupState.STABLE
    described = await harness.groups.describe("g")
    assert [m.assignment for m in described.members] == [b"p0", b"p1"]


async def _stable_pair(harness: Harness) -> tuple[JoinResponse, JoinResponse]:
    first, second = await harness.member(), await harness.member()
    await harness.advance(DELAY_MS)
    one, two = await answer(first), await answer(second)
    follower = asyncio.ensure_future(
        harness.groups.sync("g", two.member_id, None, 1, None, None, {})
    )
    await harness.groups.sync("g", one.member_id, None, 1, None, None, {})
    await answer(follower)
    return one, two


def test_a_lost_session_removes_the_member_and_rebalances() -> None:
    run(_a_lost_session_removes_the_member_and_rebalances)


async def _a_lost_session_removes_the_member_and_rebalances(harness: Harness) -> None:
    one, two = await _stable_pair(harness)
    for _ in range(SESSION_MS // 2000 + 1):  # only the first member heartbeats
        await harness.advance(2000)
        harness.groups.heartbeat("g", one.member_id, None, 1)
    assert harness.groups.heartbeat("g", one.member_id, None, 1) is E.REBALANCE_IN_PROGRESS
    assert harness.groups.heartbeat("g", two.member_id, None, 1) is E.UNKNOWN_MEMBER_ID
    rejoined = await answer(await harness.join(one.member_id))
    assert (rejoined.error, rejoined.generation, rejoined.leader) == (E.NONE, 2, one.member_id)
    assert harness.groups.heartbeat("g", one.member_id, None, 1) is E.ILLEGAL_GENERATION


def test_members_that_miss_the_rebalance_are_removed() -> None:
    run(_members_that_miss_the_rebalance_are_removed)


async def _members_that_miss_the_rebalance_are_removed(harness: Harness) -> None:
    one, two = await _stable_pair(harness)
    rejoin = await harness.join(one.member_id)  # the leader rejoins: a rebalance starts
    assert harness.groups.heartbeat("g", two.member_id, None, 1) is E.REBALANCE_IN_PROGRESS
    for _ in range(REBALANCE_MS // 2000):  # the follower heartbeats but never rejoins
        await harness.advance(2000)
        harness.groups.heartbeat("g", two.member_id, None, 1)
    joined = await answer(rejoin)
    assert (joined.generation, joined.leader) == (2, one.member_id)
    assert [m.member_id for m in joined.members] == [one.member_id]
    assert harness.groups.heartbeat("g", two.member_id, None, 1) is E.UNKNOWN_MEMBER_ID


def test_a_repeated_join_supersedes_the_waiting_one() -> None:
    run(_a_repeated_join_supersedes_the_waiting_one)


async def _a_repeated_join_supersedes_the_waiting_one(harness: Harness) -> None:
    first = await harness.member()
    group = harness.groups.group("g")
    assert group is not None
    member_id = next(iter(group.members))
    again = await harness.join(member_id)
    assert (await answer(first)).error is E.REBALANCE_IN_PROGRESS
    await harness.advance(DELAY_MS)
    assert (await answer(again)).generation == 1


def test_commits_are_checked_against_members_and_generations() -> None:
    run(_commits_are_checked_against_members_and_generations)


async def _commits_are_checked_against_members_and_generations(harness: Harness) -> None:
    offsets = {TP0: OffsetToCommit(5, 0, "m")}
    commit = harness.groups.commit_offsets
    assert await commit("solo", -1, "", None, offsets) == {TP0: E.NONE}
    assert await commit("solo", 3, "someone", None, offsets) == {TP0: E.ILLEGAL_GENERATION}
    one, _ = await _stable_pair(harness)
    assert await commit("g", -1, "", None, offsets) == {TP0: E.UNKNOWN_MEMBER_ID}
    assert await commit("g", 0, one.member_id, None, offsets) == {TP0: E.ILLEGAL_GENERATION}
    mixed = {
        TP0: OffsetToCommit(7, 0, None),
        TopicPartition("t", 9): OffsetToCommit(1, 0, None),
        TopicPartition("t", 1): OffsetToCommit(1, 0, "x" * 5000),
    }
    assert await commit("g", 1, one.member_id, None, mixed) == {
        TP0: E.NONE,
        TopicPartition("t", 9): E.UNKNOWN_TOPIC_OR_PARTITION,
        TopicPartition("t", 1): E.OFFSET_METADATA_TOO_LARGE,
    }
    fetched = await harness.groups.fetch_offsets("g", None)
    assert list(fetched) == [TP0] and fetched[TP0].offset == 7
    assert (await harness.groups.fetch_offsets("solo", [TP0]))[TP0].metadata == "m"


def test_offsets_of_empty_groups_expire_after_the_retention() -> None:
    run(_offsets_of_empty_groups_expire_after_the_retention)


async def _offsets_of_empty_groups_expire_after_the_retention(harness: Harness) -> None:
    one, two = await _stable_pair(harness)
    await harness.groups.commit_offsets(
        "g", 1, one.member_id, None, {TP0: OffsetToCommit(3, 0, None)}
    )
    harness.groups.leave("g", [(one.member_id, None), (two.member_id, None)])
    await harness.settle()
    group = harness.groups.group("g")
    assert group is not None and group.state is GroupState.EMPTY
    await harness.advance(RETENTION_MS - 2 * CHECK_MS, step_ms=1000)
    assert await harness.groups.fetch_offsets("g", None)  # empty for less than the retention
    await harness.advance(3 * CHECK_MS, step_ms=1000)
    assert await harness.groups.fetch_offsets("g", None) == {}
    assert (await harness.groups.describe("g")).state is GroupState.DEAD


def test_delete_list_and_describe() -> None:
    run(_delete_list_and_describe)


async def _delete_list_and_describe(harness: Harness) -> None:
    await harness.groups.commit_offsets("solo", -1, "", None, {TP0: OffsetToCommit(1, -1, None)})
    one, two = await _stable_pair(harness)
    listed = {g.group_id: g.state for g in await harness.groups.list_groups()}
    assert listed == {"g": GroupState.STABLE, "solo": GroupState.EMPTY}
    assert await harness.groups.delete_group("g") is E.NON_EMPTY_GROUP
    assert await harness.groups.delete_group("nothing") is E.GROUP_ID_NOT_FOUND
    assert await harness.groups.delete_group("solo") is E.NONE
    assert await harness.groups.fetch_offsets("solo", None) == {}
    assert [m.member_id for m in (await harness.groups.describe("g")).members] == [
        one.member_id,
        two.member_id,
    ]


def test_the_group_bound_refuses_new_groups_while_all_are_busy() -> None:
    run(_group_bound, groups_max=1, group_initial_rebalance_delay_ms=0)


async def _group_bound(harness: Harness) -> None:
    request = JoinRequest(
        "", None, "c", "h", SESSION_MS, REBALANCE_MS, "consumer", (("range", b""),), 3
    )
    busy = await answer(harness.groups.join("busy", request))
    assert busy.error is E.NONE
    refused = await answer(harness.groups.join("other", request))
    assert refused.error is E.COORDINATOR_NOT_AVAILABLE
    harness.groups.leave("busy", [(busy.member_id, None)])
    assert (await answer(harness.groups.join("other", request))).error is E.NONE


def test_empty_groups_without_offsets_are_forgotten() -> None:
    run(_empty_groups_forgotten)


async def _empty_groups_forgotten(harness: Harness) -> None:
    one, two = await _stable_pair(harness)
    harness.groups.leave("g", [(one.member_id, None), (two.member_id, None)])
    assert [g.state for g in await harness.groups.list_groups()] == [GroupState.EMPTY]
    await harness.advance(2 * CHECK_MS)
    assert harness.groups.group("g") is None
    assert await harness.groups.list_groups() == []


def test_a_restarted_coordinator_never_hands_out_a_generation_twice() -> None:
    run(
        _a_restarted_coordinator_never_hands_out_a_generation_twice,
        group_initial_rebalance_delay_ms=0,
    )


async def _a_restarted_coordinator_never_hands_out_a_generation_twice(harness: Harness) -> None:
    before = await answer(await harness.member())
    assert before.generation == 1
    await harness.groups.close()  # the agent restarts: membership is gone, the store stays
    settings = Settings(group_initial_rebalance_delay_ms=0)
    harness.groups = GroupCoordinator(
        settings, harness.clock, SeededRng(2), topics=harness.metadata, groups=harness.metadata
    )
    harness.groups.start()
    after = await answer(await harness.member())
    assert after.error is E.NONE and after.generation > before.generation


def test_generation_reservations_never_overlap_and_a_failed_one_is_retriable() -> None:
    run(_generation_reservations_never_overlap_and_a_failed_one_is_retriable)


async def _generation_reservations_never_overlap_and_a_failed_one_is_retriable(
    harness: Harness,
) -> None:
    first = await harness.metadata.reserve_group_generations("other", 10)
    second = await harness.metadata.reserve_group_generations("other", 10)
    assert second >= first + 10
    assert await harness.metadata.reserve_group_generations("third", 1) == 1
    harness.metadata.faults = MetadataFaults(unavailable_rate=1.0)
    refused = await answer(await harness.join())
    assert refused.error is E.COORDINATOR_NOT_AVAILABLE


class SlowFirstCommit(SimMetadataStore):
    """A metadata store whose first offset commit waits until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.commits = 0

    async def commit_offsets(
        self,
        group_id: str,
        offsets: Mapping[TopicPartition, CommittedOffset],
        fence: CoordinatorFence | None = None,
    ) -> None:
        self.commits += 1
        if self.commits == 1:
            await self.release.wait()
        await super().commit_offsets(group_id, offsets, fence)


def test_commits_of_one_group_land_in_the_order_they_were_accepted() -> None:
    async def main() -> None:
        metadata = SlowFirstCommit()
        await metadata.create_topic("t", 2, {}, 0)
        groups = GroupCoordinator(
            Settings(), VirtualClock(), SeededRng(1), topics=metadata, groups=metadata
        )
        first = asyncio.ensure_future(
            groups.commit_offsets("solo", -1, "", None, {TP0: OffsetToCommit(33, -1, None)})
        )
        await asyncio.sleep(0)
        second = asyncio.ensure_future(
            groups.commit_offsets("solo", -1, "", None, {TP0: OffsetToCommit(36, -1, None)})
        )
        for _ in range(SETTLE_ROUNDS):
            await asyncio.sleep(0)
        assert not second.done()  # waits behind the slow first write
        metadata.release.set()
        assert await first == await second == {TP0: E.NONE}
        assert (await metadata.fetch_offsets("solo"))[TP0].offset == 36

    asyncio.run(main())
