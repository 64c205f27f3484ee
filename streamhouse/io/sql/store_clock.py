"""The metadata store's own clock: the one time leases and agent heartbeats are judged by.

Expiry is decided by the store's time, read inside the transaction that judges it
(DESIGN §3), never by the clock of the agent that asks: an agent whose clock steps
or drifts cannot take a lease or outlive a heartbeat early. PostgreSQL reads the
server's `clock_timestamp()`; SQLite, whose file lives on one host, reads that
host's wall clock through an injectable callable (the simulator passes its modelled
store clock, tests a clock they move by hand).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Connection, Engine, text

StoreClock = Callable[[Connection], int]
"""The store's time in milliseconds since the Unix epoch, read on the transaction's connection."""

_SERVER_NOW_MS = text("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")


def server_clock(conn: Connection) -> int:
    """PostgreSQL's own time when the statement runs (not the transaction's start)."""
    return int(conn.execute(_SERVER_NOW_MS).scalar_one())


def host_wall_ms() -> int:
    """This host's wall clock in milliseconds."""
    return time.time_ns() // 1_000_000


def host_clock(read_ms: Callable[[], int] = host_wall_ms) -> StoreClock:
    """A store clock that is a clock of the host holding the database (SQLite)."""

    def now_ms(_conn: Connection) -> int:
        return read_ms()

    return now_ms


def default_store_clock(engine: Engine) -> StoreClock:
    """The server's clock for PostgreSQL, the host's wall clock for SQLite."""
    return server_clock if engine.dialect.name == "postgresql" else host_clock()
