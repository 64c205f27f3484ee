"""SQL adapter of the snapshots port: the store dumped table by table, restored into a blank
store, and a rebuild completed from what the bucket's footers add."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, Table, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError, StatementError

from streamhouse.errors import SnapshotIncompatible
from streamhouse.io.sql.leases import append_segments, encode_partitions, insert_object
from streamhouse.io.sql.producers import apply_txn_changes, fold_producers
from streamhouse.io.sql.schema import (
    NEW_GROUP_GENERATION_FLOOR,
    NEW_PARTITION_EPOCH_FLOOR,
    NODE_ID_COUNTER,
    PRODUCER_ID_COUNTER,
    SCHEMA_ID_COUNTER,
    acls,
    api_keys,
    counter_value,
    counters,
    flush_outcomes,
    group_generations,
    job_claims,
    metadata,
    objects,
    orgs,
    partitions,
    quotas,
    registry_schemas,
    retired_epochs,
    scram_credentials,
    topics,
)
from streamhouse.io.sql.store_clock import StoreClock
from streamhouse.io.sql.topics import add_partitions, existing_partition, insert_topic
from streamhouse.io.sql.transactions import SqlAdapter
from streamhouse.log.snapshot_format import MetadataDump, TableDump, Value
from streamhouse.names import TopicPartition
from streamhouse.ports.snapshots import (
    REBUILD_EPOCH_LEAP,
    REBUILD_GENERATION_LEAP,
    REBUILD_NODE_ID_LEAP,
    REBUILD_PRODUCER_ID_LEAP,
    REBUILD_SCHEMA_ID_LEAP,
    RebuildPlan,
    RebuiltPartition,
    SnapshotStore,
    StoreState,
)
from streamhouse.ports.tenancy import DEFAULT_ORG
from streamhouse.ports.topics import TopicRecord

SNAPSHOT_SEQ_COUNTER = "snapshot_seq"
REBUILD_MARKER = "rebuild"  # a job_claims row while a rebuild is pending
TRANSIENT_TABLES = frozenset({job_claims.name})  # never dumped, never restored
INSERT_ROWS_PER_STATEMENT = 1_000


class SqlSnapshotStore(SqlAdapter, SnapshotStore):
    """The snapshots port over SQL."""

    async def next_snapshot_seq(self) -> int:
        return await self._sql.write("next_snapshot_seq", _next_snapshot_seq)

    async def dump_metadata(self) -> MetadataDump:
        return await self._sql.read_consistent("dump_metadata", _dump)

    async def store_state(self) -> StoreState:
        return await self._sql.read("store_state", _store_state)

    async def begin_rebuild(self, dump: MetadataDump | None, agent: str) -> StoreState:
        clock = self._sql.store_clock
        try:
            return await self._sql.write("begin_rebuild", _begin_rebuild, dump, agent, clock)
        except _FoundInUse:  # its transaction rolled back: nothing was restored
            return StoreState.IN_USE
        except (IntegrityError, StatementError) as exc:
            raise SnapshotIncompatible(
                f"the snapshot's rows do not fit this version's metadata schema: {exc.orig}"
            ) from exc

    async def complete_rebuild(self, plan: RebuildPlan) -> bool:
        return await self._sql.write("complete_rebuild", _complete_rebuild, plan)


# ---------------------------------------------------------------- snapshots


def _next_snapshot_seq(conn: Connection) -> int:
    row = counters.c.name == SNAPSHOT_SEQ_COUNTER
    value = conn.execute(select(counters.c.next_value).where(row).with_for_update()).scalar()
    if value is None:
        conn.execute(insert(counters).values(name=SNAPSHOT_SEQ_COUNTER, next_value=1))
        return 0
    conn.execute(update(counters).where(row).values(next_value=value + 1))
    return int(value)


def _dumped_tables() -> list[Table]:
    """Every table of the schema in foreign-key order (a table after those it refers to)."""
    return [table for table in metadata.sorted_tables if table.name not in TRANSIENT_TABLES]


def _dump(conn: Connection) -> MetadataDump:
    tables: dict[str, TableDump] = {}
    for table in _dumped_tables():
        columns = tuple(column.name for column in table.columns)
        ordered = select(table).order_by(*table.primary_key.columns)
        rows = tuple(tuple(map(_value, row)) for row in conn.execute(ordered))
        tables[table.name] = TableDump(columns, rows)
    return MetadataDump(_schema_revision(conn), tables)


def _value(value: Value) -> Value:
    """A column's value as the format keeps it: booleans as the integers 0 and 1."""
    return int(value) if isinstance(value, bool) else value


def _schema_revision(conn: Connection) -> str:
    return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


# ---------------------------------------------------------------- rebuild


