"""One consumer group member driven in-process against the group's coordinator, for doors whose
clients keep no Kafka session (Confluent REST v2 consumer instances, gRPC consume-from-group).
The coordinator is this agent's or another's (`GroupCalls`, engine/group_calls.py): the member
does not care which.

It is a member as a Kafka consumer is one: its JoinGroup metadata is a consumer protocol
Subscription offering "range" and "roundrobin", so a Kafka client leader can assign to it;
when it leads, it assigns with the protocol the group chose; it reads the Assignment any
leader gives it, heartbeats, rejoins when the group rebalances, commits with its generation
and leaves on close. Eager rebalancing: a rejoin first gives up the whole assignment.

Names are internal throughout (`acme:orders`); what other members see in the metadata and
assignments is the group's org's view (`orders`), as the Kafka door shows them to its clients.
Manual ("simple consumer") commits, without membership, are `commit_offsets` with no member.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from streamhouse.engine.admin import AdminService
from streamhouse.engine.group_calls import CoordinatedElsewhere
from streamhouse.engine.waiting import CLIENT_RETRY_BACKOFF_MS, sleep_or_until
from streamhouse.errors import ErrorCode, StorageError, StreamHouseError, UnknownTopicOrPartition
from streamhouse.kafka.consumer_protocol import (
    Assignment,
    MalformedConsumerProtocol,
    Subscription,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from streamhouse.kafka.sentinels import NO_GENERATION, NO_LEADER_EPOCH
from streamhouse.log.assignors import ASSIGNORS, RANGE, ROUNDROBIN, AssignorMember
from streamhouse.log.group_state import JoinRequest, JoinResponse, SyncRequest, SyncResponse
from streamhouse.names import TopicPartition
from streamhouse.ports.clock import Clock
from streamhouse.ports.groups import OffsetToCommit
from streamhouse.ports.peers import GroupCalls
from streamhouse.tenancy.names import org_of, scoped, unscoped

log = logging.getLogger(__name__)

CONSUMER_PROTOCOL_TYPE = "consumer"
OFFERED_ASSIGNORS = (RANGE, ROUNDROBIN)  # in order of preference, as Kafka clients offer them
JOIN_GROUP_VERSION = 5  # a first join is sent back for a member id (KIP-394), as clients do
ANSWER_WAIT_MARGIN_MS = 5_000  # beyond the rebalance timeout, before a join or sync is given up
LEAVE_WAIT_MS = 5_000  # for a LeaveGroup's answer on close (the coordinator may be another agent)
Answer = TypeVar("Answer")
Revoke = Callable[[frozenset[TopicPartition]], Awaitable[None]]


@dataclass(frozen=True)
class MemberTimeouts:
    """Kafka's session.timeout.ms, max.poll.interval.ms (the rebalance timeout) and
    heartbeat.interval.ms for one member; Kafka's client defaults."""

    session_timeout_ms: int = 45_000
    rebalance_timeout_ms: int = 300_000
    heartbeat_interval_ms: int = 3_000

    def __post_init__(self) -> None:
        assert 0 < self.heartbeat_interval_ms < self.session_timeout_ms, self
        assert self.rebalance_timeout_ms > 0, self


DEFAULT_TIMEOUTS = MemberTimeouts()


class _Step(enum.Enum):
    """What the member loop does after an answer."""

    REJOIN = "join again, same member id"
    REJOIN_FRESH = "join again as a new member"
    BACK_OFF = "wait a retry backoff, then join again"


# Answers that only mean "the group moved on": the member joins again.
_REJOIN = {ErrorCode.REBALANCE_IN_PROGRESS, ErrorCode.ILLEGAL_GENERATION}
_REJOIN_FRESH = {ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.FENCED_INSTANCE_ID}
_RETRY = {ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS}


