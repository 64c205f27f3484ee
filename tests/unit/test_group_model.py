"""A Hypothesis state machine drives the group state machine against an independent model.

Clients join (dynamic members through MEMBER_ID_REQUIRED, static ones directly), rejoin,
sync (the leader assigns partitions round robin), heartbeat (sometimes with a stale
generation), commit, leave, restart as a static instance, and time advances so that
sessions, rebalance timeouts and the initial delay expire. The model keeps Kafka's rules
in a plainer form; after every step membership, state, generation and leader agree, and
every answer's error code is the one the model expects. Invariants: generations never
go back, one generation's assignments give each partition one owner, fenced members get
UNKNOWN_MEMBER_ID / ILLEGAL_GENERATION / FENCED_INSTANCE_ID / REBALANCE_IN_PROGRESS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from streamhouse.errors import ErrorCode
from streamhouse.log.group_state import (
    Effects,
    Group,
    GroupLimits,
    GroupState,
    JoinRequest,
    JoinResponse,
    SyncResponse,
)
from tests.property_budget import examples

SESSION_MS = 1000
REBALANCE_MS = 1500
PARTITIONS = 6
MEMBERS_MAX = 4
PROTOCOLS = [
    (("range", b"r"), ("roundrobin", b"rr")),
    (("roundrobin", b"rr"), ("range", b"r")),
]
PROFILES = [  # what a client sends: protocols, session timeout, rebalance timeout
    (PROTOCOLS[0], SESSION_MS, REBALANCE_MS),
    (PROTOCOLS[1], SESSION_MS, REBALANCE_MS),
    (PROTOCOLS[0], 600, 2000),
    (PROTOCOLS[1], 600, 2000),
]
INSTANCES = ["s1", "s2"]
E = ErrorCode
S = GroupState


@dataclass
class ModelMember:
    instance: str | None
    awaiting_join: bool = False
    awaiting_sync: bool = False
    heartbeat_ms: int = 0
    session_ms: int = SESSION_MS
    rebalance_ms: int = REBALANCE_MS


@dataclass
class Model:
    """Kafka's classic group protocol, kept as plainly as possible."""

    delay_ms: int
    state: GroupState = S.EMPTY
    generation: int = 0
    members: dict[str, ModelMember] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)
    static: dict[str, str] = field(default_factory=dict)
    leader: str | None = None
    deadline_ms: int = 0
    initial_cap_ms: int | None = None
    sync_deadline_ms: int = 0
    answered_joins: set[str] = field(default_factory=set)
    answered_syncs: dict[str, ErrorCode] = field(default_factory=dict)

    def error_for(self, member: str, instance: str | None, generation: int) -> ErrorCode:
        if instance is not None and self.static.get(instance, member) != member:
            return E.FENCED_INSTANCE_ID
        if member not in self.members:
            return E.UNKNOWN_MEMBER_ID
        if generation != self.generation:
            return E.ILLEGAL_GENERATION
        return E.NONE

    def add(self, member: str, instance: str | None, now: int, profile: int) -> None:
        _, session_ms, rebalance_ms = PROFILES[profile]
        self.members[member] = ModelMember(
            instance, True, False, now + session_ms, session_ms, rebalance_ms
        )
        if instance is not None:
            self.static[instance] = member
        if self.state is S.EMPTY and self.delay_ms > 0:
            self.state = S.PREPARING_REBALANCE
            self.deadline_ms = now + self.delay_ms
            self.initial_cap_ms = now + max(self.rebalance_timeout_ms(), self.delay_ms)
        elif self.state is S.PREPARING_REBALANCE and self.initial_cap_ms is not None:
            self.deadline_ms = min(now + self.delay_ms, self.initial_cap_ms)
        else:
            self.rebalance(now)

    def rebalance(self, now: int) -> None:
        if self.state is not S.PREPARING_REBALANCE:
            for name, member in self.members.items():
                if member.awaiting_sync:
                    member.awaiting_sync = False
                    self.answered_syncs[name] = E.REBALANCE_IN_PROGRESS
            self.state = S.PREPARING_REBALANCE
            self.deadline_ms = now + self.rebalance_timeout_ms()
            self.initial_cap_ms = None
        if self.initial_cap_ms is None and self.everyone_in():
            self.complete(now)

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_ms for m in self.members.values()), default=0)

    def everyone_in(self) -> bool:
        return not self.pending and all(m.awaiting_join for m in self.members.values())

    def remove(self, member: str) -> None:
        gone = self.members.pop(member)
        if gone.instance is not None and self.static.get(gone.instance) == member:
            del self.static[gone.instance]
        if gone.awaiting_join:
            self.answered_joins.add(member)
        if gone.awaiting_sync:
            self.answered_syncs[member] = E.UNKNOWN_MEMBER_ID
        if self.leader == member:
            self.leader = next(iter(self.members), None)

    def complete(self, now: int) -> None:
        for name in [n for n, m in self.members.items() if not m.awaiting_join]:
            self.remove(name)
        self.generation += 1
        self.initial_cap_ms = None
        if not self.members:
            self.state, self.leader = S.EMPTY, None
            return
        if self.leader not in self.members:
            self.leader = next(iter(self.members))
        self.state = S.COMPLETING_REBALANCE
        self.sync_deadline_ms = now + self.rebalance_timeout_ms()
        for name, member in self.members.items():
            member.awaiting_join = False
            member.heartbeat_ms = now + member.session_ms
            self.answered_joins.add(name)

    def drop(self, names: list[str], now: int) -> None:
        for name in names:
            self.remove(name)
        if not names:
            return
        if self.state in (S.STABLE, S.COMPLETING_REBALANCE):
            self.rebalance(now)
        elif (
            self.state is S.PREPARING_REBALANCE
            and self.initial_cap_ms is None
            and (self.everyone_in())
        ):
            self.complete(now)

    def alive(self, member: ModelMember) -> bool:
        return (member.awaiting_join and self.state is S.PREPARING_REBALANCE) or (
            member.awaiting_sync and self.state is S.COMPLETING_REBALANCE
        )

    def expire(self, now: int) -> None:
        self.pending = {n: d for n, d in self.pending.items() if d > now}
        if self.state is S.PREPARING_REBALANCE and self.deadline_ms <= now:
            self.complete(now)
        if self.state is S.COMPLETING_REBALANCE and self.sync_deadline_ms <= now:
            self.drop([n for n, m in self.members.items() if not m.awaiting_sync], now)
        lost = [n for n, m in self.members.items() if not self.alive(m) and m.heartbeat_ms <= now]
        self.drop(lost, now)
        if (
            self.state is S.PREPARING_REBALANCE
            and self.initial_cap_ms is None
            and self.everyone_in()
        ):
            self.complete(now)


