"""Consumer group membership as a pure state machine: joins, syncs, heartbeats, leaves, expiry.

One `Group` holds its members, generation and state (Empty, PreparingRebalance,
CompletingRebalance, Stable, Dead). Every operation takes the time (`now_ms`, monotonic)
as an argument, changes the group, and answers as data: the reply to the request itself
(or None when the request must wait for the rebalance to progress) and `Effects`, the
answers owed to other waiting requests, keyed by member id, plus the next deadline at
which `expire` must be called. Nothing here awaits, sleeps or reads a clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from streamhouse.config import Settings
from streamhouse.errors import ErrorCode
from streamhouse.kafka.sentinels import NO_GENERATION

INITIAL_GENERATION = 0
REQUIRE_MEMBER_ID_VERSION_MIN = 4  # JoinGroup v4+: a first join without an id is sent back for one
GROUP_PROTOCOLS_MAX = 32  # protocols one member may offer
Protocols = tuple[tuple[str, bytes], ...]  # (name, metadata), in the member's order of preference


class GroupState(enum.Enum):
    """Kafka's classic group states; the values are the names Kafka's APIs show."""

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


class GroupEvent(enum.Enum):
    """What moves a group from one state to another."""

    REBALANCE = "a member joined, left, changed or expired: a new generation is prepared"
    JOINED = "the join phase ended with members: the leader is asked for an assignment"
    JOINED_EMPTY = "the join phase ended without members"
    ASSIGNED = "the leader's assignment arrived: every member gets its share"
    DELETED = "the group was deleted"


# Every allowed transition, as Kafka's classic group coordinator allows them; anything else is
# our bug (`Group._move` asserts). The join phase of an empty group may be prolonged by
# group.initial.rebalance.delay.ms, hence PreparingRebalance -> PreparingRebalance.
TRANSITIONS: dict[GroupState, dict[GroupEvent, GroupState]] = {
    GroupState.EMPTY: {
        GroupEvent.REBALANCE: GroupState.PREPARING_REBALANCE,
        GroupEvent.DELETED: GroupState.DEAD,
    },
    GroupState.PREPARING_REBALANCE: {
        GroupEvent.REBALANCE: GroupState.PREPARING_REBALANCE,
        GroupEvent.JOINED: GroupState.COMPLETING_REBALANCE,
        GroupEvent.JOINED_EMPTY: GroupState.EMPTY,
    },
    GroupState.COMPLETING_REBALANCE: {
        GroupEvent.REBALANCE: GroupState.PREPARING_REBALANCE,
        GroupEvent.ASSIGNED: GroupState.STABLE,
    },
    GroupState.STABLE: {
        GroupEvent.REBALANCE: GroupState.PREPARING_REBALANCE,
    },
    GroupState.DEAD: {},
}


@dataclass(frozen=True)
class GroupLimits:
    """The bounds one group is held to: the agent's `Settings.group_<name>` (Kafka's broker
    configs group.max.size, group.initial.rebalance.delay.ms, group.min/max.session.timeout.ms),
    whose defaults are these."""

    max_size: int = Settings.group_max_size  # members plus ids handed out and not yet used
    initial_rebalance_delay_ms: int = Settings.group_initial_rebalance_delay_ms
    min_session_timeout_ms: int = Settings.group_min_session_timeout_ms
    max_session_timeout_ms: int = Settings.group_max_session_timeout_ms

    @classmethod
    def of(cls, settings: Settings) -> GroupLimits:
        """The limits an agent's settings set."""
        return cls(
            max_size=settings.group_max_size,
            initial_rebalance_delay_ms=settings.group_initial_rebalance_delay_ms,
            min_session_timeout_ms=settings.group_min_session_timeout_ms,
            max_session_timeout_ms=settings.group_max_session_timeout_ms,
        )


@dataclass(frozen=True)
class JoinRequest:
    """A JoinGroup request's content."""

    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: Protocols
    version: int