class GroupMember:
    """One member of a consumer group, run by a background task of the caller's loop."""

    def __init__(
        self,
        coordinator: GroupCalls,
        admin: AdminService,
        clock: Clock,
        group_id: str,
        *,
        client_id: str = "streamhouse",
        client_host: str = "",
        timeouts: MemberTimeouts = DEFAULT_TIMEOUTS,
        on_revoke: Revoke | None = None,
    ) -> None:
        self._coordinator = coordinator
        self._admin = admin
        self._clock = clock
        self.group_id = group_id
        self._org = org_of(group_id)
        self._client_id = client_id
        self._client_host = client_host
        self._timeouts = timeouts
        self._on_revoke = on_revoke  # run before a rejoin or leave gives the partitions up
        self._topics: frozenset[str] = frozenset()
        self.member_id = ""
        self.generation = NO_GENERATION
        self._assignment: frozenset[TopicPartition] = frozenset()
        self._assigned = asyncio.Event()
        self._rejoin = asyncio.Event()  # the subscription changed: join again now
        self._failure: StreamHouseError | None = None
        self._task: asyncio.Task[None] | None = None
        self._call_in_flight: asyncio.Future[Any] | None = None  # the coordinator call
        self._closing = False  # close() has begun
        self._closed = False  # the member has left: calls are refused

    # --- public --------------------------------------------------------------------------

    def subscribe(self, topics: Collection[str]) -> None:
        """Subscribe to `topics` (internal names of the group's org), replacing the previous
        subscription; starts the member on first call, rejoins the group on a change."""
        self._check_open()
        wanted = frozenset(topics)
        assert wanted, "subscribe to at least one topic (close the member to stop)"
        foreign = sorted(t for t in wanted if unscoped(self._org, t) is None)
        if foreign:
            raise UnknownTopicOrPartition(
                f"topics {foreign} are not of the group {self.group_id!r}'s org {self._org!r}"
            )
        if wanted == self._topics:
            return
        self._topics = wanted
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"group-member-{self.group_id}"
            )
        else:
            self._rejoin.set()

    def subscription(self) -> frozenset[str]:
        return self._topics

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions of the current generation (empty while the group rebalances)."""
        return self._assignment

    async def wait_assigned(self, timeout_ms: int) -> bool:
        """Wait until the member has an assignment of a stable generation (possibly empty) or
        `timeout_ms` passes; False on time. Raises the error that stopped the member."""
        self._check_open()
        if not self._assigned.is_set():
            await sleep_or_until(self._clock, timeout_ms, self._assigned.wait())
        self._check_open()
        return self._assigned.is_set()

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit `offsets` (the next offset to read, per partition) in the current
        generation; a commit the group fenced raises with its Kafka code."""
        self._check_open()
        if self.generation == NO_GENERATION or not self.member_id:
            raise StreamHouseError(
                f"group {self.group_id!r}: this member has not joined yet (a rebalance is in "
                "progress); commit once it has an assignment",
                ErrorCode.REBALANCE_IN_PROGRESS,
            )
        await commit_offsets(
            self._coordinator, self.group_id, offsets, self.generation, self.member_id
        )

    async def committed(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offsets of `partitions` (those with one)."""
        return await committed_offsets(self._coordinator, self.group_id, partitions)

    async def close(self) -> None:
        """Give the assignment up (the revoke callback runs) and leave the group."""
        if self._closing:
            return
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._learn_member_id()
        if self._failure is None:
            await self._revoke()  # still a member: the callback may commit
        self._closed = True
        if self.member_id:
            await self._leave()
        self.member_id = ""
        self.generation = NO_GENERATION

    async def _learn_member_id(self) -> None:
        """A first JoinGroup the coordinator took while this member closed made it a pending
        member, which would hold the group's next rebalance until its session expired: wait
        (LEAVE_WAIT_MS at most) for the member id it was given, so the leave removes it."""
        in_flight, self._call_in_flight = self._call_in_flight, None
        if in_flight is None or self.member_id:
            if in_flight is not None:
                in_flight.cancel()
            return
        if not in_flight.done():
            await sleep_or_until(self._clock, LEAVE_WAIT_MS, in_flight)
        if in_flight.cancelled() or in_flight.exception() is not None:
            return
        answer = in_flight.result()
        if isinstance(answer, JoinResponse) and answer.member_id:
            self.member_id = answer.member_id

    async def _leave(self) -> None:
        """LeaveGroup, waited for at most LEAVE_WAIT_MS: unanswered or refused, the group
        expires the member after its session timeout."""
        leaving = [(self.member_id, None)]
        try:
            left = await self._bounded(
                self._coordinator.leave(self.group_id, leaving), LEAVE_WAIT_MS
            )
        except StreamHouseError as error:
            left, why = None, str(error)
        else:
            why = f"no answer within {LEAVE_WAIT_MS} ms"
        if left is None:
            log.warning(
                "member %s of group %r left unanswered: %s", self.member_id, self.group_id, why
            )

    # --- the member loop -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._task is not None and self._task.done() and not self._task.cancelled():
            self._task.result()  # our own bug in the loop surfaces to the caller
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise StreamHouseError(
                f"the member of group {self.group_id!r} is closed; create a new one",
                ErrorCode.UNKNOWN_MEMBER_ID,
            )

    async def _run(self) -> None:
        no_coordinator_since_ms: int | None = None  # NOT_COORDINATOR answered since, unbroken
        while True:
            try:
                step = await self._join_and_sync()
                if step is None:
                    step = await self._heartbeat_until_rebalance()
            except CoordinatedElsewhere as error:  # no asking the agent that coordinates it
                self._stop(error)
                return
            except StreamHouseError as error:
                if error.code is not ErrorCode.NOT_COORDINATOR:
                    self._stop(error)
                    return
                # a slot between two holders; past a session timeout the member would be gone
                # from the group anyway: it stops and says so
                now_ms = self._clock.monotonic_ms()
                if no_coordinator_since_ms is None:
                    no_coordinator_since_ms = now_ms
                if now_ms - no_coordinator_since_ms >= self._timeouts.session_timeout_ms:
                    self._stop(error)
                    return
                step = _Step.BACK_OFF
            except StopMember as stopped:
                self._stop(stopped.error)
                return
            else:
                no_coordinator_since_ms = None
            await self._revoke()
            if step is _Step.REJOIN_FRESH:
                self.member_id = ""
            if step is _Step.BACK_OFF:
                await self._clock.sleep_ms(CLIENT_RETRY_BACKOFF_MS)

    def _stop(self, error: StreamHouseError) -> None:
        log.warning("member %s of group %r stopped: %s", self.member_id, self.group_id, error)
        self._failure = error
        self._assignment = frozenset()
        self._assigned.set()  # wakes waiters, who see the failure

    async def _revoke(self) -> None:
        given_up, self._assignment = self._assignment, frozenset()
        self._assigned.clear()
        if given_up and self._on_revoke is not None:
            await self._on_revoke(given_up)

    async def _join_and_sync(self) -> _Step | None:
        """Join, assign when leading, sync; None once the member has its assignment."""
        self._rejoin.clear()
        joined = await self._bounded(self._coordinator.join(self.group_id, self._join_request()))
        if joined is None:
            return _Step.BACK_OFF
        if joined.error is ErrorCode.MEMBER_ID_REQUIRED:
            self.member_id = joined.member_id
            return _Step.REJOIN
        step = _step_after(joined.error, self.group_id, "JoinGroup")
        if step is not None:
            return step
        self.member_id, self.generation = joined.member_id, joined.generation
        assignments: dict[str, bytes] = {}
        if joined.leader == self.member_id:
            try:
                assignments = await self._assign(joined)
            except StorageError:
                return _Step.BACK_OFF  # topic sizes unreadable: the rebalance times out
        synced = await self._bounded(
            self._coordinator.sync(
                self.group_id,
                SyncRequest(
                    self.member_id,
                    None,
                    self.generation,
                    CONSUMER_PROTOCOL_TYPE,
                    joined.protocol_name,
                    assignments,
                ),
                rebalance_timeout_ms=self._timeouts.rebalance_timeout_ms,
            )
        )
        if synced is None:
            return _Step.BACK_OFF
        step = _step_after(synced.error, self.group_id, "SyncGroup")
        if step is not None:
            return step
        self._assignment = self._internal(synced)
        self._assigned.set()
        return None

    async def _heartbeat_until_rebalance(self) -> _Step:
        while True:
            changed = await sleep_or_until(
                self._clock, self._timeouts.heartbeat_interval_ms, self._rejoin.wait()
            )
            if changed:
                return _Step.REJOIN
            error = await self._coordinator.heartbeat(
                self.group_id, self.member_id, None, self.generation
            )
            step = _step_after(error, self.group_id, "Heartbeat")
            if step is not None:
                return step

    async def _bounded(
        self, answer: Awaitable[Answer], bound_ms: int | None = None
    ) -> Answer | None:
        """The coordinator's answer, or None if it did not come within `bound_ms` (None: the
        rebalance timeout and a margin) or the coordinator closed (its waiting answers are
        cancelled)."""
        task = asyncio.ensure_future(answer)
        self._call_in_flight = task
        if bound_ms is None:
            bound_ms = self._timeouts.rebalance_timeout_ms + ANSWER_WAIT_MARGIN_MS
        try:
            answered = await sleep_or_until(self._clock, bound_ms, task)
        finally:
            if not self._closing:  # closing: close() reads what the coordinator answered
                task.cancel()
        if not answered or task.cancelled():
            return None
        return task.result()

    def _join_request(self) -> JoinRequest:
        visible = tuple(sorted(self._visible(t) for t in self._topics))
        metadata = encode_subscription(Subscription(visible))
        return JoinRequest(
            member_id=self.member_id,
            instance_id=None,
            client_id=self._client_id,
            client_host=self._client_host,
            session_timeout_ms=self._timeouts.session_timeout_ms,
            rebalance_timeout_ms=self._timeouts.rebalance_timeout_ms,
            protocol_type=CONSUMER_PROTOCOL_TYPE,
            protocols=tuple((name, metadata) for name in OFFERED_ASSIGNORS),
            version=JOIN_GROUP_VERSION,
        )

    def _visible(self, internal: str) -> str:
        name = unscoped(self._org, internal)
        assert name is not None, f"{internal!r} is not of org {self._org!r}"
        return name

    def _internal(self, synced: SyncResponse) -> frozenset[TopicPartition]:
        try:
            assignment = decode_assignment(synced.assignment)
        except MalformedConsumerProtocol as error:
            raise StopMember(error) from error
        internal = set()
        for tp in assignment.partitions:
            with contextlib.suppress(ValueError):  # a name no topic of the org can have
                internal.add(TopicPartition(scoped(self._org, tp.topic), tp.partition))
        return frozenset(internal)

    async def _assign(self, joined: JoinResponse) -> dict[str, bytes]:
        """The leader's assignment with the protocol the group chose; a member whose metadata
        cannot be read gets nothing (its client is not a consumer protocol client)."""
        assert joined.protocol_name in ASSIGNORS, f"chosen {joined.protocol_name!r}"
        members = []
        for member in joined.members:
            try:
                topics = frozenset(decode_subscription(member.metadata).topics)
            except MalformedConsumerProtocol:
                log.warning(
                    "group %r: member %s sent unreadable metadata; it gets no partitions",
                    self.group_id,
                    member.member_id,
                )
                topics = frozenset()
            members.append(AssignorMember(member.member_id, member.instance_id, topics))
        counts: dict[str, int] = {}
        for topic in {t for m in members for t in m.topics}:
            with contextlib.suppress(UnknownTopicOrPartition, ValueError):
                counts[topic] = (await self._admin.topic(scoped(self._org, topic))).partition_count
        assigned = ASSIGNORS[joined.protocol_name](members, counts)
        return {
            member_id: encode_assignment(Assignment(tuple(sorted(partitions))))
            for member_id, partitions in assigned.items()
        }


class StopMember(Exception):
    """An answer after which the member cannot go on; it stops with `error`."""

    def __init__(self, error: StreamHouseError) -> None:
        super().__init__(str(error))
        self.error = error


def _step_after(error: ErrorCode, group_id: str, request: str) -> _Step | None:
    """What to do after a coordinator answer; None to go on. Raises NotCoordinator-coded
    errors (the loop counts them) and StopMember for answers that do not pass."""
    if error is ErrorCode.NONE:
        return None
    if error in _REJOIN:
        return _Step.REJOIN
    if error in _REJOIN_FRESH:
        return _Step.REJOIN_FRESH
    if error in _RETRY:
        return _Step.BACK_OFF
    if error is ErrorCode.NOT_COORDINATOR:
        raise StreamHouseError(
            f"group {group_id!r}: no agent answered its {request} as the group's coordinator "
            "(its coordinator slot is moving between agents, or none holds it)",
            ErrorCode.NOT_COORDINATOR,
        )
    raise StopMember(
        StreamHouseError(f"group {group_id!r} refused the member's {request}: {error.name}", error)
    )


# --- offsets, for members and for manual assignment ------------------------------------------


async def commit_offsets(
    coordinator: GroupCalls,
    group_id: str,
    offsets: Mapping[TopicPartition, int],
    generation: int = NO_GENERATION,
    member_id: str = "",
) -> None:
    """Commit `offsets` for the group: as a member of `generation`, or (the defaults) as a
    simple consumer with a manual assignment, which only a group without members accepts.
    A partition refused raises StreamHouseError with its Kafka code."""
    wanted = {tp: OffsetToCommit(offset, NO_LEADER_EPOCH, None) for tp, offset in offsets.items()}
    answers = await coordinator.commit_offsets(group_id, generation, member_id, None, wanted)
    refused = {tp: code for tp, code in answers.items() if code is not ErrorCode.NONE}
    if refused:
        tp, code = min(refused.items())
        who = "a manual assignment" if generation == NO_GENERATION else f"generation {generation}"
        raise StreamHouseError(
            f"group {group_id!r} refused the commit of {len(refused)} partitions by {who} "
            f"({tp}: {code.name}); {_commit_advice(code)}",
            code,
        )


def _commit_advice(code: ErrorCode) -> str:
    if code in (ErrorCode.ILLEGAL_GENERATION, ErrorCode.UNKNOWN_MEMBER_ID):
        return "the group rebalanced since: read again from the committed offsets"
    if code is ErrorCode.REBALANCE_IN_PROGRESS:
        return "the group is rebalancing: commit again once it is assigned"
    return "check the group and partitions"


async def committed_offsets(
    coordinator: GroupCalls, group_id: str, partitions: Collection[TopicPartition]
) -> dict[TopicPartition, int]:
    """The group's committed offsets of `partitions`, for those that have one."""
    found = await coordinator.fetch_offsets(group_id, sorted(partitions))
    return {tp: committed.offset for tp, committed in found.items()}