def _store_state(conn: Connection) -> StoreState:
    # The rows before the marker: under READ COMMITTED each statement sees the latest commits,
    # and a rebuild commits its marker with its rows, so reading the marker first could miss it
    # and then see the rows (IN_USE while the rebuild is still pending)
    beside_marker = _store_state_beside_marker(conn)
    if conn.execute(select(job_claims).where(job_claims.c.name == REBUILD_MARKER)).first():
        return StoreState.REBUILD_PENDING
    return beside_marker


class _FoundInUse(Exception):
    """Raised inside begin_rebuild's transaction to roll it back: another agent completed a
    rebuild between the first look at the store and the marker."""


def _begin_rebuild(
    conn: Connection, dump: MetadataDump | None, agent: str, clock: StoreClock
) -> StoreState:
    state = _store_state(conn)
    if state is not StoreState.BLANK:
        return state
    # The marker first: agents that start together serialise on its key (on PostgreSQL the
    # second insert waits for the first transaction, then finds the key taken)
    marker = insert(job_claims).values(name=REBUILD_MARKER, agent=agent, claimed_ms=clock(conn))
    try:
        with conn.begin_nested():
            conn.execute(marker)
    except IntegrityError:
        return StoreState.REBUILD_PENDING
    if _store_state_beside_marker(conn) is StoreState.IN_USE:
        raise _FoundInUse  # rebuilt and completed by another agent since the first look
    if dump is not None:
        _restore(conn, dump)
    return StoreState.BLANK


def _store_state_beside_marker(conn: Connection) -> StoreState:
    """In use or blank, whatever the marker says."""
    for table in (topics, objects, registry_schemas, api_keys, scram_credentials, acls, quotas):
        if conn.execute(select(func.count()).select_from(table)).scalar_one():
            return StoreState.IN_USE
    # the org `default` is seeded by the migrations: a store holding only it is still new
    other_orgs = select(func.count()).select_from(orgs).where(orgs.c.name != DEFAULT_ORG)
    if conn.execute(other_orgs).scalar_one():
        return StoreState.IN_USE
    return StoreState.BLANK


def _restore(conn: Connection, dump: MetadataDump) -> None:
    known = {table.name: table for table in _dumped_tables()}
    unknown = sorted(set(dump.tables) - set(known))
    if unknown:
        raise SnapshotIncompatible(
            f"the snapshot (schema {dump.schema_revision}) has tables this version does not: "
            f"{', '.join(unknown)}; rebuild with the StreamHouse version that wrote it"
        )
    for name, table in known.items():
        rows = dump.tables.get(name)
        if rows is None:
            continue
        missing = [c for c in rows.columns if c not in table.columns]
        if missing:
            raise SnapshotIncompatible(
                f"the snapshot's table {name} has columns this version does not: "
                f"{', '.join(missing)}"
            )
        conn.execute(delete(table))  # a blank store holds only what migrations seeded
        for chunk in _chunks(rows.rows, INSERT_ROWS_PER_STATEMENT):
            conn.execute(
                insert(table), [dict(zip(rows.columns, row, strict=True)) for row in chunk]
            )


