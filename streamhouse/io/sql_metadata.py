"""SQL adapter of the MetadataStore port: SQLite (embedded) or PostgreSQL through SQLAlchemy Core.

`SqlMetadataCore` does the work synchronously, one transaction per call;
`SqlMetadataStore` exposes it as the async port through a `BlockingRunner`
(a thread hop for the real agent, a direct call under simulation).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import astuple
from typing import Any, Protocol, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Insert,
    Row,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, RootTransaction, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import StaticPool

from streamhouse.errors import (
    InvalidPartitions,
    MetadataUnavailable,
    MetadataUnknownOutcome,
    TopicAlreadyExists,
    UnknownTopicOrPartition,
)
from streamhouse.io.migrations import upgrade_to_head
from streamhouse.io.sql_schema import (
    PRODUCER_ID_COUNTER,
    committed_offsets,
    counters,
    flush_outcomes,
    group_generations,
    objects,
    partitions,
    producer_states,
    retired_epochs,
    segments,
    topics,
)
from streamhouse.log.producer_state import ProducerSnapshot, SequencedBatch, folded
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import CommittedOffset
from streamhouse.ports.leases import FlushCommit, FlushOutcome, Lease, ObjectRecord, SegmentRecord
from streamhouse.ports.metadata import MetadataStore
from streamhouse.ports.topics import PartitionRecord, TopicRecord

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 5_000
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


# ---------------------------------------------------------------- store


def open_sql_metadata(
    url: str,
    *,
    run_blocking: BlockingRunner = asyncio.to_thread,
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
) -> SqlMetadataStore:
    """Open the store (by default blocking calls run on threads) and migrate it to head."""
    engine = create_metadata_engine(url, busy_timeout_ms=busy_timeout_ms)
    store = SqlMetadataStore(engine, run_blocking)
    try:
        store.core.migrate()
    except BaseException:
        engine.dispose()
        raise
    return store


class SqlMetadataStore(MetadataStore):
    """The MetadataStore port over `SqlMetadataCore`; blocking work goes through `run_blocking`."""

    def __init__(self, engine: Engine, run_blocking: BlockingRunner) -> None:
        self.core = SqlMetadataCore(engine)
        self._run = run_blocking

    async def create_topic(
        self, name: str, partition_count: int, configs: Mapping[str, str], now_ms: int
    ) -> TopicRecord:
        return await self._run(
            lambda: self.core.create_topic(name, partition_count, configs, now_ms)
        )

    async def get_topic(self, name: str) -> TopicRecord | None:
        return await self._run(lambda: self.core.get_topic(name))

    async def list_topics(self) -> list[TopicRecord]:
        return await self._run(self.core.list_topics)

    async def delete_topic(self, name: str) -> None:
        await self._run(lambda: self.core.delete_topic(name))

    async def add_partitions(self, name: str, new_total: int) -> TopicRecord:
        return await self._run(lambda: self.core.add_partitions(name, new_total))

    async def set_topic_configs(
        self, name: str, configs: Mapping[str, str | None], *, incremental: bool
    ) -> TopicRecord:
        return await self._run(
            lambda: self.core.set_topic_configs(name, configs, incremental=incremental)
        )

    async def get_partition(self, tp: TopicPartition) -> PartitionRecord:
        return await self._run(lambda: self.core.get_partition(tp))

    async def acquire_lease(
        self, tp: TopicPartition, agent: str, now_ms: int, ttl_ms: int
    ) -> Lease | None:
        return await self._run(lambda: self.core.acquire_lease(tp, agent, now_ms, ttl_ms))

    async def fence_own_leases(self, agent: str) -> int:
        return await self._run(lambda: self.core.fence_own_leases(agent))

    async def release_lease(self, tp: TopicPartition, agent: str) -> None:
        await self._run(lambda: self.core.release_lease(tp, agent))

    async def commit_flush(self, commit: FlushCommit) -> FlushOutcome:
        return await self._run(lambda: self.core.commit_flush(commit))

    async def list_segments(
        self, tp: TopicPartition, from_offset: int = 0, limit: int = 1000
    ) -> list[SegmentRecord]:
        return await self._run(lambda: self.core.list_segments(tp, from_offset, limit))

    async def list_objects(self) -> list[ObjectRecord]:
        return await self._run(self.core.list_objects)

    async def set_log_start_offset(self, tp: TopicPartition, offset: int) -> int:
        return await self._run(lambda: self.core.set_log_start_offset(tp, offset))

    async def list_producer_states(self, tp: TopicPartition) -> list[ProducerSnapshot]:
        return await self._run(lambda: self.core.list_producer_states(tp))

    async def reserve_group_generations(self, group_id: str, count: int) -> int:
        return await self._run(lambda: self.core.reserve_group_generations(group_id, count))

    async def allocate_producer_id(self) -> int:
        return await self._run(self.core.allocate_producer_id)

    async def commit_offsets(
        self, group_id: str, offsets: Mapping[TopicPartition, CommittedOffset]
    ) -> None:
        await self._run(lambda: self.core.commit_offsets(group_id, offsets))

    async def fetch_offsets(
        self, group_id: str, partitions: Sequence[TopicPartition] | None = None
    ) -> dict[TopicPartition, CommittedOffset]:
        return await self._run(lambda: self.core.fetch_offsets(group_id, partitions))

    async def delete_offsets(self, group_id: str, partitions: Sequence[TopicPartition]) -> None:
        await self._run(lambda: self.core.delete_offsets(group_id, partitions))

    async def delete_group_offsets(self, group_id: str) -> None:
        await self._run(lambda: self.core.delete_group_offsets(group_id))

    async def list_offset_groups(self) -> list[str]:
        return await self._run(self.core.list_offset_groups)

    async def expire_offsets(self, group_id: str, committed_before_ms: int) -> int:
        return await self._run(lambda: self.core.expire_offsets(group_id, committed_before_ms))

    async def close(self) -> None:
        await self._run(self.core.close)


class _ObjectKeyTaken(Exception):
    """Another transaction inserted the object first (a concurrent replay of one flush)."""


class SqlMetadataCore:
    """Synchronous implementation of every port method, one transaction per call."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._where = engine.url.render_as_string(hide_password=True)

    def migrate(self) -> None:
        """Apply pending schema migrations (idempotent; safe with several agents)."""
        self._write("migrate", upgrade_to_head)

    def close(self) -> None:
        self.engine.dispose()

    # topics

    def create_topic(
        self, name: str, partition_count: int, configs: Mapping[str, str], now_ms: int
    ) -> TopicRecord:
        if partition_count < 1:
            raise InvalidPartitions(
                f"topic {name!r} needs at least one partition, got {partition_count}"
            )
        record = TopicRecord(name, partition_count, dict(configs), now_ms)
        return self._write("create_topic", lambda conn: _insert_topic(conn, record))

    def get_topic(self, name: str) -> TopicRecord | None:
        return self._read("get_topic", lambda conn: _select_topic(conn, name))

    def list_topics(self) -> list[TopicRecord]:
        query = select(topics).order_by(topics.c.name)
        return self._read(
            "list_topics", lambda conn: [_topic_record(row) for row in conn.execute(query)]
        )

    def delete_topic(self, name: str) -> None:
        self._write("delete_topic", lambda conn: _delete_topic(conn, name))

    def add_partitions(self, name: str, new_total: int) -> TopicRecord:
        return self._write("add_partitions", lambda conn: _add_partitions(conn, name, new_total))

    def set_topic_configs(
        self, name: str, configs: Mapping[str, str | None], *, incremental: bool
    ) -> TopicRecord:
        return self._write(
            "set_topic_configs",
            lambda conn: _set_topic_configs(conn, name, dict(configs), incremental=incremental),
        )

    # partitions and leases

    def get_partition(self, tp: TopicPartition) -> PartitionRecord:
        return self._read("get_partition", lambda conn: _partition(conn, tp, lock=False))

    def acquire_lease(
        self, tp: TopicPartition, agent: str, now_ms: int, ttl_ms: int
    ) -> Lease | None:
        assert ttl_ms > 0, f"lease ttl must be positive, got {ttl_ms} ms"
        return self._write(
            "acquire_lease", lambda conn: _acquire_lease(conn, tp, agent, now_ms, ttl_ms)
        )

    def fence_own_leases(self, agent: str) -> int:
        return self._write("fence_own_leases", lambda conn: _fence_own_leases(conn, agent))

    def release_lease(self, tp: TopicPartition, agent: str) -> None:
        self._write("release_lease", lambda conn: _release_lease(conn, tp, agent))

    def set_log_start_offset(self, tp: TopicPartition, offset: int) -> int:
        return self._write("set_log_start_offset", lambda conn: _raise_log_start(conn, tp, offset))

    # idempotent producers

    def list_producer_states(self, tp: TopicPartition) -> list[ProducerSnapshot]:
        return self._read("list_producer_states", lambda conn: _producer_states(conn, tp))

    def reserve_group_generations(self, group_id: str, count: int) -> int:
        assert count > 0, count
        return self._write(
            "reserve_group_generations", lambda conn: _reserve_generations(conn, group_id, count)
        )

    def allocate_producer_id(self) -> int:
        return self._write("allocate_producer_id", _next_producer_id)

    # flushes

    def commit_flush(self, commit: FlushCommit) -> FlushOutcome:
        _check_commit_shape(commit)
        try:
            return self._write("commit_flush", lambda conn: _commit_flush(conn, commit))
        except _ObjectKeyTaken:
            key = commit.obj.key
            stored = self._read("commit_flush", lambda conn: _stored_outcome(conn, key))
            if stored is None:
                raise AssertionError(
                    f"object {key!r} is in the objects table but has no flush outcome"
                ) from None
            return stored

    def list_segments(
        self, tp: TopicPartition, from_offset: int = 0, limit: int = 1000
    ) -> list[SegmentRecord]:
        return self._read(
            "list_segments", lambda conn: _select_segments(conn, tp, from_offset, limit)
        )

    def list_objects(self) -> list[ObjectRecord]:
        query = select(objects).order_by(objects.c.key)
        return self._read(
            "list_objects", lambda conn: [_object_record(row) for row in conn.execute(query)]
        )

    # consumer group offsets

    def commit_offsets(
        self, group_id: str, offsets: Mapping[TopicPartition, CommittedOffset]
    ) -> None:
        if offsets:
            self._write("commit_offsets", lambda conn: _upsert_offsets(conn, group_id, offsets))

    def fetch_offsets(
        self, group_id: str, partitions: Sequence[TopicPartition] | None = None
    ) -> dict[TopicPartition, CommittedOffset]:
        wanted = None if partitions is None else set(partitions)
        return self._read("fetch_offsets", lambda conn: _select_offsets(conn, group_id, wanted))

    def delete_offsets(self, group_id: str, partitions: Sequence[TopicPartition]) -> None:
        if partitions:
            self._write(
                "delete_offsets", lambda conn: _delete_offsets(conn, group_id, set(partitions))
            )

    def delete_group_offsets(self, group_id: str) -> None:
        statement = delete(committed_offsets).where(committed_offsets.c.group_id == group_id)
        self._write("delete_group_offsets", lambda conn: conn.execute(statement))

    def list_offset_groups(self) -> list[str]:
        query = (
            select(committed_offsets.c.group_id).distinct().order_by(committed_offsets.c.group_id)
        )
        return self._read("list_offset_groups", lambda conn: list(conn.scalars(query)))

    def expire_offsets(self, group_id: str, committed_before_ms: int) -> int:
        statement = delete(committed_offsets).where(
            committed_offsets.c.group_id == group_id,
            committed_offsets.c.commit_ms < committed_before_ms,
        )
        return self._write("expire_offsets", lambda conn: conn.execute(statement).rowcount)

    # transactions and error mapping

    def _read(self, op: str, work: Callable[[Connection], T]) -> T:
        return self._transact(op, work, writes=False)

    def _write(self, op: str, work: Callable[[Connection], T]) -> T:
        return self._transact(op, work, writes=True)

    def _transact(self, op: str, work: Callable[[Connection], T], *, writes: bool) -> T:
        try:
            with self.engine.connect() as conn:
                if writes:
                    conn.execution_options(**{_WRITE_OPTION: True})
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