@dataclass(frozen=True)
class SyncRequest:
    """A SyncGroup request's content: the leader's assignments by member id (none from a
    follower); protocol type and name None when the request does not give them."""

    member_id: str
    instance_id: str | None
    generation: int
    protocol_type: str | None
    protocol_name: str | None
    assignments: dict[str, bytes]


@dataclass(frozen=True)
class JoinedMember:
    """One member as the leader's JoinGroup response lists it."""

    member_id: str
    instance_id: str | None
    metadata: bytes


@dataclass(frozen=True)
class JoinResponse:
    """The answer to one JoinGroup request."""

    error: ErrorCode
    member_id: str = ""
    generation: int = NO_GENERATION
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    members: tuple[JoinedMember, ...] = ()
    skip_assignment: bool = False


@dataclass(frozen=True)
class SyncResponse:
    """The answer to one SyncGroup request."""

    error: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@dataclass
class Effects:
    """Answers owed to waiting requests (by member id) and when `expire` must next run."""

    joins: dict[str, JoinResponse] = field(default_factory=dict)
    syncs: dict[str, SyncResponse] = field(default_factory=dict)
    deadline_ms: int | None = None


@dataclass(frozen=True)
class JoinOutcome:
    """What a JoinGroup did: `reply` now, or None to wait for `effects.joins[member_id]`."""

    member_id: str
    reply: JoinResponse | None
    effects: Effects


@dataclass(frozen=True)
class SyncOutcome:
    """What a SyncGroup did: `reply` now, or None to wait for `effects.syncs[member_id]`."""

    reply: SyncResponse | None
    effects: Effects


@dataclass
class Member:
    """One member of a group."""

    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: Protocols
    heartbeat_deadline_ms: int
    assignment: bytes = b""
    awaiting_join: bool = False
    awaiting_sync: bool = False

    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    def metadata_for(self, protocol: str) -> bytes:
        return next(data for name, data in self.protocols if name == protocol)


@dataclass(frozen=True)
class MemberLeave:
    """One identity of a LeaveGroup request and the answer for it."""

    member_id: str
    instance_id: str | None
    error: ErrorCode = ErrorCode.NONE


@dataclass(frozen=True)
class MemberSummary:
    """One member as DescribeGroups shows it."""

    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass(frozen=True)
class GroupSummary:
    """A group as DescribeGroups and ListGroups show it."""

    group_id: str
    state: GroupState
    protocol_type: str
    protocol_name: str
    members: tuple[MemberSummary, ...] = ()