class GroupMachine(RuleBasedStateMachine):
    """The real state machine and the model, fed the same operations."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.group = Group("g")
        self.model = Model(0)
        self.ids = 0
        self.client_generation: dict[str, int] = {}
        self.client_instance: dict[str, str | None] = {}
        self.profile: dict[str, int] = {}
        self.retired: set[str] = set()  # ids that were members once and are no longer
        self.generations_seen: list[int] = [0]
        self.owners: dict[int, dict[int, str]] = {}  # generation -> partition -> member

    @initialize(delay_ms=st.sampled_from([0, 0, 400]))
    def start(self, delay_ms: int) -> None:
        limits = GroupLimits(
            max_size=MEMBERS_MAX,
            initial_rebalance_delay_ms=delay_ms,
            min_session_timeout_ms=100,
        )
        self.group = Group("g", limits)
        self.model = Model(delay_ms)

    # --- helpers ---------------------------------------------------------------------------

    def _request(self, member: str, instance: str | None, profile: int) -> JoinRequest:
        protocols, session_ms, rebalance_ms = PROFILES[profile]
        return JoinRequest(
            member_id=member,
            instance_id=instance,
            client_id="c",
            client_host="h",
            session_timeout_ms=session_ms,
            rebalance_timeout_ms=rebalance_ms,
            protocol_type="consumer",
            protocols=protocols,
            version=5,
        )

    def _fresh(self) -> str:
        self.ids += 1
        return f"id{self.ids}"

    def _deliver(self, effects: Effects) -> None:
        """Check the answers owed to waiting requests against the model's, then record them."""
        assert set(effects.joins) == self.model.answered_joins, (
            effects.joins.keys(),
            self.model.answered_joins,
        )
        assert {m: s.error for m, s in effects.syncs.items() if s.error} == {
            m: e for m, e in self.model.answered_syncs.items() if e
        }
        assert {m for m, s in effects.syncs.items() if not s.error} == {
            m for m, e in self.model.answered_syncs.items() if not e
        }
        self.model.answered_joins.clear()
        self.model.answered_syncs.clear()
        for join in effects.joins.values():
            self._joined(join)
        for member, sync in effects.syncs.items():
            self._synced(member, sync)
        assert effects.deadline_ms == self.group.next_deadline_ms()

    def _joined(self, join: JoinResponse) -> None:
        if join.error is not E.NONE:
            return
        assert join.generation == self.model.generation
        assert join.leader == self.model.leader
        self.client_generation[join.member_id] = join.generation
        if join.member_id == join.leader and join.members:
            names = {m.member_id for m in join.members}
            assert names == set(self.model.members)
            common = [
                name
                for name, _ in PROFILES[self.profile[join.member_id]][0]
                if all(name in dict(PROFILES[self.profile[m]][0]) for m in names)
            ]
            assert join.protocol_name in common

    def _synced(self, member: str, sync: SyncResponse) -> None:
        if sync.error is not E.NONE or not sync.assignment:
            return
        owners = self.owners.setdefault(self.group.generation, {})
        owner = self.client_instance[member] or member  # a static instance keeps its partitions
        for partition in sync.assignment.decode().split(","):
            assert owners.get(int(partition), owner) == owner, "two owners in one generation"
            owners[int(partition)] = owner

    def _retire_gone(self) -> None:
        for member in list(self.client_generation):
            if member not in self.model.members:
                self.retired.add(member)
                del self.client_generation[member]

    # --- rules -----------------------------------------------------------------------------

    @rule(profile=st.integers(0, len(PROFILES) - 1))
    def new_dynamic_member(self, profile: int) -> None:
        token = self._fresh()
        outcome = self.group.join(self._request("", None, profile), token, self.now)
        if len(self.model.members) + len(self.model.pending) >= MEMBERS_MAX:
            assert outcome.reply is not None and outcome.reply.error is E.GROUP_MAX_SIZE_REACHED
        else:
            assert outcome.reply is not None
            assert outcome.reply.error is E.MEMBER_ID_REQUIRED
            assert outcome.member_id == f"c-{token}"
            self.model.pending[outcome.member_id] = self.now + PROFILES[profile][1]
            self.profile[outcome.member_id] = profile
            self.client_instance[outcome.member_id] = None
        self._deliver(outcome.effects)

    @precondition(lambda self: self.model.pending)
    @rule(data=st.data())
    def pending_member_joins(self, data: st.DataObject) -> None:
        member = data.draw(st.sampled_from(sorted(self.model.pending)))
        profile = self.profile[member]
        outcome = self.group.join(self._request(member, None, profile), "unused", self.now)
        del self.model.pending[member]
        self.model.add(member, None, self.now, profile)
        self.client_generation.setdefault(member, -1)
        if outcome.reply is not None:
            self._joined(outcome.reply)
        self._deliver(outcome.effects)

    @rule(instance=st.sampled_from(INSTANCES), profile=st.integers(0, len(PROFILES) - 1))
    def static_member_starts(self, instance: str, profile: int) -> None:
        """A static instance (re)starts: it joins without a member id."""
        token = self._fresh()
        request = self._request("", instance, profile)
        outcome = self.group.join(request, token, self.now)
        new_id = f"c-{token}"
        old = self.model.static.get(instance)
        self.profile[new_id] = profile
        self.client_instance[new_id] = instance
        if old is None:
            if len(self.model.members) + len(self.model.pending) >= MEMBERS_MAX:
                assert outcome.reply is not None
                assert outcome.reply.error is E.GROUP_MAX_SIZE_REACHED
                self._deliver(outcome.effects)
                return
            self.model.add(new_id, instance, self.now, profile)
            self.client_generation[new_id] = -1
            self._deliver(outcome.effects)
            return
        # replace the old member under the new id; the old one is fenced
        previous = self.model.members.pop(old)
        if previous.awaiting_join:
            self.model.answered_joins.add(old)
        if previous.awaiting_sync:
            self.model.answered_syncs[old] = E.FENCED_INSTANCE_ID
        _, session_ms, rebalance_ms = PROFILES[profile]
        self.model.members[new_id] = ModelMember(
            instance, False, False, self.now + session_ms, session_ms, rebalance_ms
        )
        self.model.static[instance] = new_id
        if self.model.leader == old:
            self.model.leader = new_id
        self.client_generation.pop(old, None)
        self.retired.add(old)
        unchanged = PROFILES[self.profile[old]][0] == PROFILES[profile][0]
        if self.model.state is S.STABLE and unchanged:
            assert outcome.reply is not None and outcome.reply.error is E.NONE
            assert outcome.reply.generation == self.model.generation  # no rebalance
            self.client_generation[new_id] = outcome.reply.generation
        else:
            self.model.members[new_id].awaiting_join = True
            self.client_generation[new_id] = -1
            self.model.rebalance(self.now)
        self._deliver(outcome.effects)

    @precondition(lambda self: self.model.members)
    @rule(data=st.data(), profile=st.integers(0, len(PROFILES) - 1))
    def member_rejoins(self, data: st.DataObject, profile: int) -> None:
        """A member rejoins, maybe with other protocols or timeouts."""
        member = data.draw(st.sampled_from(sorted(self.model.members)))
        instance = self.client_instance[member]
        outcome = self.group.join(self._request(member, instance, profile), "unused", self.now)
        model, state = self.model, self.model.state
        held = model.members[member]
        unchanged = PROFILES[self.profile[member]][0] == PROFILES[profile][0]
        if unchanged and (
            state is S.COMPLETING_REBALANCE or (state is S.STABLE and model.leader != member)
        ):
            assert outcome.reply is not None and outcome.reply.error is E.NONE
            assert outcome.reply.generation == model.generation
            held.heartbeat_ms = self.now + held.session_ms
        else:
            assert outcome.reply is None
            self.profile[member] = profile
            _, held.session_ms, held.rebalance_ms = PROFILES[profile]
            held.awaiting_join = True
            model.rebalance(self.now)
        self._deliver(outcome.effects)

    @precondition(lambda self: self.model.members)
    @rule(data=st.data())
    def member_syncs(self, data: st.DataObject) -> None:
        member = data.draw(st.sampled_from(sorted(self.model.members)))
        generation = self.client_generation.get(member, -1)
        assignments = {}
        if member == self.model.leader:
            names = list(self.model.members)
            for index, name in enumerate(names):
                mine = [str(p) for p in range(PARTITIONS) if p % len(names) == index]
                assignments[name] = ",".join(mine).encode()
        outcome = self.group.sync(
            member, self.client_instance[member], generation, None, None, assignments, self.now
        )
        expected = self.model.error_for(member, self.client_instance[member], generation)
        model = self.model
        if expected is E.NONE and model.state is S.PREPARING_REBALANCE:
            expected = E.REBALANCE_IN_PROGRESS
        if expected is not E.NONE or model.state is S.STABLE:
            assert outcome.reply is not None and outcome.reply.error is expected
            if expected is E.NONE:
                self._synced(member, outcome.reply)
            if expected in (E.NONE, E.REBALANCE_IN_PROGRESS):
                held = model.members[member]
                held.heartbeat_ms = self.now + held.session_ms
            self._deliver(outcome.effects)
            return
        assert outcome.reply is None
        model.members[member].heartbeat_ms = self.now + model.members[member].session_ms
        model.members[member].awaiting_sync = True
        if member == model.leader:
            model.state = S.STABLE
            for name, each in model.members.items():
                if each.awaiting_sync:
                    each.awaiting_sync = False
                    each.heartbeat_ms = self.now + each.session_ms
                    model.answered_syncs[name] = E.NONE
        self._deliver(outcome.effects)

    @rule(data=st.data(), stale=st.booleans())
    def heartbeat(self, data: st.DataObject, stale: bool) -> None:
        known = sorted(self.model.members) + sorted(self.retired)
        if not known:
            return
        member = data.draw(st.sampled_from(known))
        instance = self.client_instance.get(member)
        generation = self.client_generation.get(member, self.model.generation)
        if stale:
            generation -= 1
        error, effects = self.group.heartbeat(member, instance, generation, self.now)
        expected = self.model.error_for(member, instance, generation)
        if expected is E.NONE:
            held = self.model.members[member]
            held.heartbeat_ms = self.now + held.session_ms
            if self.model.state is S.PREPARING_REBALANCE:
                expected = E.REBALANCE_IN_PROGRESS
        assert error is expected, (error, expected)
        self._deliver(effects)

    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        known = ["", *sorted(self.model.members), *sorted(self.retired)]
        member = data.draw(st.sampled_from(known))
        instance = self.client_instance.get(member)
        generation = self.client_generation.get(member, -1)
        error = self.group.check_commit(member, instance, generation, self.now)
        model = self.model
        if generation < 0 and not member and not model.members:
            expected = E.NONE
        elif instance is not None and model.static.get(instance, member) != member:
            expected = E.FENCED_INSTANCE_ID
        elif member not in model.members:
            expected = E.UNKNOWN_MEMBER_ID
        elif model.state is S.COMPLETING_REBALANCE:
            expected = E.REBALANCE_IN_PROGRESS
        elif generation != model.generation:
            expected = E.ILLEGAL_GENERATION
        else:
            expected = E.NONE
            held = model.members[member]
            held.heartbeat_ms = max(held.heartbeat_ms, self.now + held.session_ms)
        assert error is expected, (error, expected)

    @rule(data=st.data(), by_instance=st.booleans())
    def leave(self, data: st.DataObject, by_instance: bool) -> None:
        known = sorted(self.model.members) + sorted(self.model.pending) + sorted(self.retired)
        if not known:
            return
        member = data.draw(st.sampled_from(known))
        instance = self.client_instance.get(member) if by_instance else None
        answers, effects = self.group.leave([(member, instance)], self.now)
        model = self.model
        if instance is not None:
            current = model.static.get(instance)
            if current is None:
                expected = E.UNKNOWN_MEMBER_ID
            elif current != member:
                expected = E.FENCED_INSTANCE_ID
            else:
                expected = E.NONE
        elif member in model.pending:
            del model.pending[member]
            expected = E.NONE
        else:
            expected = E.NONE if member in model.members else E.UNKNOWN_MEMBER_ID
        assert [a.error for a in answers] == [expected]
        if expected is E.NONE and member in model.members:
            model.drop([member], self.now)
        self._deliver(effects)
        self._retire_gone()

    @rule(elapsed_ms=st.integers(0, 2500))
    def time_passes(self, elapsed_ms: int) -> None:
        """Time moves on; `expire` runs at each deadline the machine asks for, then at the end."""
        target = self.now + elapsed_ms
        for _ in range(100):
            deadline = self.group.next_deadline_ms()
            if deadline is None or deadline > target:
                break
            self.now = max(self.now, deadline)
            self.model.expire(self.now)
            self._deliver(self.group.expire(self.now))
        self.now = target
        self.model.expire(self.now)
        self._deliver(self.group.expire(self.now))
        self._retire_gone()

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def agrees_with_model(self) -> None:
        group, model = self.group, self.model
        assert group.state is model.state, (group.state, model.state)
        assert group.generation == model.generation
        assert list(group.members) == list(model.members)
        assert set(group.pending_members) == set(model.pending)
        assert group.static_members == model.static
        assert group.leader == model.leader
        for name, member in group.members.items():
            assert member.awaiting_join == model.members[name].awaiting_join
            assert member.awaiting_sync == model.members[name].awaiting_sync

    @invariant()
    def generations_only_grow(self) -> None:
        assert self.group.generation >= self.generations_seen[-1]
        self.generations_seen.append(self.group.generation)

    @invariant()
    def stable_groups_cover_every_partition_once(self) -> None:
        if self.group.state is not S.STABLE:
            return
        held = [
            int(p)
            for member in self.group.members.values()
            if member.assignment
            for p in member.assignment.decode().split(",")
        ]
        assert sorted(held) == list(range(PARTITIONS)), held


