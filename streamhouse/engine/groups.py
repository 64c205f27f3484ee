"""The group coordinator: runs every group's state machine on the Clock port and keeps offsets.

It holds the JoinGroup and SyncGroup requests that wait for a rebalance, fires each
group's deadlines (session and rebalance timeouts, the initial rebalance delay) from one
timer task, checks OffsetCommits against the group's generation and members, stores
committed offsets in the metadata store, and expires the offsets of groups that have
been empty for `offsets_retention_ms`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from streamhouse.config import Settings
from streamhouse.engine.failure import AgentFailure
from streamhouse.engine.waiting import sleep_or_until
from streamhouse.errors import ErrorCode, NotCoordinator, StorageError
from streamhouse.log.group_state import (
    Effects,
    Group,
    GroupLimits,
    GroupState,
    GroupSummary,
    JoinRequest,
    JoinResponse,
    MemberLeave,
    MemberSummary,
    SyncResponse,
)
from streamhouse.names import TopicPartition
from streamhouse.ports.clock import Clock
from streamhouse.ports.groups import CommittedOffset, CoordinatorFence, GroupStore, OffsetToCommit
from streamhouse.ports.rng import Rng
from streamhouse.ports.topics import TopicStore
from streamhouse.ports.transactions import TransactionStore

MEMBER_ID_RANDOM_BYTES = 16
TIMER_IDLE_MS = 60_000  # how long the timer task sleeps when no group has a deadline
GENERATIONS_PER_RESERVATION = 1_000  # generation numbers reserved in the metadata store at once
GENERATIONS_LEFT_MIN = 100  # reserve more before a join when fewer than this are left
Answer = TypeVar("Answer", JoinResponse, SyncResponse)


@dataclass(frozen=True)
class Committer:
    """Who commits offsets: a member of a generation, or (generation -1, no member id) a
    standalone consumer; `unchecked` for a transactional commit that names no member."""

    generation: int
    member_id: str
    instance_id: str | None
    unchecked: bool = False


class OffsetWriter(Protocol):
    """Where accepted offsets go: the group's committed ones, or a transaction's pending."""

    async def __call__(
        self,
        group_id: str,
        accepted: dict[TopicPartition, CommittedOffset],
        fence: CoordinatorFence | None,
    ) -> None: ...


class Coordination(Protocol):
    """Which groups this agent coordinates (engine/coordinators.py)."""

    def fence(self, key: str) -> CoordinatorFence | None:
        """The fence this agent coordinates the key under; None: another agent does."""

    async def take(self, key: str) -> None:
        """Take the key's slot if it is placed here and nobody holds it (a handover's gap
        closes at the first request instead of at the next ownership round)."""


class GroupCoordinator:
    """Every group this agent coordinates."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        rng: Rng,
        *,
        topics: TopicStore,
        groups: GroupStore,
        coordinating: Coordination | None = None,
        pending: TransactionStore | None = None,
    ):
        self._settings = settings
        # the fence this agent coordinates a group under, None when another agent does
        # (engine/coordinators.py); without it, every group is coordinated here, unfenced
        self._coordinating = coordinating
        self._slot_epochs: dict[str, int] = {}  # the slot epoch each group's state was kept in
        self._clock = clock
        self._rng = rng
        self._topics = topics
        self._group_store = groups
        self._pending = pending  # offsets of open transactions (TxnOffsetCommit)
        self._limits = GroupLimits.of(settings)
        self._groups: dict[str, Group] = {}
        self._joins: dict[tuple[str, str], asyncio.Future[JoinResponse]] = {}
        self._syncs: dict[tuple[str, str], asyncio.Future[SyncResponse]] = {}
        self._deadlines: list[tuple[int, str]] = []  # heap of (monotonic ms, group id)
        self._scheduled: dict[str, int] = {}  # the earliest deadline queued per group
        self._empty_since_ms: dict[str, int] = {}  # wall time each in-memory group became empty
        self._reserved_last: dict[str, int] = {}  # the last generation reserved per group
        self._reserving: dict[str, asyncio.Lock] = {}
        self._committing: dict[str, asyncio.Lock] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, failure: AgentFailure | None = None) -> None:
        """Start the timer and the offset retention tasks; should one of them ever stop on
        its own, it fails the agent through `failure` (without one, it is only logged)."""
        failure = failure or AgentFailure()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run_timers(), name="group-timers"),
            loop.create_task(self._run_retention(), name="group-offset-retention"),
        ]
        for task in self._tasks:
            failure.watch(task)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for waiters in (self._joins, self._syncs):
            for future in waiters.values():
                future.cancel()

    # --- membership ------------------------------------------------------------------------

    def group(self, group_id: str) -> Group | None:
        """The in-memory state of a group, if it has any (for inspection and tests)."""
        return self._groups.get(group_id)

    async def join(self, group_id: str, request: JoinRequest) -> JoinResponse:
        """Handle a JoinGroup; waits until the rebalance it takes part in has its answer."""
        if not group_id:
            return JoinResponse(ErrorCode.INVALID_GROUP_ID, member_id=request.member_id)
        await self._take(group_id)
        if not self._coordinates(group_id):
            return JoinResponse(ErrorCode.NOT_COORDINATOR, member_id=request.member_id)
        try:
            group = await self._group_for_join(group_id)
        except StorageError:
            group = None  # the generation reservation failed: the client retries
        if group is None:
            return JoinResponse(ErrorCode.COORDINATOR_NOT_AVAILABLE, member_id=request.member_id)
        fresh_id = str(uuid.UUID(bytes=self._rng.randbytes(MEMBER_ID_RANDOM_BYTES)))
        outcome = group.join(request, fresh_id, self._clock.monotonic_ms())
        waiter = None
        if outcome.reply is None:
            superseded = JoinResponse(ErrorCode.REBALANCE_IN_PROGRESS, outcome.member_id)
            waiter = self._waiter(self._joins, group_id, outcome.member_id, superseded)
        self._apply(group, outcome.effects)
        if outcome.reply is not None:
            return outcome.reply
        assert waiter is not None
        return await waiter

    async def sync(
        self,
        group_id: str,
        member_id: str,
        instance_id: str | None,
        generation: int,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: Mapping[str, bytes],
    ) -> SyncResponse:
        """Handle a SyncGroup; followers wait for the leader's assignments."""
        await self._take(group_id)
        if not self._coordinates(group_id):
            return SyncResponse(ErrorCode.NOT_COORDINATOR)
        group = self._groups.get(group_id)
        if group is None:
            return SyncResponse(ErrorCode.UNKNOWN_MEMBER_ID)
        outcome = group.sync(
            member_id,
            instance_id,
            generation,
            protocol_type,
            protocol_name,
            dict(assignments),
            self._clock.monotonic_ms(),
        )
        waiter = None
        if outcome.reply is None:
            superseded = SyncResponse(ErrorCode.REBALANCE_IN_PROGRESS)
            waiter = self._waiter(self._syncs, group_id, member_id, superseded)
        self._apply(group, outcome.effects)
        if outcome.reply is not None:
            return outcome.reply
        assert waiter is not None
        return await waiter

    def heartbeat(
        self, group_id: str, member_id: str, instance_id: str | None, generation: int
    ) -> ErrorCode:
        if not self._coordinates(group_id):
            return ErrorCode.NOT_COORDINATOR
        group = self._groups.get(group_id)
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        error, effects = group.heartbeat(
            member_id, instance_id, generation, self._clock.monotonic_ms()
        )
        self._apply(group, effects)
        return error

    def leave(self, group_id: str, leaving: list[tuple[str, str | None]]) -> list[MemberLeave]:
        if not self._coordinates(group_id):
            return [MemberLeave(m, i, ErrorCode.NOT_COORDINATOR) for m, i in leaving]
        group = self._groups.get(group_id)
        if group is None:
            return [MemberLeave(m, i, ErrorCode.UNKNOWN_MEMBER_ID) for m, i in leaving]
        answers, effects = group.leave(leaving, self._clock.monotonic_ms())
        self._apply(group, effects)
        return answers

    async def _take(self, group_id: str) -> None:
        if self._coordinating is not None:
            await self._coordinating.take(group_id)

    def _coordinates(self, group_id: str) -> bool:
        try:
            self._fence(group_id)
        except NotCoordinator:
            return False
        return True

    def _fence(self, group_id: str) -> CoordinatorFence | None:
        """The fence this agent coordinates the group under (None: no slots, unfenced).
        Raises NotCoordinator when another agent coordinates it. State kept from an earlier
        hold of the group's slot is dropped first: the slot's holder meanwhile may have
        moved the group on."""
        if self._coordinating is None:
            return None
        fence = self._coordinating.fence(group_id)
        kept = self._slot_epochs.get(group_id)
        if fence is None or (kept is not None and kept != fence.epoch):
            self._drop(group_id)
        if fence is None:
            raise NotCoordinator(
                f"group {group_id!r} is coordinated by another agent; find its coordinator again"
            )
        return fence

    def _note_slot_epoch(self, group_id: str) -> None:
        fence = None if self._coordinating is None else self._coordinating.fence(group_id)
        if fence is not None:
            self._slot_epochs[group_id] = fence.epoch

    def _drop(self, group_id: str) -> None:
        """Forget a group this agent no longer coordinates, answering its waiting members
        NOT_COORDINATOR (they find the coordinator again and rejoin there)."""
        for (waiting_group, member_id), join in list(self._joins.items()):
            if waiting_group == group_id and not join.done():
                join.set_result(JoinResponse(ErrorCode.NOT_COORDINATOR, member_id))
        for (waiting_group, _), sync in list(self._syncs.items()):
            if waiting_group == group_id and not sync.done():
                sync.set_result(SyncResponse(ErrorCode.NOT_COORDINATOR))
        self._forget(group_id)

    async def _group_for_join(self, group_id: str) -> Group | None:
        """The group, created on first join; its generations come from reservations in the
        metadata store, so a restarted coordinator never hands one out twice."""
        async with self._reserving.setdefault(group_id, asyncio.Lock()):
            group = self._groups.get(group_id)
            if group is None:
                if len(self._groups) >= self._settings.groups_max and not self._evict_one():
                    return None
                first = await self._group_store.reserve_group_generations(
                    group_id, GENERATIONS_PER_RESERVATION
                )
                group = Group(group_id, self._limits, generation=first - 1)
                self._reserved_last[group_id] = first + GENERATIONS_PER_RESERVATION - 1
                self._groups[group_id] = group
                self._note_slot_epoch(group_id)
                self._empty_since_ms[group_id] = self._clock.now_ms()
            elif self._reserved_last[group_id] - group.generation < GENERATIONS_LEFT_MIN:
                first = await self._group_store.reserve_group_generations(
                    group_id, GENERATIONS_PER_RESERVATION
                )
                # Contiguous while this agent coordinates the group; after a move, jump above.
                group.generation = max(group.generation, first - 1)
                self._reserved_last[group_id] = first + GENERATIONS_PER_RESERVATION - 1
            return group

    def _evict_one(self) -> bool:
        """Forget one idle empty group (its offsets stay in the metadata store)."""
        for group_id, group in self._groups.items():
            if group.state is GroupState.EMPTY and not group.pending_members:
                self._forget(group_id)
                return True
        return False

    def _forget(self, group_id: str) -> None:
        group = self._groups.pop(group_id, None)
        if group is not None and not group.members:
            group.mark_dead()
        self._empty_since_ms.pop(group_id, None)
        self._reserved_last.pop(group_id, None)
        self._slot_epochs.pop(group_id, None)
        for locks in (self._reserving, self._committing):
            lock = locks.get(group_id)
            if lock is not None and not lock.locked():
                del locks[group_id]
        self._scheduled.pop(group_id, None)

    def _waiter(
        self,
        waiters: dict[tuple[str, str], asyncio.Future[Answer]],
        group_id: str,
        member_id: str,
        superseded: Answer,
    ) -> asyncio.Future[Answer]:
        """A future for the answer owed to a member; a request it already waited with is
        answered `superseded` (every request gets an answer: responses leave in order)."""
        old = waiters.pop((group_id, member_id), None)
        if old is not None and not old.done():
            old.set_result(superseded)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        waiters[(group_id, member_id)] = future
        return future

    def _apply(self, group: Group, effects: Effects) -> None:
        """Deliver the answers a state machine step produced and queue its next deadline."""
        for member_id, join in effects.joins.items():
            join_future = self._joins.pop((group.group_id, member_id), None)
            if join_future is not None and not join_future.done():
                join_future.set_result(join)
        for member_id, sync in effects.syncs.items():
            sync_future = self._syncs.pop((group.group_id, member_id), None)
            if sync_future is not None and not sync_future.done():
                sync_future.set_result(sync)
        if group.state is GroupState.EMPTY:
            self._empty_since_ms.setdefault(group.group_id, self._clock.now_ms())
        else:
            self._empty_since_ms.pop(group.group_id, None)
        deadline = effects.deadline_ms
        scheduled = self._scheduled.get(group.group_id)
        if deadline is not None and (scheduled is None or deadline < scheduled):
            self._scheduled[group.group_id] = deadline
            heapq.heappush(self._deadlines, (deadline, group.group_id))
            if self._deadlines[0] == (deadline, group.group_id):
                self._wake.set()

    def expire_due(self) -> None:
        """Run `expire` on every group whose queued deadline has passed."""
        now_ms = self._clock.monotonic_ms()
        while self._deadlines and self._deadlines[0][0] <= now_ms:
            deadline, group_id = heapq.heappop(self._deadlines)
            if self._scheduled.get(group_id) != deadline:
                continue  # superseded by an earlier deadline that already ran
            del self._scheduled[group_id]
            group = self._groups.get(group_id)
            if group is not None:
                self._apply(group, group.expire(now_ms))

    async def _run_timers(self) -> None:
        while True:
            self.expire_due()
            self._wake.clear()
            now_ms = self._clock.monotonic_ms()
            wait_ms = self._deadlines[0][0] - now_ms if self._deadlines else TIMER_IDLE_MS
            await sleep_or_until(self._clock, max(wait_ms, 0), self._wake.wait())

    # --- offsets ---------------------------------------------------------------------------

    async def commit_offsets(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        instance_id: str | None,
        offsets: Mapping[TopicPartition, OffsetToCommit],
    ) -> dict[TopicPartition, ErrorCode]:
        """Validate and store an OffsetCommit; the answer for each partition. Commits of one
        group are checked and written one at a time: a commit validated in an old generation
        whose write was slow must not land after a later generation's commit."""
        await self._take(group_id)
        async with self._committing.setdefault(group_id, asyncio.Lock()):
            member = Committer(generation, member_id, instance_id)
            return await self._commit_offsets(group_id, member, offsets, self._store_offsets)

    async def commit_txn_offsets(
        self,
        group_id: str,
        producer_id: int,
        committer: Committer,
        offsets: Mapping[TopicPartition, OffsetToCommit],
    ) -> dict[TopicPartition, ErrorCode]:
        """Validate and keep a TxnOffsetCommit's offsets until the producer's transaction
        ends (the transaction coordinator settles them with its decision). The member is
        checked as for OffsetCommit when the request names one (KIP-447); a request without
        generation and member (older clients) is not checked."""
        if self._pending is None:
            return dict.fromkeys(offsets, ErrorCode.COORDINATOR_NOT_AVAILABLE)
        pending = self._pending

        async def keep(
            group_id: str,
            accepted: dict[TopicPartition, CommittedOffset],
            fence: CoordinatorFence | None,
        ) -> None:
            await pending.commit_pending_offsets(group_id, producer_id, accepted, fence)

        await self._take(group_id)
        async with self._committing.setdefault(group_id, asyncio.Lock()):
            return await self._commit_offsets(group_id, committer, offsets, keep)

    async def _store_offsets(
        self,
        group_id: str,
        accepted: dict[TopicPartition, CommittedOffset],
        fence: CoordinatorFence | None,
    ) -> None:
        await self._group_store.commit_offsets(group_id, accepted, fence)

    async def _commit_offsets(
        self,
        group_id: str,
        member: Committer,
        offsets: Mapping[TopicPartition, OffsetToCommit],
        write: OffsetWriter,
    ) -> dict[TopicPartition, ErrorCode]:
        try:
            fence = self._fence(group_id)
        except NotCoordinator:
            return dict.fromkeys(offsets, ErrorCode.NOT_COORDINATOR)
        error = self._check_committer(group_id, member)
        if error is not ErrorCode.NONE:
            return dict.fromkeys(offsets, error)
        answers: dict[TopicPartition, ErrorCode] = {}
        now_ms = self._clock.now_ms()
        accepted: dict[TopicPartition, CommittedOffset] = {}
        counts: dict[str, int | None] = {}
        for tp, wanted in offsets.items():
            if tp.topic not in counts:
                topic = await self._topics.get_topic(tp.topic)
                counts[tp.topic] = None if topic is None else topic.partition_count
            count = counts[tp.topic]
            metadata_bytes = len((wanted.metadata or "").encode())
            if count is None or not 0 <= tp.partition < count:
                answers[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            elif metadata_bytes > self._settings.offset_metadata_max_bytes:
                answers[tp] = ErrorCode.OFFSET_METADATA_TOO_LARGE
            else:
                accepted[tp] = CommittedOffset(
                    wanted.offset, wanted.leader_epoch, wanted.metadata, now_ms
                )
                answers[tp] = ErrorCode.NONE
        if accepted:
            # the topic lookups above awaited: the group may have moved on meanwhile
            error = self._check_committer(group_id, member)
            if error is not ErrorCode.NONE:
                return dict.fromkeys(offsets, error)
            await write(group_id, accepted, fence)
        return answers

    def _check_committer(self, group_id: str, member: Committer) -> ErrorCode:
        if member.unchecked and group_id:
            return ErrorCode.NONE
        return self._check_commit(group_id, member.generation, member.member_id, member.instance_id)

    def _check_commit(
        self, group_id: str, generation: int, member_id: str, instance_id: str | None
    ) -> ErrorCode:
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID
        group = self._groups.get(group_id)
        if group is None:
            standalone = generation < 0 and not member_id
            return ErrorCode.NONE if standalone else ErrorCode.ILLEGAL_GENERATION
        error = group.check_commit(member_id, instance_id, generation, self._clock.monotonic_ms())
        self._apply(group, Effects(deadline_ms=group.next_deadline_ms()))
        return error

    async def fetch_offsets(
        self, group_id: str, partitions: Sequence[TopicPartition] | None
    ) -> dict[TopicPartition, CommittedOffset]:
        """The group's committed offsets for `partitions` (None: every one it has). Raises
        NotCoordinator when another agent coordinates the group."""
        await self._take(group_id)
        self._fence(group_id)
        return await self._group_store.fetch_offsets(group_id, partitions)

    async def pending_partitions(self, group_id: str) -> set[TopicPartition]:
        """The group's partitions with offsets pending in an open transaction (TxnOffsetCommit
        before its EndTxn), whose committed offset is not stable yet."""
        if self._pending is None:
            return set()
        pending = await self._pending.pending_offsets(group_id)
        return {tp for offsets in pending.values() for tp in offsets}

    async def delete_offsets(self, group_id: str, partitions: Sequence[TopicPartition]) -> None:
        await self._group_store.delete_offsets(group_id, partitions)

    async def expire_offsets(self) -> int:
        """Drop the offsets of groups empty for `offsets_retention_ms`; returns rows removed.

        Empty groups without offsets are forgotten at once (as Kafka's cleanup does). A
        group this agent saw become empty is counted from then; one it knows only from its
        offsets (e.g. after a restart, or standalone commits) by each offset's commit.
        """
        now_ms = self._clock.now_ms()
        retention_ms = self._settings.offsets_retention_ms
        removed = 0
        with_offsets = await self._group_store.list_offset_groups()
        for group_id in set(self._groups) - set(with_offsets):  # empty and nothing to keep
            idle = self._groups[group_id]
            if idle.state is GroupState.EMPTY and not idle.pending_members:
                self._forget(group_id)
        for group_id in with_offsets:
            group = self._groups.get(group_id)
            if group is not None and group.state is not GroupState.EMPTY:
                continue
            since_ms = self._empty_since_ms.get(group_id)
            if since_ms is None:
                removed += await self._group_store.expire_offsets(group_id, now_ms - retention_ms)
            elif now_ms - since_ms >= retention_ms:
                removed += await self._group_store.expire_offsets(group_id, now_ms + 1)
                if group is not None and not group.pending_members:
                    self._forget(group_id)
        return removed

    async def _run_retention(self) -> None:
        while True:
            await self._clock.sleep_ms(self._settings.offsets_retention_check_interval_ms)
            with contextlib.suppress(StorageError):  # the metadata store is down: next round
                await self.expire_offsets()

    # --- inspection and deletion ---------------------------------------------------------

    async def describe(self, group_id: str) -> GroupSummary:
        """The group's state, protocol and members (Dead when it has neither members nor
        committed offsets). Raises NotCoordinator when another agent coordinates the group:
        only its coordinator knows its members."""
        await self._take(group_id)
        self._fence(group_id)
        group = self._groups.get(group_id)
        if group is None or group.state is GroupState.DEAD:
            has_offsets = bool(await self._group_store.fetch_offsets(group_id))
            state = GroupState.EMPTY if has_offsets else GroupState.DEAD
            return GroupSummary(group_id, state, "", "")
        stable = group.state is GroupState.STABLE and group.protocol_name is not None
        members = tuple(
            MemberSummary(
                m.member_id,
                m.instance_id,
                m.client_id,
                m.client_host,
                m.metadata_for(group.protocol_name) if stable and group.protocol_name else b"",
                m.assignment if stable else b"",
            )
            for m in group.members.values()
        )
        return GroupSummary(
            group_id,
            group.state,
            group.protocol_type or "",
            group.protocol_name if stable and group.protocol_name else "",
            members,
        )

    def subscriptions(self, group_id: str) -> list[bytes]:
        """The protocol metadata of every member, for each protocol it offers."""
        group = self._groups.get(group_id)
        if group is None:
            return []
        return [data for m in group.members.values() for _, data in m.protocols]

    async def list_groups(self) -> list[GroupSummary]:
        """Every group with members or committed offsets, sorted by id."""
        found = {
            group_id: GroupSummary(group_id, group.state, group.protocol_type or "", "")
            for group_id, group in self._groups.items()
            if group.state is not GroupState.DEAD
        }
        for group_id in await self._group_store.list_offset_groups():
            found.setdefault(group_id, GroupSummary(group_id, GroupState.EMPTY, "", ""))
        return [found[group_id] for group_id in sorted(found)]

    async def delete_group(self, group_id: str) -> ErrorCode:
        """Delete an empty group and its offsets."""
        group = self._groups.get(group_id)
        if group is not None and (group.members or group.pending_members):
            return ErrorCode.NON_EMPTY_GROUP
        if group is None and not await self._group_store.fetch_offsets(group_id):
            return ErrorCode.GROUP_ID_NOT_FOUND
        self._forget(group_id)
        await self._group_store.delete_group_offsets(group_id)
        return ErrorCode.NONE
