"""The group coordinator of a group, wherever it runs, for the REST v2 consumer instances and
gRPC's Consume and Commit (engine/group_member.py), and for the doors describing a group
(REST v3's groups and lags, gRPC's DescribeGroup): the calls they make of it (join, sync,
heartbeat, leave, commit and fetch offsets, describe) are one small interface, `GroupCalls`
(ports/peers.py).

Two implementations: this agent's GroupCoordinator (`LocalGroupCalls`) and another agent's,
asked over its Kafka listener as a Kafka client would ask it (the PeerGroups port, whose
adapter is io/kafka_peer.py). `RoutedGroupCalls` picks one per call: the agent holding the
group's coordinator slot (engine/coordinators.py) as FindCoordinator names it (the ownership
service's last view), and after a refusal (NOT_COORDINATOR, or the agent unreachable) the
slot's leader as the metadata store names it now, tried once more: a slot moving meanwhile
costs one more request, never a loop; a refusal then is answered as it came (the member
backs off and asks again). The peer's Kafka door never forwards, so a request travels at most
one hop per try.

Forwarding follows engine/forwarding.py's rule: agents speak to each other only on PLAINTEXT
listeners (`forwarding_refused`). Without it a group another agent coordinates is refused
`CoordinatedElsewhere`, naming that agent and the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from streamhouse.engine.admin import AdminService
from streamhouse.engine.cluster import AgentAddress
from streamhouse.engine.coordinators import slot_of
from streamhouse.engine.forwarding import describe
from streamhouse.engine.groups import GroupCoordinator
from streamhouse.errors import ErrorCode, NotCoordinator, PeerUnreachable, StreamHouseError
from streamhouse.log.group_state import (
    GroupSummary,
    JoinRequest,
    JoinResponse,
    MemberLeave,
    SyncRequest,
    SyncResponse,
)
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import OffsetToCommit
from streamhouse.ports.peers import GroupCalls, GroupOffset, PeerGroups

T = TypeVar("T")
# The coordinator as last seen, then once more as the metadata store names it after a refusal
COORDINATOR_TRIES_MAX = 2
# Answers after which the coordinator is looked up again
_REFIND = frozenset({ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE})


class CoordinatedElsewhere(NotCoordinator):
    """Another agent coordinates the group, and this one does not forward to it (the Kafka
    listeners require SASL or TLS): the group's consumers must connect there."""


class LocalGroupCalls(GroupCalls):
    """This agent's group coordinator."""

    def __init__(self, coordinator: GroupCoordinator) -> None:
        self._coordinator = coordinator

    async def join(self, group_id: str, request: JoinRequest) -> JoinResponse:
        return await self._coordinator.join(group_id, request)

    async def sync(
        self, group_id: str, request: SyncRequest, *, rebalance_timeout_ms: int
    ) -> SyncResponse:
        return await self._coordinator.sync(
            group_id,
            request.member_id,
            request.instance_id,
            request.generation,
            request.protocol_type,
            request.protocol_name,
            request.assignments,
        )

    async def heartbeat(
        self, group_id: str, member_id: str, instance_id: str | None, generation: int
    ) -> ErrorCode:
        return self._coordinator.heartbeat(group_id, member_id, instance_id, generation)

    async def leave(
        self, group_id: str, leaving: Sequence[tuple[str, str | None]]
    ) -> list[MemberLeave]:
        return self._coordinator.leave(group_id, list(leaving))

    async def commit_offsets(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        instance_id: str | None,
        offsets: Mapping[TopicPartition, OffsetToCommit],
    ) -> dict[TopicPartition, ErrorCode]:
        return await self._coordinator.commit_offsets(
            group_id, generation, member_id, instance_id, offsets
        )

    async def fetch_offsets(
        self, group_id: str, partitions: Sequence[TopicPartition] | None
    ) -> dict[TopicPartition, GroupOffset]:
        wanted = None if partitions is None else list(partitions)
        found = await self._coordinator.fetch_offsets(group_id, wanted)
        return {
            tp: GroupOffset(committed.offset, committed.leader_epoch, committed.metadata)
            for tp, committed in found.items()
            if committed.offset >= 0
        }

    async def describe(self, group_id: str) -> GroupSummary:
        return await self._coordinator.describe(group_id)


