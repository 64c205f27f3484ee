"""A lease as its holder sees it: taken or renewed through the store, led until a local deadline.

The metadata store grants a lease until `expires_ms` of its own clock (DESIGN §3),
a clock the holder cannot read. So the holder keeps a conservative deadline of its
own, on its monotonic clock:

    deadline = sent + lease_ttl_ms - lease_drift_margin_ms

where `sent` is the monotonic time it sent the acquire or renewal that succeeded.
Past the deadline it stops appending, stops acknowledging acks=1 writes and stops
serving reads as leader, until a renewal at the same epoch succeeds (acks=all needs
no deadline: its flush commit is fenced by the epoch in the store).

Why no agent's clock step can take a lease its holder still believes valid:

- Nobody hands the store a time. Another agent takes the lease only once the
  store's own clock has passed `expires_ms` = (the store's time inside the granting
  transaction) + TTL, and that transaction runs after the holder noted `sent`. So
  between `sent` and any takeover at least TTL of the store's time passes, whatever
  any agent's wall clock says, stepped or not.
- The holder's deadline is on its monotonic clock, which a wall-clock step does not
  move. Drift: a store clock at most `rs` fast turns TTL of its time into at least
  TTL / (1 + rs) real time; a holder's monotonic clock at most `ra` slow turns
  TTL - margin into at most (TTL - margin) / (1 - ra). A margin of at least
  TTL * (rs + ra) keeps the deadline first (Settings.lease_drift_margin_ms).
- Pauses (SIGSTOP, a frozen VM, the simulator's pause): the monotonic clock counts
  on while the process stands still, so a holder that resumes past its deadline
  finds it passed at its next check, and it checks before every append, every
  acks=1 answer and every read it serves as leader. A suspended machine stops
  Linux's CLOCK_MONOTONIC, so the real clock reads CLOCK_BOOTTIME
  (io/system_clock.py).
- A renewal whose request or answer waited (a pause, a slow store) extends the
  deadline only from when it was sent: the longer it waited, the less it buys.

What is left is the gap between a check and the bytes leaving the socket: an answer
decided in time may be delivered after the deadline. It says what was true when it
was decided, and a record it acknowledges carries the old epoch, so its loss to a
new leader is seen through leader epochs (DESIGN §6).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from streamhouse.config import Settings
from streamhouse.names import TopicPartition
from streamhouse.ports.clock import Clock
from streamhouse.ports.leases import LeaseStore


@dataclass(frozen=True)
class HeldLease:
    """A lease the store granted this agent: its epoch and the local deadline it gives."""

    epoch: int
    deadline_ms: int  # on this agent's monotonic clock


class LeaseHolder:
    """Takes and renews this agent's partition leases, noting when each request was sent."""

    def __init__(self, settings: Settings, clock: Clock, store: LeaseStore, agent_id: str) -> None:
        self._ttl_ms = settings.lease_ttl_ms
        self._margin_ms = settings.lease_drift_margin_ms
        self._clock = clock
        self._store = store
        self._agent_id = agent_id

    async def acquire(self, tp: TopicPartition) -> HeldLease | None:
        """Take or renew the lease; None when another agent holds it. Raises StorageError and
        UnknownTopicOrPartition."""
        sent_ms = self._clock.monotonic_ms()
        lease = await self._store.acquire_lease(tp, self._agent_id, self._ttl_ms)
        if lease is None:
            return None
        return HeldLease(lease.epoch, sent_ms + self._ttl_ms - self._margin_ms)

    async def renew(
        self, held: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, HeldLease | None]:
        """Renew the leases held at these epochs (partition -> epoch) in one store call: None
        where it moved on, no entry where the partition is gone. Raises StorageError."""
        sent_ms = self._clock.monotonic_ms()
        leases = await self._store.renew_leases(held, self._agent_id, self._ttl_ms)
        deadline_ms = sent_ms + self._ttl_ms - self._margin_ms
        return {
            tp: None if lease is None else HeldLease(lease.epoch, deadline_ms)
            for tp, lease in leases.items()
        }
