"""How every metadata port reaches the database: engines, one transaction per call, errors.

`create_metadata_engine` opens SQLite (embedded; writers take the write lock
up front with BEGIN IMMEDIATE) or PostgreSQL. `SqlTransactions` runs a
statement function (`fn(connection, *args)`) in one transaction through a
`BlockingRunner` (a thread hop for the real agent, a direct call under
simulation) and maps driver failures onto the port's errors: nothing
committed is `MetadataUnavailable`, a write whose commit failed is
`MetadataUnknownOutcome`. Its `CallHook` sees every call before it starts and
every write after it committed: where the simulator injects its faults. Its
`store_clock` is the store's time that statements judge expiry by.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, RootTransaction, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import StaticPool

from streamhouse.errors import MetadataUnavailable, MetadataUnknownOutcome
from streamhouse.io.sql.migrations import upgrade_to_head
from streamhouse.io.sql.store_clock import StoreClock, default_store_clock

T = TypeVar("T")
P = ParamSpec("P")

SQLITE_BUSY_TIMEOUT_MS = 5_000
MIGRATE_ATTEMPTS_MAX = 6
MIGRATE_RETRY_WAIT_S = 0.25  # times the attempt: under 4 s in all
POSTGRES_CONNECT_TIMEOUT_S = 10

# Execution option marking a connection whose transaction writes: SQLite then
# begins with BEGIN IMMEDIATE, taking the write lock up front.
_WRITE_OPTION = "streamhouse_write"


class BlockingRunner(Protocol):
    """Runs a blocking function and awaits its result (`asyncio.to_thread`, or inline)."""

    def __call__(self, fn: Callable[[], T], /) -> Awaitable[T]: ...


async def run_inline(fn: Callable[[], T]) -> T:
    """A BlockingRunner that calls `fn` on the event loop's thread (simulation: no threads)."""
    return fn()


class CallHook:
    """Sees every port call of a store; this one lets them all through.

    `before_call` runs before a read or write starts (raising there means the
    call never happened); `after_write` runs once a write committed (raising
    there hides a change that was made).
    """

    def before_call(self, op: str) -> None:
        """A read or write named `op` is about to start."""

    def after_write(self, op: str) -> None:
        """The write named `op` committed."""


# ---------------------------------------------------------------- engines