def _chunks(
    rows: tuple[tuple[Value, ...], ...], size: int
) -> Iterable[tuple[tuple[Value, ...], ...]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _complete_rebuild(conn: Connection, plan: RebuildPlan) -> bool:
    marker = job_claims.c.name == REBUILD_MARKER
    if conn.execute(select(job_claims).where(marker).with_for_update()).first() is None:
        return False
    _create_topics(conn, plan)
    added = {obj.key for obj in plan.objects if insert_object(conn, obj)}
    committed: dict[str, set[TopicPartition]] = {key: set() for key in added}
    for rebuilt in sorted(plan.partitions, key=lambda p: p.tp):
        _extend_partition(conn, rebuilt, plan.now_ms)
        for segment in rebuilt.segments:
            committed.setdefault(segment.object_key, set()).add(rebuilt.tp)
    for key in sorted(added):
        done = frozenset(committed[key])
        conn.execute(
            insert(flush_outcomes).values(
                object_key=key,
                committed=encode_partitions(done),
                fenced=encode_partitions(frozenset()),
            )
        )
    _leap_past_the_unknown(conn, plan)
    conn.execute(delete(job_claims).where(marker))
    return True


def _create_topics(conn: Connection, plan: RebuildPlan) -> None:
    for name, count in sorted(plan.new_topics.items()):
        current = conn.execute(select(topics.c.partition_count).where(topics.c.name == name))
        found = current.scalar()
        if found is None:
            insert_topic(conn, TopicRecord(name, count, {}, plan.now_ms))
        elif found < count:
            add_partitions(conn, name, count)


def _extend_partition(conn: Connection, rebuilt: RebuiltPartition, now_ms: int) -> None:
    tp = rebuilt.tp
    current = existing_partition(conn, tp, lock=True, now_ms=0)
    if current.durable_end_offset != rebuilt.start_offset:
        assert current.durable_end_offset == 0 < rebuilt.start_offset, (current, rebuilt)
        # A partition new to the store whose earliest objects are gone: its log starts later
        conn.execute(
            update(partitions)
            .where(partitions.c.topic == tp.topic, partitions.c.partition == tp.partition)
            .values(durable_end_offset=rebuilt.start_offset, log_start_offset=rebuilt.start_offset)
        )
        current = existing_partition(conn, tp, lock=True, now_ms=0)
    append_segments(conn, "(rebuild)", current, list(rebuilt.segments))
    fold_producers(conn, tp, rebuilt.producers, appended_ms=now_ms, expire_before_ms=0)
    apply_txn_changes(conn, tp, rebuilt.txns)
    seen = rebuilt.leader_epoch_seen
    if seen > current.leader_epoch:
        conn.execute(
            update(partitions)
            .where(partitions.c.topic == tp.topic, partitions.c.partition == tp.partition)
            .values(leader_epoch=seen)
        )


def _leap_past_the_unknown(conn: Connection, plan: RebuildPlan) -> None:
    """Epochs, producer ids, generations, node ids, schema ids and snapshot numbers handed out
    after the snapshot left no trace in the bucket unless something was written under them:
    start far above."""
    conn.execute(
        update(partitions).values(
            leader_epoch=partitions.c.leader_epoch + REBUILD_EPOCH_LEAP,
            leader_agent=None,
            lease_expires_ms=0,
        )
    )
    conn.execute(
        update(retired_epochs).values(
            leader_epoch=retired_epochs.c.leader_epoch + REBUILD_EPOCH_LEAP
        )
    )
    conn.execute(
        update(group_generations).values(
            next_generation=group_generations.c.next_generation + REBUILD_GENERATION_LEAP
        )
    )
    _raise_counter(
        conn,
        PRODUCER_ID_COUNTER,
        plan.producer_id_seen + 1 + REBUILD_PRODUCER_ID_LEAP,
        leap=REBUILD_PRODUCER_ID_LEAP,
    )
    _raise_counter(conn, SNAPSHOT_SEQ_COUNTER, plan.snapshot_seq_seen + 1, leap=0)
    _raise_counter(conn, NODE_ID_COUNTER, REBUILD_NODE_ID_LEAP, leap=REBUILD_NODE_ID_LEAP)
    _leap_schema_ids(conn)
    # A partition or group the bucket does not know may have existed before the store was
    # lost, with any epoch or generation: those created from now on start above everything
    # known, and a leap above the floor an earlier rebuild set.
    epochs = [
        conn.execute(select(func.max(partitions.c.leader_epoch))).scalar(),
        conn.execute(select(func.max(retired_epochs.c.leader_epoch))).scalar(),
    ]
    epoch_floor = counter_value(conn, NEW_PARTITION_EPOCH_FLOOR, 0) + REBUILD_EPOCH_LEAP
    epoch_floor = max([epoch_floor, *(int(e) + 1 for e in epochs if e is not None)])
    _set_counter(conn, NEW_PARTITION_EPOCH_FLOOR, epoch_floor)
    generations = conn.execute(select(func.max(group_generations.c.next_generation))).scalar()
    generation_floor = counter_value(conn, NEW_GROUP_GENERATION_FLOOR, 1) + REBUILD_GENERATION_LEAP
    if generations is not None:
        generation_floor = max(generation_floor, int(generations))
    _set_counter(conn, NEW_GROUP_GENERATION_FLOOR, generation_floor)


def _leap_schema_ids(conn: Connection) -> None:
    """Schema ids start far above every id the snapshot knew, whether it kept the counter
    (a snapshot from before the registry did not) or only schemas."""
    highest = conn.execute(select(func.max(registry_schemas.c.schema_id))).scalar()
    floor = (0 if highest is None else int(highest)) + 1 + REBUILD_SCHEMA_ID_LEAP
    _raise_counter(conn, SCHEMA_ID_COUNTER, floor, leap=REBUILD_SCHEMA_ID_LEAP)


def _set_counter(conn: Connection, name: str, value: int) -> None:
    row = counters.c.name == name
    if conn.execute(select(counters.c.next_value).where(row)).scalar() is None:
        conn.execute(insert(counters).values(name=name, next_value=value))
    else:
        conn.execute(update(counters).where(row).values(next_value=value))


def _raise_counter(conn: Connection, name: str, floor: int, *, leap: int) -> None:
    row = counters.c.name == name
    value = conn.execute(select(counters.c.next_value).where(row).with_for_update()).scalar()
    if value is None:
        conn.execute(insert(counters).values(name=name, next_value=max(floor, leap)))
        return
    conn.execute(update(counters).where(row).values(next_value=max(floor, value + leap)))