def _is_unavailable(exc: Exception) -> bool:
    if isinstance(exc, OperationalError | PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _first_line(exc: Exception) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__


# ---------------------------------------------------------------- topic statements


def _insert_topic(conn: Connection, record: TopicRecord) -> TopicRecord:
    if _select_topic(conn, record.name) is not None:
        raise TopicAlreadyExists(f"topic {record.name!r} already exists")
    values = {
        "name": record.name,
        "partition_count": record.partition_count,
        "configs": json.dumps(dict(record.configs), sort_keys=True),
        "created_ms": record.created_ms,
    }
    try:
        conn.execute(insert(topics).values(values))
    except IntegrityError as exc:  # created concurrently since the check above
        raise TopicAlreadyExists(f"topic {record.name!r} already exists") from exc
    _insert_partitions(conn, record.name, range(record.partition_count))
    return record


def _insert_partitions(conn: Connection, topic: str, indexes: range) -> None:
    """New partitions start at the epoch a deleted namesake ended at, so an agent still holding
    a lease on the deleted topic can never match an epoch of the new one."""
    retired = select(retired_epochs).where(retired_epochs.c.topic == topic)
    floors = {row.partition: row.leader_epoch for row in conn.execute(retired)}
    rows = [_new_partition_row(topic, index, floors.get(index, 0)) for index in indexes]
    conn.execute(insert(partitions), rows)


def _retire_epochs(conn: Connection, topic: str) -> None:
    """Remember where each partition's epoch ended (plus one) before the topic goes."""
    ended = conn.execute(select(partitions).where(partitions.c.topic == topic))
    rows = [
        {"topic": topic, "partition": row.partition, "leader_epoch": row.leader_epoch + 1}
        for row in ended
    ]
    if not rows:
        return
    ending = [row["partition"] for row in rows]  # earlier namesakes' other partitions stay
    conn.execute(
        delete(retired_epochs).where(
            retired_epochs.c.topic == topic, retired_epochs.c.partition.in_(ending)
        )
    )
    conn.execute(insert(retired_epochs), rows)


def _new_partition_row(topic: str, partition: int, leader_epoch: int) -> dict[str, Any]:
    return {
        "topic": topic,
        "partition": partition,
        "leader_agent": None,
        "leader_epoch": leader_epoch,
        "lease_expires_ms": 0,
        "durable_end_offset": 0,
        "log_start_offset": 0,
    }


def _select_topic(conn: Connection, name: str) -> TopicRecord | None:
    row = conn.execute(select(topics).where(topics.c.name == name)).first()
    return None if row is None else _topic_record(row)


def _delete_topic(conn: Connection, name: str) -> None:
    # Lock the partitions in key order first, as commit_flush does, so the two
    # cannot deadlock on PostgreSQL.
    conn.execute(
        select(partitions.c.partition)
        .where(partitions.c.topic == name)
        .order_by(partitions.c.partition)
        .with_for_update()
    ).all()
    _retire_epochs(conn, name)
    conn.execute(delete(segments).where(segments.c.topic == name))
    conn.execute(delete(committed_offsets).where(committed_offsets.c.topic == name))
    conn.execute(delete(producer_states).where(producer_states.c.topic == name))
    conn.execute(delete(partitions).where(partitions.c.topic == name))
    deleted = conn.execute(delete(topics).where(topics.c.name == name))
    if deleted.rowcount == 0:
        raise UnknownTopicOrPartition(f"topic {name!r} does not exist")


def _locked_topic(conn: Connection, name: str) -> TopicRecord:
    row = conn.execute(select(topics).where(topics.c.name == name).with_for_update()).first()
    if row is None:
        raise UnknownTopicOrPartition(f"topic {name!r} does not exist")
    return _topic_record(row)


def _add_partitions(conn: Connection, name: str, new_total: int) -> TopicRecord:
    topic = _locked_topic(conn, name)
    if new_total <= topic.partition_count:
        raise InvalidPartitions(
            f"topic {name!r} has {topic.partition_count} partitions; "
            f"asked for {new_total}, which is not more"
        )
    conn.execute(update(topics).where(topics.c.name == name).values(partition_count=new_total))
    _insert_partitions(conn, name, range(topic.partition_count, new_total))
    return TopicRecord(name, new_total, topic.configs, topic.created_ms)


def _set_topic_configs(
    conn: Connection, name: str, changes: dict[str, str | None], *, incremental: bool
) -> TopicRecord:
    topic = _locked_topic(conn, name)
    configs = dict(topic.configs) if incremental else {}
    for key, value in changes.items():
        if value is None:
            configs.pop(key, None)
        else:
            configs[key] = value
    conn.execute(
        update(topics)
        .where(topics.c.name == name)
        .values(configs=json.dumps(configs, sort_keys=True))
    )
    return TopicRecord(name, topic.partition_count, configs, topic.created_ms)


# ---------------------------------------------------------------- partition statements


def _partition(conn: Connection, tp: TopicPartition, *, lock: bool) -> PartitionRecord:
    record = _find_partition(conn, tp, lock=lock)
    if record is None:
        raise UnknownTopicOrPartition(f"partition {tp} does not exist")
    return record


def _find_partition(conn: Connection, tp: TopicPartition, *, lock: bool) -> PartitionRecord | None:
    query = select(partitions).where(
        partitions.c.topic == tp.topic, partitions.c.partition == tp.partition
    )
    if lock:
        # Writers here change no key column: FOR NO KEY UPDATE on PostgreSQL, so
        # rows that only reference the partition (offset commits) need not wait.
        query = query.with_for_update(key_share=True)
    row = conn.execute(query).first()
    return None if row is None else _partition_record(row)


def _update_partition(conn: Connection, tp: TopicPartition, **values: Any) -> None:
    conn.execute(
        update(partitions)
        .where(partitions.c.topic == tp.topic, partitions.c.partition == tp.partition)
        .values(**values)
    )


def _acquire_lease(
    conn: Connection, tp: TopicPartition, agent: str, now_ms: int, ttl_ms: int
) -> Lease | None:
    current = _partition(conn, tp, lock=True)
    if current.leader_agent == agent:
        epoch = current.leader_epoch
    elif current.leader_agent is not None and current.lease_expires_ms > now_ms:
        return None
    else:
        epoch = current.leader_epoch + 1
    expires_ms = now_ms + ttl_ms
    _update_partition(conn, tp, leader_agent=agent, leader_epoch=epoch, lease_expires_ms=expires_ms)
    return Lease(tp, agent, epoch, expires_ms)


def _fence_own_leases(conn: Connection, agent: str) -> int:
    held = conn.execute(
        select(partitions.c.topic, partitions.c.partition, partitions.c.leader_epoch)
        .where(partitions.c.leader_agent == agent)
        .order_by(partitions.c.topic, partitions.c.partition)  # commit_flush's lock order
        .with_for_update()
    ).all()
    for row in held:
        tp = TopicPartition(row.topic, row.partition)
        _update_partition(conn, tp, leader_epoch=row.leader_epoch + 1, lease_expires_ms=0)
    return len(held)


def _release_lease(conn: Connection, tp: TopicPartition, agent: str) -> None:
    current = _partition(conn, tp, lock=True)
    if current.leader_agent == agent:
        # Expired at any time; the holder stays recorded so that it renews the
        # same epoch if it comes back before anyone else takes the lease.
        _update_partition(conn, tp, lease_expires_ms=0)


def _raise_log_start(conn: Connection, tp: TopicPartition, offset: int) -> int:
    current = _partition(conn, tp, lock=True)
    if offset <= current.log_start_offset:
        return current.log_start_offset
    _update_partition(conn, tp, log_start_offset=offset)
    return offset


# ---------------------------------------------------------------- flush statements


def _check_commit_shape(commit: FlushCommit) -> None:
    """A flush whose rows name another object or an unlisted partition is an engine bug."""
    for segment in commit.segments:
        if segment.object_key != commit.obj.key:
            raise AssertionError(
                f"flush of object {commit.obj.key!r} carries a segment of object "
                f"{segment.object_key!r}"
            )
        if segment.tp not in commit.epochs:
            raise AssertionError(
                f"flush of object {commit.obj.key!r} has rows for {segment.tp} "
                "but no lease epoch for it"
            )
        if segment.last_offset < segment.base_offset:
            raise AssertionError(
                f"flush of object {commit.obj.key!r}: segment of {segment.tp} ends at "
                f"{segment.last_offset}, before its base offset {segment.base_offset}"
            )


def _commit_flush(conn: Connection, commit: FlushCommit) -> FlushOutcome:
    stored = _stored_outcome(conn, commit.obj.key)
    if stored is not None:
        return stored
    _insert_object(conn, commit.obj)
    rows_by_tp = _segments_by_partition(commit.segments)
    committed: set[TopicPartition] = set()
    fenced: set[TopicPartition] = set()
    for tp in sorted(commit.epochs):  # one lock order for every writer
        current = _find_partition(conn, tp, lock=True)
        if current is None or current.leader_epoch != commit.epochs[tp]:
            fenced.add(tp)
            continue
        _append_segments(conn, commit.obj.key, current, rows_by_tp.get(tp, []))
        _fold_producers(conn, tp, commit)
        committed.add(tp)
    outcome = FlushOutcome(frozenset(committed), frozenset(fenced))
    conn.execute(
        insert(flush_outcomes).values(
            object_key=commit.obj.key,
            committed=_encode_partitions(outcome.committed),
            fenced=_encode_partitions(outcome.fenced),
        )
    )
    return outcome


# ---------------------------------------------------------------- producer statements


def _producer_states(conn: Connection, tp: TopicPartition) -> list[ProducerSnapshot]:
    query = (
        select(producer_states)
        .where(producer_states.c.topic == tp.topic, producer_states.c.partition == tp.partition)
        .order_by(producer_states.c.producer_id)
    )
    return [_producer_snapshot(row) for row in conn.execute(query)]


def _producer_snapshot(row: Row[Any]) -> ProducerSnapshot:
    batches = tuple(SequencedBatch(*batch) for batch in json.loads(row.batches))
    return ProducerSnapshot(row.producer_id, row.producer_epoch, batches, row.last_append_ms)


def _fold_producers(conn: Connection, tp: TopicPartition, commit: FlushCommit) -> None:
    """Fold the flush's idempotent batches into the stored states; drop expired ones (readers
    skip expired states too, so a partition without idempotent writes may keep them a while)."""
    produced = commit.producers.get(tp, ())
    if not produced:
        return  # partitions without idempotent writes cost this flush nothing
    here = (producer_states.c.topic == tp.topic, producer_states.c.partition == tp.partition)
    conn.execute(
        delete(producer_states).where(
            *here, producer_states.c.last_append_ms < commit.producers_expire_before_ms
        )
    )
    touched = {p.producer_id for p in produced}
    stored = {
        row.producer_id: _producer_snapshot(row)
        for row in conn.execute(
            select(producer_states).where(*here, producer_states.c.producer_id.in_(touched))
        )
    }
    states: dict[int, ProducerSnapshot] = {}
    for producer in produced:
        previous = states.get(producer.producer_id) or stored.get(producer.producer_id)
        states[producer.producer_id] = folded(previous, producer, commit.obj.created_ms)
    conn.execute(delete(producer_states).where(*here, producer_states.c.producer_id.in_(touched)))
    conn.execute(
        insert(producer_states),
        [
            {
                "topic": tp.topic,
                "partition": tp.partition,
                "producer_id": state.producer_id,
                "producer_epoch": state.producer_epoch,
                "batches": json.dumps([list(astuple(batch)) for batch in state.batches]),
                "last_append_ms": state.last_append_ms,
            }
            for _, state in sorted(states.items())
        ],
    )


FIRST_GENERATION = 1


def _reserve_generations(conn: Connection, group_id: str, count: int) -> int:
    row = group_generations.c.group_id == group_id
    query = select(group_generations.c.next_generation).where(row).with_for_update()
    first = conn.execute(query).scalar_one_or_none()
    if first is None:
        try:
            conn.execute(
                insert(group_generations).values(
                    group_id=group_id, next_generation=FIRST_GENERATION + count
                )
            )
        except IntegrityError as exc:  # reserved concurrently: the caller's retry reads it
            raise MetadataUnavailable(
                f"group {group_id!r}: generations reserved concurrently"
            ) from exc
        return FIRST_GENERATION
    conn.execute(update(group_generations).where(row).values(next_generation=first + count))
    return int(first)


def _next_producer_id(conn: Connection) -> int:
    counter = counters.c.name == PRODUCER_ID_COUNTER
    value: int = conn.execute(
        select(counters.c.next_value).where(counter).with_for_update()
    ).scalar_one()
    conn.execute(update(counters).where(counter).values(next_value=value + 1))
    return value


def _insert_object(conn: Connection, obj: ObjectRecord) -> None:
    try:
        conn.execute(
            insert(objects).values(
                key=obj.key,
                agent=obj.agent,
                org=obj.org,
                size_bytes=obj.size_bytes,
                created_ms=obj.created_ms,
            )
        )
    except IntegrityError as exc:
        raise _ObjectKeyTaken(obj.key) from exc


def _segments_by_partition(
    rows: Sequence[SegmentRecord],
) -> dict[TopicPartition, list[SegmentRecord]]:
    grouped: dict[TopicPartition, list[SegmentRecord]] = {}
    for row in rows:
        grouped.setdefault(row.tp, []).append(row)
    for group in grouped.values():
        group.sort(key=lambda row: row.base_offset)
    return grouped


def _append_segments(
    conn: Connection, key: str, current: PartitionRecord, rows: list[SegmentRecord]
) -> None:
    if not rows:
        return
    _check_contiguous(key, current, rows)
    conn.execute(insert(segments), [_segment_values(row) for row in rows])
    _update_partition(conn, current.tp, durable_end_offset=rows[-1].last_offset + 1)


def _check_contiguous(key: str, current: PartitionRecord, rows: list[SegmentRecord]) -> None:
    expected = current.durable_end_offset
    for row in rows:
        if row.base_offset != expected:
            kind = "gap" if row.base_offset > expected else "overlap"
            raise AssertionError(
                f"engine bug: flush of object {key!r} to {current.tp} starts a segment at "
                f"offset {row.base_offset} but offset {expected} comes next ({kind}); "
                "nothing was committed"
            )
        expected = row.last_offset + 1


def _segment_values(row: SegmentRecord) -> dict[str, Any]:
    return {
        "topic": row.topic,
        "partition": row.partition,
        "base_offset": row.base_offset,
        "last_offset": row.last_offset,
        "leader_epoch": row.leader_epoch,
        "max_timestamp_ms": row.max_timestamp_ms,
        "object_key": row.object_key,
        "position": row.position,
        "length": row.length,
    }


def _stored_outcome(conn: Connection, key: str) -> FlushOutcome | None:
    row = conn.execute(select(flush_outcomes).where(flush_outcomes.c.object_key == key)).first()
    if row is None:
        return None
    return FlushOutcome(_decode_partitions(row.committed), _decode_partitions(row.fenced))


def _encode_partitions(tps: frozenset[TopicPartition]) -> str:
    return json.dumps([[tp.topic, tp.partition] for tp in sorted(tps)])


def _decode_partitions(text: str) -> frozenset[TopicPartition]:
    return frozenset(TopicPartition(topic, partition) for topic, partition in json.loads(text))


def _select_segments(
    conn: Connection, tp: TopicPartition, from_offset: int, limit: int
) -> list[SegmentRecord]:
    _partition(conn, tp, lock=False)
    query = (
        select(segments)
        .where(
            segments.c.topic == tp.topic,
            segments.c.partition == tp.partition,
            segments.c.last_offset >= from_offset,
        )
        .order_by(segments.c.base_offset)
        .limit(limit)
    )
    return [_segment_record(row) for row in conn.execute(query)]


# ---------------------------------------------------------------- group offset statements


def _upsert_offsets(
    conn: Connection, group_id: str, offsets: Mapping[TopicPartition, CommittedOffset]
) -> None:
    ordered = sorted(offsets)  # one lock order for every writer, as commit_flush
    topic_names = sorted({tp.topic for tp in ordered})
    query = select(partitions.c.topic, partitions.c.partition).where(
        partitions.c.topic.in_(topic_names)
    )
    existing = {TopicPartition(topic, partition) for topic, partition in conn.execute(query)}
    for tp in ordered:
        if tp not in existing:
            raise UnknownTopicOrPartition(
                f"group {group_id!r} commits an offset for {tp}, which does not exist"
            )
    rows = [
        {
            "group_id": group_id,
            "topic": tp.topic,
            "partition": tp.partition,
            "offset": offsets[tp].offset,
            "leader_epoch": offsets[tp].leader_epoch,
            "metadata": offsets[tp].metadata,
            "commit_ms": offsets[tp].commit_ms,
        }
        for tp in ordered
    ]
    try:
        conn.execute(_offsets_upsert(conn), rows)
    except IntegrityError as exc:  # a partition deleted concurrently since the check above
        raise UnknownTopicOrPartition(
            f"group {group_id!r} commits offsets for a partition deleted meanwhile"
        ) from exc


def _offsets_upsert(conn: Connection) -> Insert:
    """INSERT ... ON CONFLICT (group, partition) DO UPDATE, in the connection's dialect."""
    keys = ["group_id", "topic", "partition"]
    replaced = ("offset", "leader_epoch", "metadata", "commit_ms")
    if conn.dialect.name == "postgresql":
        on_postgres = postgresql.insert(committed_offsets)
        return on_postgres.on_conflict_do_update(
            index_elements=keys, set_={name: on_postgres.excluded[name] for name in replaced}
        )
    on_sqlite = sqlite.insert(committed_offsets)
    return on_sqlite.on_conflict_do_update(
        index_elements=keys, set_={name: on_sqlite.excluded[name] for name in replaced}
    )


def _select_offsets(
    conn: Connection, group_id: str, wanted: set[TopicPartition] | None
) -> dict[TopicPartition, CommittedOffset]:
    query = select(committed_offsets).where(committed_offsets.c.group_id == group_id)
    if wanted is not None:
        if not wanted:
            return {}
        query = query.where(committed_offsets.c.topic.in_(sorted({tp.topic for tp in wanted})))
    found = {}
    for row in conn.execute(query):
        tp = TopicPartition(row.topic, row.partition)
        if wanted is None or tp in wanted:
            found[tp] = CommittedOffset(row.offset, row.leader_epoch, row.metadata, row.commit_ms)
    return found


def _delete_offsets(conn: Connection, group_id: str, tps: set[TopicPartition]) -> None:
    for tp in sorted(tps):
        conn.execute(
            delete(committed_offsets).where(
                committed_offsets.c.group_id == group_id,
                committed_offsets.c.topic == tp.topic,
                committed_offsets.c.partition == tp.partition,
            )
        )


# ---------------------------------------------------------------- row conversion


def _topic_record(row: Row[Any]) -> TopicRecord:
    configs = json.loads(row.configs)
    return TopicRecord(row.name, row.partition_count, configs, row.created_ms)


def _partition_record(row: Row[Any]) -> PartitionRecord:
    return PartitionRecord(
        topic=row.topic,
        partition=row.partition,
        leader_agent=row.leader_agent,
        leader_epoch=row.leader_epoch,
        lease_expires_ms=row.lease_expires_ms,
        durable_end_offset=row.durable_end_offset,
        log_start_offset=row.log_start_offset,
    )


def _segment_record(row: Row[Any]) -> SegmentRecord:
    return SegmentRecord(
        topic=row.topic,
        partition=row.partition,
        base_offset=row.base_offset,
        last_offset=row.last_offset,
        leader_epoch=row.leader_epoch,
        max_timestamp_ms=row.max_timestamp_ms,
        object_key=row.object_key,
        position=row.position,
        length=row.length,
    )


def _object_record(row: Row[Any]) -> ObjectRecord:
    return ObjectRecord(row.key, row.agent, row.org, row.size_bytes, row.created_ms)