class RoutedGroupCalls(GroupCalls):
    """Each call at the agent coordinating the group: here (`local`) or there through `peers`
    (None: forwarding is off, for `off_because`)."""

    def __init__(
        self,
        local: GroupCalls,
        admin: AdminService,
        peers: PeerGroups | None,
        off_because: str = "forwarding to other agents is off",
    ) -> None:
        self._local = local
        self._admin = admin
        self._peers = peers
        self._off_because = off_because

    async def join(self, group_id: str, request: JoinRequest) -> JoinResponse:
        return await self._routed(
            group_id, lambda calls: calls.join(group_id, request), lambda a: a.error in _REFIND
        )

    async def sync(
        self, group_id: str, request: SyncRequest, *, rebalance_timeout_ms: int
    ) -> SyncResponse:
        return await self._routed(
            group_id,
            lambda calls: calls.sync(group_id, request, rebalance_timeout_ms=rebalance_timeout_ms),
            lambda answer: answer.error in _REFIND,
        )

    async def heartbeat(
        self, group_id: str, member_id: str, instance_id: str | None, generation: int
    ) -> ErrorCode:
        return await self._routed(
            group_id,
            lambda calls: calls.heartbeat(group_id, member_id, instance_id, generation),
            lambda error: error in _REFIND,
        )

    async def leave(
        self, group_id: str, leaving: Sequence[tuple[str, str | None]]
    ) -> list[MemberLeave]:
        return await self._routed(
            group_id,
            lambda calls: calls.leave(group_id, leaving),
            lambda answers: any(a.error in _REFIND for a in answers),
        )

    async def commit_offsets(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        instance_id: str | None,
        offsets: Mapping[TopicPartition, OffsetToCommit],
    ) -> dict[TopicPartition, ErrorCode]:
        return await self._routed(
            group_id,
            lambda calls: calls.commit_offsets(
                group_id, generation, member_id, instance_id, offsets
            ),
            lambda answers: any(code in _REFIND for code in answers.values()),
        )

    async def fetch_offsets(
        self, group_id: str, partitions: Sequence[TopicPartition] | None
    ) -> dict[TopicPartition, GroupOffset]:
        return await self._routed_raising(
            group_id, lambda calls: calls.fetch_offsets(group_id, partitions)
        )

    async def describe(self, group_id: str) -> GroupSummary:
        return await self._routed_raising(group_id, lambda calls: calls.describe(group_id))

    async def _routed_raising(self, group_id: str, call: Callable[[GroupCalls], Awaitable[T]]) -> T:
        """`call`, which raises its refusals, routed as `_routed`; the last refusal raised."""

        async def caught(calls: GroupCalls) -> T | StreamHouseError:
            try:
                return await call(calls)
            except (NotCoordinator, PeerUnreachable) as refused:
                return refused
            except StreamHouseError as refused:
                if refused.code not in _REFIND:
                    raise
                return refused

        answer = await self._routed(
            group_id, caught, lambda found: isinstance(found, StreamHouseError)
        )
        if isinstance(answer, StreamHouseError):
            raise answer
        return answer

    async def _routed(
        self,
        group_id: str,
        call: Callable[[GroupCalls], Awaitable[T]],
        refused: Callable[[T], bool],
    ) -> T:
        """`call` at the group's coordinator; when `refused` says the answer is a refusal, the
        coordinator is looked up again in the metadata store and, if it changed, asked once
        more."""
        slot = slot_of(group_id)
        coordinator = self._admin.cluster.coordinator(slot)
        for tries_left in reversed(range(COORDINATOR_TRIES_MAX)):
            answer = await call(self._calls_at(group_id, coordinator))
            if not tries_left or not refused(answer):
                return answer
            before, coordinator = coordinator, await self._coordinator_now(slot)
            if coordinator == before:
                return answer  # nobody else to ask
        raise AssertionError("unreachable: the last try returns")

    async def _coordinator_now(self, slot: TopicPartition) -> AgentAddress:
        """The slot's leader as the metadata store names it now (as it was last seen when the
        store cannot be read)."""
        hint = await self._admin.current_leader(slot, fresh=True)
        return self._admin.cluster.coordinator(slot) if hint is None else hint[0]

    def _calls_at(self, group_id: str, coordinator: AgentAddress) -> GroupCalls:
        if coordinator.agent_id == self._admin.cluster.agent_id:
            return self._local
        if self._peers is None:
            raise CoordinatedElsewhere(
                f"group {group_id!r} is coordinated by {describe(coordinator)}; {self._off_because}"
            )
        return self._peers.at(coordinator.host, coordinator.port)