@dataclass
class Group:
    """A consumer group's membership state."""

    group_id: str
    limits: GroupLimits = field(default_factory=GroupLimits)
    state: GroupState = GroupState.EMPTY
    generation: int = INITIAL_GENERATION
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)  # instance id -> member id
    pending_members: dict[str, int] = field(default_factory=dict)  # member id -> deadline
    rebalance_deadline_ms: int | None = None
    initial_deadline_max_ms: int | None = None  # set while the initial delay may still grow
    sync_deadline_ms: int | None = None

    def _move(self, event: GroupEvent) -> None:
        """Take the transition `event` names from the current state; any other is our bug."""
        following = TRANSITIONS[self.state].get(event)
        assert following is not None, (
            f"group {self.group_id!r}: {event.name} ({event.value}) is not allowed in state "
            f"{self.state.value}"
        )
        self.state = following

    # --- queries ---------------------------------------------------------------------------

    def next_deadline_ms(self) -> int | None:
        """The earliest time at which `expire` has something to do."""
        candidates = list(self.pending_members.values())
        candidates += [m.heartbeat_deadline_ms for m in self.members.values() if not self._alive(m)]
        if self.state is GroupState.PREPARING_REBALANCE and self.rebalance_deadline_ms is not None:
            candidates.append(self.rebalance_deadline_ms)
        if self.state is GroupState.COMPLETING_REBALANCE and self.sync_deadline_ms is not None:
            candidates.append(self.sync_deadline_ms)
        return min(candidates, default=None)

    def _alive(self, member: Member) -> bool:
        """Members waiting for an answer from us are not expected to heartbeat."""
        return (member.awaiting_join and self.state is GroupState.PREPARING_REBALANCE) or (
            member.awaiting_sync and self.state is GroupState.COMPLETING_REBALANCE
        )

    def _effects(self, effects: Effects | None = None) -> Effects:
        done = effects if effects is not None else Effects()
        done.deadline_ms = self.next_deadline_ms()
        return done

    def _fenced(self, member_id: str, instance_id: str | None) -> ErrorCode:
        """NONE if `member_id` (of `instance_id`) is a current member, else why it is not."""
        known = self.static_members.get(instance_id) if instance_id is not None else None
        if known is not None and known != member_id:
            return ErrorCode.FENCED_INSTANCE_ID
        if member_id not in self.members:
            return ErrorCode.UNKNOWN_MEMBER_ID
        return ErrorCode.NONE

    def _supports(self, protocol_type: str, protocols: Protocols) -> bool:
        if not protocol_type or not protocols:
            return False
        if not self.members:
            return True
        return protocol_type == self.protocol_type and bool(
            {name for name, _ in protocols} & self._common_protocols()
        )

    def _common_protocols(self, members: list[Member] | None = None) -> set[str]:
        chosen = list(self.members.values()) if members is None else members
        common = set(chosen[0].protocol_names())
        for member in chosen[1:]:
            common &= set(member.protocol_names())
        return common

    def select_protocol(self) -> str:
        """The protocol every member supports that most members rank first among those."""
        members = list(self.members.values())
        common = self._common_protocols(members)
        votes: dict[str, int] = {}
        for member in members:
            first = next(name for name in member.protocol_names() if name in common)
            votes[first] = votes.get(first, 0) + 1
        ranking = members[0].protocol_names()  # ties go to the first member's preference
        return max(
            (name for name in ranking if name in common),
            key=lambda name: (votes.get(name, 0), -ranking.index(name)),
        )

    # --- JoinGroup -------------------------------------------------------------------------

    def join(self, request: JoinRequest, fresh_id: str, now_ms: int) -> JoinOutcome:
        """Handle a JoinGroup. `fresh_id` is a random token, used if a new member id is needed."""
        refused = self._refuse_join(request)
        if refused is not ErrorCode.NONE:
            return self._join_error(request.member_id, refused)
        if not request.member_id:
            return self._join_unknown(request, fresh_id, now_ms)
        if request.member_id in self.pending_members:
            del self.pending_members[request.member_id]
            return self._add_member(request, request.member_id, now_ms)
        fenced = self._fenced(request.member_id, request.instance_id)
        if fenced is not ErrorCode.NONE:
            return self._join_error(request.member_id, fenced)
        return self._join_known(request, now_ms)

    def _refuse_join(self, request: JoinRequest) -> ErrorCode:
        if not self.group_id:
            return ErrorCode.INVALID_GROUP_ID
        if not (
            self.limits.min_session_timeout_ms
            <= request.session_timeout_ms
            <= self.limits.max_session_timeout_ms
        ):
            return ErrorCode.INVALID_SESSION_TIMEOUT
        if self.state is GroupState.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if len(request.protocols) > GROUP_PROTOCOLS_MAX:
            return ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        if not self._supports(request.protocol_type, request.protocols):
            return ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        return ErrorCode.NONE

    def _join_error(self, member_id: str, error: ErrorCode) -> JoinOutcome:
        return JoinOutcome(member_id, JoinResponse(error, member_id=member_id), self._effects())

    def _full(self) -> bool:
        return len(self.members) + len(self.pending_members) >= self.limits.max_size

    def _join_unknown(self, request: JoinRequest, fresh_id: str, now_ms: int) -> JoinOutcome:
        new_id = f"{request.client_id or 'member'}-{fresh_id}"
        instance = request.instance_id
        if instance is not None and instance in self.static_members:
            return self._replace_static(request, new_id, now_ms)
        if self._full():
            return self._join_error("", ErrorCode.GROUP_MAX_SIZE_REACHED)
        if instance is None and request.version >= REQUIRE_MEMBER_ID_VERSION_MIN:
            self.pending_members[new_id] = now_ms + request.session_timeout_ms
            reply = JoinResponse(ErrorCode.MEMBER_ID_REQUIRED, member_id=new_id)
            return JoinOutcome(new_id, reply, self._effects())
        return self._add_member(request, new_id, now_ms)

    def _new_member(self, request: JoinRequest, member_id: str, now_ms: int) -> Member:
        return Member(
            member_id=member_id,
            instance_id=request.instance_id,
            client_id=request.client_id,
            client_host=request.client_host,
            session_timeout_ms=request.session_timeout_ms,
            rebalance_timeout_ms=request.rebalance_timeout_ms,
            protocol_type=request.protocol_type,
            protocols=request.protocols,
            heartbeat_deadline_ms=now_ms + request.session_timeout_ms,
        )

    def _add_member(self, request: JoinRequest, member_id: str, now_ms: int) -> JoinOutcome:
        member = self._new_member(request, member_id, now_ms)
        member.awaiting_join = True
        if not self.members:
            self.protocol_type = request.protocol_type
        self.members[member_id] = member
        if request.instance_id is not None:
            self.static_members[request.instance_id] = member_id
        effects = self._rebalance(now_ms, joined=member)
        return JoinOutcome(member_id, None, self._effects(effects))

    def _join_known(self, request: JoinRequest, now_ms: int) -> JoinOutcome:
        member = self.members[request.member_id]
        unchanged = member.protocols == request.protocols
        if self.state is GroupState.EMPTY:
            return self._join_error(request.member_id, ErrorCode.UNKNOWN_MEMBER_ID)
        repeated = unchanged and (
            self.state is GroupState.COMPLETING_REBALANCE
            or (self.state is GroupState.STABLE and self.leader != member.member_id)
        )
        if repeated:
            # a repeated join (its answer was lost): the current generation, unchanged
            member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
            reply = self._join_response(member.member_id)
            return JoinOutcome(member.member_id, reply, self._effects())
        member.protocols = request.protocols
        member.session_timeout_ms = request.session_timeout_ms
        member.rebalance_timeout_ms = request.rebalance_timeout_ms
        member.awaiting_join = True
        effects = self._rebalance(now_ms)
        return JoinOutcome(member.member_id, None, self._effects(effects))

    def _replace_static(self, request: JoinRequest, new_id: str, now_ms: int) -> JoinOutcome:
        """A known instance rejoins under a new member id: the old id is fenced."""
        assert request.instance_id is not None
        old_id = self.static_members[request.instance_id]
        old = self.members.pop(old_id)
        effects = Effects()
        if old.awaiting_join:
            effects.joins[old_id] = JoinResponse(ErrorCode.FENCED_INSTANCE_ID, member_id=old_id)
        if old.awaiting_sync:
            effects.syncs[old_id] = SyncResponse(ErrorCode.FENCED_INSTANCE_ID)
        member = self._new_member(request, new_id, now_ms)
        member.assignment = old.assignment
        self.members[new_id] = member
        self.static_members[request.instance_id] = new_id
        if self.leader == old_id:
            self.leader = new_id
        unchanged = old.protocols == request.protocols
        if self.state is GroupState.STABLE and unchanged:
            is_leader = self.leader == new_id
            reply = self._join_response(new_id, skip_assignment=is_leader)
            return JoinOutcome(new_id, reply, self._effects(effects))
        member.awaiting_join = True
        more = self._rebalance(now_ms)
        effects.joins.update(more.joins)
        effects.syncs.update(more.syncs)
        return JoinOutcome(new_id, None, self._effects(effects))

    def _join_response(self, member_id: str, skip_assignment: bool = False) -> JoinResponse:
        members: tuple[JoinedMember, ...] = ()
        if member_id == self.leader and self.protocol_name is not None:
            members = tuple(
                JoinedMember(m.member_id, m.instance_id, m.metadata_for(self.protocol_name))
                for m in self.members.values()
            )
        return JoinResponse(
            ErrorCode.NONE,
            member_id=member_id,
            generation=self.generation,
            protocol_type=self.protocol_type,
            protocol_name=self.protocol_name,
            leader=self.leader or "",
            members=members,
            skip_assignment=skip_assignment,
        )

    # --- rebalancing -----------------------------------------------------------------------

    def _rebalance(self, now_ms: int, joined: Member | None = None) -> Effects:
        """Enter (or continue) the join phase, completing it if everyone is in."""
        effects = Effects()
        if self.state is GroupState.PREPARING_REBALANCE:
            if joined is not None and self.initial_deadline_max_ms is not None:
                self.rebalance_deadline_ms = min(
                    now_ms + self.limits.initial_rebalance_delay_ms, self.initial_deadline_max_ms
                )
        elif self.state is GroupState.EMPTY and self.limits.initial_rebalance_delay_ms > 0:
            timeout_ms = max(m.rebalance_timeout_ms for m in self.members.values())
            self._move(GroupEvent.REBALANCE)
            self.rebalance_deadline_ms = now_ms + self.limits.initial_rebalance_delay_ms
            self.initial_deadline_max_ms = now_ms + max(
                timeout_ms, self.limits.initial_rebalance_delay_ms
            )
            return effects
        else:
            if self.state is GroupState.COMPLETING_REBALANCE:
                for member in self.members.values():
                    if member.awaiting_sync:
                        member.awaiting_sync = False
                        effects.syncs[member.member_id] = SyncResponse(
                            ErrorCode.REBALANCE_IN_PROGRESS
                        )
            for member in self.members.values():
                member.assignment = b""
            timeout_ms = max((m.rebalance_timeout_ms for m in self.members.values()), default=0)
            self._move(GroupEvent.REBALANCE)
            self.rebalance_deadline_ms = now_ms + timeout_ms
            self.initial_deadline_max_ms = None
        if self.initial_deadline_max_ms is None and self._all_joined():
            effects.joins.update(self._complete_join(now_ms))
        return effects

    def _all_joined(self) -> bool:
        return not self.pending_members and all(m.awaiting_join for m in self.members.values())

    def _complete_join(self, now_ms: int) -> dict[str, JoinResponse]:
        """End the join phase: drop who did not rejoin, start the next generation."""
        for member in [m for m in self.members.values() if not m.awaiting_join]:
            self._remove(member.member_id)
        self.generation += 1
        self.rebalance_deadline_ms = None
        self.initial_deadline_max_ms = None
        if not self.members:
            self._move(GroupEvent.JOINED_EMPTY)
            self.protocol_name = None
            self.protocol_type = None
            self.leader = None
            return {}
        self.protocol_name = self.select_protocol()
        if self.leader not in self.members:
            self.leader = next(iter(self.members))
        self._move(GroupEvent.JOINED)
        self.sync_deadline_ms = now_ms + max(m.rebalance_timeout_ms for m in self.members.values())
        answers = {}
        for member in self.members.values():
            member.awaiting_join = False
            member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
            answers[member.member_id] = self._join_response(member.member_id)
        return answers

    def _remove(self, member_id: str) -> Member:
        member = self.members.pop(member_id)
        if member.instance_id is not None and self.static_members.get(member.instance_id) == (
            member_id
        ):
            del self.static_members[member.instance_id]
        if self.leader == member_id:
            self.leader = next(iter(self.members), None)
        return member

    def _remove_and_rebalance(self, member_ids: list[str], now_ms: int) -> Effects:
        """Drop members (answering what they wait for) and rebalance the rest."""
        effects = Effects()
        for member_id in member_ids:
            member = self._remove(member_id)
            if member.awaiting_join:
                effects.joins[member_id] = JoinResponse(ErrorCode.UNKNOWN_MEMBER_ID, member_id)
            if member.awaiting_sync:
                effects.syncs[member_id] = SyncResponse(ErrorCode.UNKNOWN_MEMBER_ID)
        if not member_ids:
            return effects
        if self.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            more = self._rebalance(now_ms)
        elif self.state is GroupState.PREPARING_REBALANCE and (
            self.initial_deadline_max_ms is None and self._all_joined()
        ):
            more = Effects(joins=self._complete_join(now_ms))
        else:
            more = Effects()
        effects.joins.update(more.joins)
        effects.syncs.update(more.syncs)
        return effects

    # --- SyncGroup -------------------------------------------------------------------------

    def sync(
        self,
        member_id: str,
        instance_id: str | None,
        generation: int,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict[str, bytes],
        now_ms: int,
    ) -> SyncOutcome:
        """Handle a SyncGroup: the leader's assignments end the rebalance; the others wait."""
        error = self._check_member(member_id, instance_id, generation)
        if error is ErrorCode.NONE and (
            (protocol_type is not None and protocol_type != self.protocol_type)
            or (protocol_name is not None and protocol_name != self.protocol_name)
        ):
            error = ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        if error is not ErrorCode.NONE:
            return SyncOutcome(SyncResponse(error), self._effects())
        member = self.members[member_id]
        member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        if self.state is GroupState.PREPARING_REBALANCE:
            return SyncOutcome(SyncResponse(ErrorCode.REBALANCE_IN_PROGRESS), self._effects())
        if self.state is GroupState.STABLE:
            return SyncOutcome(self._sync_response(member), self._effects())
        member.awaiting_sync = True
        effects = Effects()
        if member_id == self.leader:
            for each in self.members.values():
                each.assignment = assignments.get(each.member_id, b"")
            self._move(GroupEvent.ASSIGNED)
            self.sync_deadline_ms = None
            for each in self.members.values():
                if each.awaiting_sync:
                    each.awaiting_sync = False
                    each.heartbeat_deadline_ms = now_ms + each.session_timeout_ms
                    effects.syncs[each.member_id] = self._sync_response(each)
        return SyncOutcome(None, self._effects(effects))

    def _sync_response(self, member: Member) -> SyncResponse:
        return SyncResponse(
            ErrorCode.NONE, self.protocol_type, self.protocol_name, member.assignment
        )

    def _check_member(self, member_id: str, instance_id: str | None, generation: int) -> ErrorCode:
        if self.state is GroupState.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        fenced = self._fenced(member_id, instance_id)
        if fenced is not ErrorCode.NONE:
            return fenced
        if generation != self.generation:
            return ErrorCode.ILLEGAL_GENERATION
        return ErrorCode.NONE

    # --- Heartbeat, LeaveGroup, expiry -----------------------------------------------------

    def heartbeat(
        self, member_id: str, instance_id: str | None, generation: int, now_ms: int
    ) -> tuple[ErrorCode, Effects]:
        """Handle a Heartbeat: keeps the member alive; says when a rebalance is under way."""
        error = self._check_member(member_id, instance_id, generation)
        if error is not ErrorCode.NONE:
            return error, self._effects()
        member = self.members[member_id]
        member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        if self.state is GroupState.PREPARING_REBALANCE:
            return ErrorCode.REBALANCE_IN_PROGRESS, self._effects()
        return ErrorCode.NONE, self._effects()

    def leave(
        self, leaving: list[tuple[str, str | None]], now_ms: int
    ) -> tuple[list[MemberLeave], Effects]:
        """Handle a LeaveGroup of (member id, instance id) pairs; answers each one."""
        answers = []
        removed: list[str] = []
        for member_id, instance_id in leaving:
            error, leaver = self._leaver(member_id, instance_id)
            if leaver is not None and leaver not in removed:
                removed.append(leaver)
            answers.append(MemberLeave(member_id, instance_id, error))
        return answers, self._effects(self._remove_and_rebalance(removed, now_ms))

    def _leaver(self, member_id: str, instance_id: str | None) -> tuple[ErrorCode, str | None]:
        """Whether this identity may leave, and the member id that leaves (if a member)."""
        if instance_id is not None:
            known = self.static_members.get(instance_id)
            if known is None:
                return ErrorCode.UNKNOWN_MEMBER_ID, None
            if member_id and member_id != known:
                return ErrorCode.FENCED_INSTANCE_ID, None
            return ErrorCode.NONE, known
        if member_id in self.pending_members:
            del self.pending_members[member_id]
            return ErrorCode.NONE, None
        if member_id in self.members:
            return ErrorCode.NONE, member_id
        return ErrorCode.UNKNOWN_MEMBER_ID, None

    def expire(self, now_ms: int) -> Effects:
        """Act on every deadline that has passed: lost members, ended delays and timeouts."""
        for member_id, deadline in list(self.pending_members.items()):
            if deadline <= now_ms:
                del self.pending_members[member_id]
        effects = Effects()
        if (
            self.state is GroupState.PREPARING_REBALANCE
            and self.rebalance_deadline_ms is not None
            and self.rebalance_deadline_ms <= now_ms
        ):
            effects.joins.update(self._complete_join(now_ms))
        if (
            self.state is GroupState.COMPLETING_REBALANCE
            and self.sync_deadline_ms is not None
            and self.sync_deadline_ms <= now_ms
        ):
            late = [m.member_id for m in self.members.values() if not m.awaiting_sync]
            more = self._remove_and_rebalance(late, now_ms)
            effects.joins.update(more.joins)
            effects.syncs.update(more.syncs)
        lost = [
            m.member_id
            for m in self.members.values()
            if not self._alive(m) and m.heartbeat_deadline_ms <= now_ms
        ]
        more = self._remove_and_rebalance(lost, now_ms)
        effects.joins.update(more.joins)
        effects.syncs.update(more.syncs)
        if (
            self.state is GroupState.PREPARING_REBALANCE
            and self.initial_deadline_max_ms is None
            and self._all_joined()
        ):
            effects.joins.update(self._complete_join(now_ms))
        return self._effects(effects)

    # --- offsets ---------------------------------------------------------------------------

    def check_commit(
        self, member_id: str, instance_id: str | None, generation: int, now_ms: int
    ) -> ErrorCode:
        """Whether an OffsetCommit of this member and generation may be applied.

        Generation -1 with no member id is a standalone ("simple") commit, allowed only
        while the group has no members.
        """
        if self.state is GroupState.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if generation < 0 and not member_id and not self.members:
            return ErrorCode.NONE
        fenced = self._fenced(member_id, instance_id)
        if fenced is not ErrorCode.NONE:
            return fenced
        if self.state is GroupState.COMPLETING_REBALANCE:
            return ErrorCode.REBALANCE_IN_PROGRESS
        if generation != self.generation:
            return ErrorCode.ILLEGAL_GENERATION
        member = self.members[member_id]
        member.heartbeat_deadline_ms = max(
            member.heartbeat_deadline_ms, now_ms + member.session_timeout_ms
        )
        return ErrorCode.NONE

    def mark_dead(self) -> None:
        """The group was deleted: nothing may join or commit through this object any more."""
        assert not self.members, "only an empty group can be deleted"
        self.pending_members.clear()
        self._move(GroupEvent.DELETED)
