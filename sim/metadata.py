"""Simulated metadata store: the real SQL adapter on in-memory SQLite, with seeded faults.

Reads and writes may fail cleanly (`MetadataUnavailable`, nothing happened);
writes may also fail with an unknown outcome (`MetadataUnknownOutcome`,
raised after the write happened). The faults come from one hook in the
adapter's transaction runner: one `unavailable_rate` draw before every read
and write, one `unknown_outcome_rate` draw after every write that
succeeded, all from the given SeededRng, so a seed replays the same faults.
A failover (`begin_failover` .. `end_failover`) refuses every call for a while
and then serves with the store's clock stepped, as a promoted replica would.
A wipe (`wipe`) loses the whole database: the store serves on as a blank one,
freshly migrated, with the same clock and fault injector (a disaster the
rebuild from the bucket answers).

The store judges lease and heartbeat expiry by its own clock (`clock`), a
Clock separate from every agent's: a simulated cluster gives it its own drift,
and a test that leaves it out gets a VirtualClock it moves by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.clock import VirtualClock, VirtualWallClock
from sim.rng import SeededRng
from streamhouse.errors import MetadataUnavailable, MetadataUnknownOutcome
from streamhouse.io.sql.store import SqlMetadataStore
from streamhouse.io.sql.store_clock import host_clock
from streamhouse.io.sql.transactions import CallHook, SqlTransactions, open_transactions, run_inline


@dataclass(frozen=True)
class MetadataFaults:
    """Per-call fault probabilities (0 = never, 1 = always)."""

    unavailable_rate: float = 0.0
    unknown_outcome_rate: float = 0.0


class MetadataFaultInjector(CallHook):
    """Draws each call's faults from the seed; `faults` may be replaced at any time."""

    def __init__(self, rng: SeededRng, faults: MetadataFaults) -> None:
        self.rng = rng
        self.faults = faults
        self.failovers = 0  # in progress: every call refused, as while a primary is promoted

    def before_call(self, op: str) -> None:
        if self.failovers:
            raise MetadataUnavailable(f"simulated failover: no primary to run {op}")
        if self.rng.chance(self.faults.unavailable_rate):
            raise MetadataUnavailable(f"simulated fault: metadata store unavailable for {op}")

    def after_write(self, op: str) -> None:
        if self.rng.chance(self.faults.unknown_outcome_rate):
            raise MetadataUnknownOutcome(
                f"simulated fault: {op} was applied but its outcome was lost"
            )


class SimMetadataStore(SqlMetadataStore):
    """A SqlMetadataStore on one shared in-memory SQLite connection, no threads, with faults.

    `faults` may be replaced at any time (e.g. healed for a liveness phase);
    `unfaulted` is the same database without faults, for the simulator's own reads.
    `clock` is the store's own clock (its wall time judges expiry).
    """

    def __init__(
        self,
        rng: SeededRng | None = None,
        faults: MetadataFaults | None = None,
        clock: VirtualWallClock | None = None,
    ) -> None:
        self._injector = MetadataFaultInjector(
            rng if rng is not None else SeededRng(0),
            faults if faults is not None else MetadataFaults(),
        )
        self.clock: VirtualWallClock = clock if clock is not None else VirtualClock()
        self.wipes = 0
        super().__init__(self._blank())

    def _blank(self) -> SqlTransactions:
        """A new in-memory database migrated to head, behind the injector, and its unfaulted
        twin (`unfaulted`)."""
        store_clock = host_clock(self.clock.now_ms)
        sql = open_transactions(
            "sqlite://", run_blocking=run_inline, hook=self._injector, store_clock=store_clock
        )
        self.unfaulted = SqlMetadataStore(
            SqlTransactions(sql.engine, run_inline, store_clock=store_clock)
        )
        return sql

    def wipe(self) -> None:
        """The database is lost: from now on every call reaches a blank, freshly migrated one
        (same clock, same faults). The old one is dropped whole: nothing of it is read again."""
        old = self._sql
        self._sql = self._blank()
        old.engine.dispose()
        self.wipes += 1

    def begin_failover(self) -> None:
        """The primary is gone: every call fails cleanly until as many `end_failover`s (one
        failover may begin while another is in progress)."""
        self._injector.failovers += 1

    def end_failover(self, clock_step_ms: int = 0) -> None:
        """A failover ends: its new primary's clock is `clock_step_ms` apart from the old
        one's; the store serves once no other failover is in progress."""
        assert self._injector.failovers > 0, "no failover in progress"
        self.clock.step_wall_ms(clock_step_ms)
        self._injector.failovers -= 1

    def end_every_failover(self) -> None:
        """Healed: no failover in progress any more."""
        self._injector.failovers = 0

    @property
    def faults(self) -> MetadataFaults:
        return self._injector.faults

    @faults.setter
    def faults(self, faults: MetadataFaults) -> None:
        self._injector.faults = faults
