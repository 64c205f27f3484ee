"""Forwarding for the REST and gRPC doors: a partition another agent leads is served by asking
that agent, over its Kafka listener (the PeerRequests port), what this one would have done.

Kafka clients find a partition's leader themselves (Metadata) and are refused elsewhere; a door's
client talks to one agent, which then has to serve every partition of the cluster. Whether a
partition is led elsewhere is decided before the call, without a round trip when this agent
leads it: otherwise by the leader the metadata store names (`AdminService.current_leader`).
A refusal (NOT_LEADER_OR_FOLLOWER) here or at the peer re-reads the leader once and tries once
more there: a lease moving meanwhile costs one more request, never a loop. The peer's Kafka
door never forwards, so a request is forwarded at most once per try.

The peers speak to each other unauthenticated over plain TCP (agents hold no credentials of
their own): when the Kafka listener requires SASL or TLS there is no forwarding, and a
partition led elsewhere is refused NOT_LEADER_OR_FOLLOWER naming its leader.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from streamhouse.config import Settings
from streamhouse.engine.admin import AdminService
from streamhouse.engine.cluster import AgentAddress
from streamhouse.engine.log_store import LogStore
from streamhouse.errors import (
    ErrorCode,
    NotLeader,
    OffsetOutOfRange,
    RequestTimedOut,
    StreamHouseError,
    UnknownTopicOrPartition,
)
from streamhouse.names import TopicPartition
from streamhouse.ports.peers import PeerRequests

T = TypeVar("T")
PLAIN_LISTENER = "PLAINTEXT"  # the only listener agents can speak to each other on
# The leader as last read, then once more as the store names it after a refusal
FORWARD_TRIES_MAX = 2
_ERROR_CLASSES: dict[ErrorCode, type[StreamHouseError]] = {
    ErrorCode.NOT_LEADER_OR_FOLLOWER: NotLeader,
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: UnknownTopicOrPartition,
    ErrorCode.OFFSET_OUT_OF_RANGE: OffsetOutOfRange,
    ErrorCode.REQUEST_TIMED_OUT: RequestTimedOut,
}


class Forwarding:
    """Where a door's request for a partition is served: here, or at its leader through
    `peers` (None: forwarding is off, for `off_because`)."""

    def __init__(
        self,
        admin: AdminService,
        log: LogStore,
        peers: PeerRequests | None,
        off_because: str = "forwarding to other agents is off",
    ) -> None:
        self._admin = admin
        self._log = log
        self._peers = peers
        self._off_because = off_because

    @property
    def peers(self) -> PeerRequests | None:
        """The port to the other agents; None when forwarding is off."""
        return self._peers

    async def leader_elsewhere(
        self, tp: TopicPartition, *, fresh: bool = False
    ) -> AgentAddress | None:
        """The agent leading `tp` when it is not this one; None when this one leads it, may
        take it, or the store cannot say (served here, refused here if need be)."""
        if self._log.led_partition(tp) is not None:
            return None
        hint = await self._admin.current_leader(tp, fresh=fresh)
        if hint is None:
            return None
        leader, _ = hint
        return None if leader.agent_id == self._admin.cluster.agent_id else leader

    async def serve(
        self,
        tp: TopicPartition,
        here: Callable[[], Awaitable[T]],
        there: Callable[[PeerRequests, AgentAddress], Awaitable[T]],
    ) -> T:
        """`here()` when this agent leads `tp`, else `there(peers, leader)`; a NotLeader from
        either re-reads the leader once and tries there (or here) once more."""
        leader = await self.leader_elsewhere(tp)
        for tries_left in reversed(range(FORWARD_TRIES_MAX)):
            try:
                if leader is None:
                    return await here()
                return await there(self._peers_to(tp, leader), leader)
            except NotLeader:
                if not tries_left:
                    raise
                before, leader = leader, await self.leader_elsewhere(tp, fresh=True)
                if leader == before:
                    raise  # nobody else to ask
        raise AssertionError("unreachable: the last try returns or raises")

    def _peers_to(self, tp: TopicPartition, leader: AgentAddress) -> PeerRequests:
        if self._peers is None:
            raise NotLeader(f"{tp} is led by {describe(leader)}; {self._off_because}")
        return self._peers


def forwarding_refused(settings: Settings) -> str | None:
    """Why this agent's doors cannot forward to the others; None when they can."""
    protocol = settings.kafka_security_protocol
    if protocol == PLAIN_LISTENER:
        return None
    return (
        f"this agent does not forward to it: the Kafka listeners require {protocol} and agents "
        "hold no credentials of their own; send the request to that agent's door, or use a "
        "Kafka client (it finds each partition's leader itself)"
    )


def describe(agent: AgentAddress) -> str:
    """An agent as an error message names it."""
    return f"agent {agent.agent_id} (node {agent.node_id}, {agent.host}:{agent.port})"


def peer_error(
    tp: TopicPartition, leader: AgentAddress, code: int, message: str | None
) -> StreamHouseError:
    """The error a leader answered for `tp`, as the engine raises it, naming the leader."""
    try:
        known = ErrorCode(code)
    except ValueError:
        known = ErrorCode.UNKNOWN_SERVER_ERROR
    text = f"{tp} at its leader, {describe(leader)}: {message or known.name}"
    kind = _ERROR_CLASSES.get(known)
    return kind(text) if kind is not None else StreamHouseError(text, known)