TestGroupModel = GroupMachine.TestCase
TestGroupModel.settings = settings(
    max_examples=examples(200), stateful_step_count=60, deadline=None
)


def test_protocol_selection_follows_the_majority_of_first_choices() -> None:
    group = Group("votes", GroupLimits(initial_rebalance_delay_ms=100, min_session_timeout_ms=1))
    offers = [
        (("range", b""), ("roundrobin", b""), ("sticky", b"")),
        (("roundrobin", b""), ("range", b"")),
        (("roundrobin", b""), ("range", b""), ("sticky", b"")),
    ]
    for index, protocols in enumerate(offers):
        request = JoinRequest("", None, "c", "h", 1000, 1000, "consumer", protocols, 3)
        group.join(request, str(index), 0)
    effects = group.expire(100)  # the initial delay ends: one generation for all three
    assert len(effects.joins) == 3
    assert group.protocol_name == "roundrobin"  # sticky is not common; roundrobin has 2 votes


def test_incompatible_protocols_are_refused() -> None:
    group = Group("g", GroupLimits(initial_rebalance_delay_ms=0, min_session_timeout_ms=1))
    first = JoinRequest("", None, "c", "h", 1000, 1000, "consumer", (("range", b""),), 3)
    group.join(first, "a", 0)
    other = JoinRequest("", None, "c", "h", 1000, 1000, "consumer", (("sticky", b""),), 3)
    assert group.join(other, "b", 0).reply == JoinResponse(
        E.INCONSISTENT_GROUP_PROTOCOL, member_id=""
    )
    wrong_type = JoinRequest("", None, "c", "h", 1000, 1000, "connect", (("range", b""),), 3)
    reply = group.join(wrong_type, "c", 0).reply
    assert reply is not None and reply.error is E.INCONSISTENT_GROUP_PROTOCOL


def test_session_timeout_outside_bounds_is_refused() -> None:
    group = Group("g")
    request = JoinRequest("", None, "c", "h", 10, 1000, "consumer", (("range", b""),), 5)
    reply = group.join(request, "x", 0).reply
    assert reply is not None and reply.error is E.INVALID_SESSION_TIMEOUT