def create_metadata_engine(url: str, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> Engine:
    """An Engine for "sqlite:///path", "sqlite://" (in memory) or "postgresql://..."."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, busy_timeout_ms)
    if backend in ("postgresql", "postgres"):
        return _postgres_engine(parsed)
    shown = parsed.render_as_string(hide_password=True)
    raise ValueError(
        f"unsupported metadata store URL {shown!r}: use sqlite:///path/to/file.db "
        "or postgresql://user@host:port/database"
    )


def _sqlite_engine(url: URL, busy_timeout_ms: int) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    connect_args = {"check_same_thread": False, "timeout": busy_timeout_ms / 1000}
    if in_memory:
        engine = create_engine(url, connect_args=connect_args, poolclass=StaticPool)
    else:
        engine = create_engine(url, connect_args=connect_args)
    event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms, on_file=not in_memory))
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_pragmas(busy_timeout_ms: int, *, on_file: bool) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Stop the driver from issuing its own BEGIN; `_sqlite_begin` does it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if on_file:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    return on_connect


def _sqlite_begin(connection: Connection) -> None:
    writes = bool(connection.get_execution_options().get(_WRITE_OPTION))
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


def _postgres_engine(url: URL) -> Engine:
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    connect_args: dict[str, Any] = {"application_name": "streamhouse"}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_S
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


# ---------------------------------------------------------------- transactions


def open_transactions(
    url: str,
    *,
    run_blocking: BlockingRunner = asyncio.to_thread,
    hook: CallHook | None = None,
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    store_clock: StoreClock | None = None,
) -> SqlTransactions:
    """Transactions on the database at `url`, its schema migrated to head first. An in-memory
    SQLite database is one connection every caller shares: its calls must never overlap, so
    they run on the event loop's thread, one at a time, whatever `run_blocking` says.
    `store_clock`: the database's own clock unless given (`store_clock.default_store_clock`)."""
    engine = create_metadata_engine(url, busy_timeout_ms=busy_timeout_ms)
    if isinstance(engine.pool, StaticPool):
        run_blocking = run_inline
    sql = SqlTransactions(engine, run_blocking, hook, store_clock)
    try:
        _migrate_retried(sql)
    except BaseException:
        engine.dispose()
        raise
    return sql


def _migrate_retried(sql: SqlTransactions) -> None:
    """Migrate, trying again a few times while the store is busy: agents that start together
    on one new SQLite file (`--processes N`, a cluster rebuilt at once) find it locked by the
    one migrating (its switch to WAL mode does not wait). Raises MetadataUnavailable."""
    for attempt in range(1, MIGRATE_ATTEMPTS_MAX + 1):
        try:
            sql.migrate()
            return
        except MetadataUnavailable:
            if attempt == MIGRATE_ATTEMPTS_MAX:
                raise
            time.sleep(MIGRATE_RETRY_WAIT_S * attempt)


class SqlTransactions:
    """Runs each port call's statement function in one transaction of `engine`."""

    def __init__(
        self,
        engine: Engine,
        run_blocking: BlockingRunner,
        hook: CallHook | None = None,
        store_clock: StoreClock | None = None,
    ) -> None:
        self.engine = engine
        self.store_clock = store_clock or default_store_clock(engine)
        self._run = run_blocking
        self._hook = hook if hook is not None else CallHook()
        self._where = engine.url.render_as_string(hide_password=True)

    async def read(
        self,
        op: str,
        statement: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`statement(connection, *args, **kwargs)` in a read transaction."""
        return await self._call(op, lambda conn: statement(conn, *args, **kwargs), writes=False)

    async def read_consistent(self, op: str, statement: Callable[[Connection], T]) -> T:
        """`statement(connection)` in a read transaction that sees one moment of the whole
        store (PostgreSQL's REPEATABLE READ; a SQLite read transaction always does)."""
        return await self._call(op, statement, writes=False, consistent=True)

    async def write(
        self,
        op: str,
        statement: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`statement(connection, *args, **kwargs)` in a write transaction."""
        return await self._call(op, lambda conn: statement(conn, *args, **kwargs), writes=True)

    async def _call(
        self, op: str, work: Callable[[Connection], T], *, writes: bool, consistent: bool = False
    ) -> T:
        self._hook.before_call(op)
        result = await self._run(
            lambda: self._transact(op, work, writes=writes, consistent=consistent)
        )
        if writes:
            self._hook.after_write(op)
        return result

    def migrate(self) -> None:
        """Apply pending schema migrations (blocking; idempotent; safe with several agents)."""
        self._transact("migrate", upgrade_to_head, writes=True)

    async def close(self) -> None:
        """Release the engine's connections."""
        await self._run(self.engine.dispose)

    def _transact(
        self, op: str, work: Callable[[Connection], T], *, writes: bool, consistent: bool = False
    ) -> T:
        try:
            with self.engine.connect() as conn:
                if writes:
                    conn.execution_options(**{_WRITE_OPTION: True})
                if consistent and conn.dialect.name == "postgresql":
                    conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin() as transaction:
                    result = work(conn)
                    self._commit(op, conn, transaction, writes=writes)
                return result
        except (DBAPIError, PoolTimeoutError) as exc:
            if not _is_unavailable(exc):
                raise
            raise MetadataUnavailable(self._unavailable_message(op, exc)) from exc

    def _commit(
        self, op: str, conn: Connection, transaction: RootTransaction, *, writes: bool
    ) -> None:
        try:
            transaction.commit()
        except DBAPIError as exc:
            # The session's state is unknown (SQLite may even still be inside the
            # transaction): never hand this connection out again.
            with contextlib.suppress(Exception):
                conn.invalidate()
            if not writes:
                raise
            raise MetadataUnknownOutcome(
                f"metadata store {self._where} failed while committing {op}: "
                f"{_first_line(exc)}. The change may or may not have been applied; "
                "re-read the state before acting on it (commit_flush may simply be retried)."
            ) from exc

    def _unavailable_message(self, op: str, exc: Exception) -> str:
        return (
            f"metadata store {self._where} unavailable during {op}: {_first_line(exc)}. "
            "Nothing was committed. Check that the database is running and reachable "
            "(for SQLite: that the file's directory exists and is writable and no other "
            "process holds a long write transaction), then retry."
        )


class SqlAdapter:
    """Base of each port's SQL adapter: the transactions its calls run in."""

    def __init__(self, sql: SqlTransactions) -> None:
        self._sql = sql


def _is_unavailable(exc: Exception) -> bool:
    if isinstance(exc, OperationalError | PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _first_line(exc: Exception) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__
