"""SQL adapter of the groups port: consumer groups' committed offsets and generations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection, Insert, Table, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from streamhouse.errors import MetadataUnavailable, NotCoordinator, UnknownTopicOrPartition
from streamhouse.io.sql.rows import record_from_row
from streamhouse.io.sql.schema import (
    NEW_GROUP_GENERATION_FLOOR,
    committed_offsets,
    counter_value,
    group_generations,
    partitions,
)
from streamhouse.io.sql.transactions import SqlAdapter
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import CommittedOffset, CoordinatorFence, GroupStore

FIRST_GENERATION = 1


class SqlGroupStore(SqlAdapter, GroupStore):
    """The groups port over SQL: one transaction per call."""

    async def reserve_group_generations(self, group_id: str, count: int) -> int:
        return await self._sql.write(
            "reserve_group_generations", _reserve_generations, group_id, count
        )

    async def commit_offsets(
        self,
        group_id: str,
        offsets: Mapping[TopicPartition, CommittedOffset],
        fence: CoordinatorFence | None = None,
    ) -> None:
        await self._sql.write("commit_offsets", _upsert_offsets, group_id, offsets, fence)

    async def fetch_offsets(
        self, group_id: str, partitions: Sequence[TopicPartition] | None = None
    ) -> dict[TopicPartition, CommittedOffset]:
        wanted = None if partitions is None else set(partitions)
        return await self._sql.read("fetch_offsets", _select_offsets, group_id, wanted)

    async def delete_offsets(self, group_id: str, partitions: Sequence[TopicPartition]) -> None:
        await self._sql.write("delete_offsets", _delete_offsets, group_id, set(partitions))

    async def delete_group_offsets(self, group_id: str) -> None:
        await self._sql.write("delete_group_offsets", _delete_group_offsets, group_id)

    async def list_offset_groups(self) -> list[str]:
        return await self._sql.read("list_offset_groups", _select_offset_groups)

    async def expire_offsets(self, group_id: str, committed_before_ms: int) -> int:
        return await self._sql.write(
            "expire_offsets", _delete_offsets_before, group_id, committed_before_ms
        )


# ---------------------------------------------------------------- generations


def _reserve_generations(conn: Connection, group_id: str, count: int) -> int:
    assert count > 0, count
    row = group_generations.c.group_id == group_id
    query = select(group_generations.c.next_generation).where(row).with_for_update()
    first = conn.execute(query).scalar_one_or_none()
    if first is None:
        # a group new to the store; in one rebuilt from the bucket, maybe not new at all
        first = counter_value(conn, NEW_GROUP_GENERATION_FLOOR, FIRST_GENERATION)
        try:
            conn.execute(
                insert(group_generations).values(group_id=group_id, next_generation=first + count)
            )
        except IntegrityError as exc:  # reserved concurrently: the caller's retry reads it
            raise MetadataUnavailable(
                f"group {group_id!r}: generations reserved concurrently"
            ) from exc
        return int(first)
    conn.execute(update(group_generations).where(row).values(next_generation=first + count))
    return int(first)


# ---------------------------------------------------------------- committed offsets


def _upsert_offsets(
    conn: Connection,
    group_id: str,
    offsets: Mapping[TopicPartition, CommittedOffset],
    fence: CoordinatorFence | None,
) -> None:
    upsert_group_offsets(conn, committed_offsets, {"group_id": group_id}, offsets, fence)


def upsert_group_offsets(
    conn: Connection,
    table: Table,
    keys: Mapping[str, Any],
    offsets: Mapping[TopicPartition, CommittedOffset],
    fence: CoordinatorFence | None,
) -> None:
    """Insert or replace a group's offsets in `table` (committed or pending in a transaction),
    each row keyed by `keys` (its group id first) and its partition; fenced by `fence`."""
    if not offsets:
        return
    group_id = keys["group_id"]
    if fence is not None:
        check_coordinator(conn, f"group {group_id!r}", fence)
    ordered = sorted(offsets)  # one lock order for every writer, as commit_flush
    check_partitions_exist(conn, group_id, ordered)
    rows = [
        {**keys, "topic": tp.topic, "partition": tp.partition, **asdict(offsets[tp])}
        for tp in ordered
    ]
    try:
        conn.execute(offsets_upsert(conn, table, list(keys)), rows)
    except IntegrityError as exc:  # a partition deleted concurrently since the check above
        raise UnknownTopicOrPartition(
            f"group {group_id!r} commits offsets for a partition deleted meanwhile"
        ) from exc


def check_coordinator(conn: Connection, coordinated: str, fence: CoordinatorFence) -> None:
    """Raises NotCoordinator unless the fence's slot is still at its epoch. The slot's row is
    read FOR SHARE: a lease taken meanwhile (FOR NO KEY UPDATE) waits
    until this commit is over, so the epoch cannot move between the check and the write."""
    slot = fence.slot
    query = (
        select(partitions.c.leader_epoch)
        .where(partitions.c.topic == slot.topic, partitions.c.partition == slot.partition)
        .with_for_update(read=True)
    )
    epoch = conn.execute(query).scalar_one_or_none()
    if epoch != fence.epoch:
        raise NotCoordinator(
            f"{coordinated}: its coordinator slot {slot} moved on to epoch {epoch} "
            f"(this coordinator holds epoch {fence.epoch}); find the coordinator again"
        )


def check_partitions_exist(conn: Connection, group_id: str, tps: list[TopicPartition]) -> None:
    topic_names = sorted({tp.topic for tp in tps})
    query = select(partitions.c.topic, partitions.c.partition).where(
        partitions.c.topic.in_(topic_names)
    )
    existing = {TopicPartition(topic, partition) for topic, partition in conn.execute(query)}
    for tp in tps:
        if tp not in existing:
            raise UnknownTopicOrPartition(
                f"group {group_id!r} commits an offset for {tp}, which does not exist"
            )


def offsets_upsert(conn: Connection, table: Table, owner_keys: list[str]) -> Insert:
    """INSERT ... ON CONFLICT (owner keys, partition) DO UPDATE of an offsets table
    (committed or pending ones), in the connection's dialect."""
    keys = [*owner_keys, "topic", "partition"]
    replaced = ("offset", "leader_epoch", "metadata", "commit_ms")
    if conn.dialect.name == "postgresql":
        on_postgres = postgresql.insert(table)
        return on_postgres.on_conflict_do_update(
            index_elements=keys, set_={name: on_postgres.excluded[name] for name in replaced}
        )
    on_sqlite = sqlite.insert(table)
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
            found[tp] = record_from_row(CommittedOffset, row)
    return found


def _select_offset_groups(conn: Connection) -> list[str]:
    query = select(committed_offsets.c.group_id).distinct().order_by(committed_offsets.c.group_id)
    return list(conn.scalars(query))


def _delete_offsets(conn: Connection, group_id: str, tps: set[TopicPartition]) -> None:
    for tp in sorted(tps):
        conn.execute(
            delete(committed_offsets).where(
                committed_offsets.c.group_id == group_id,
                committed_offsets.c.topic == tp.topic,
                committed_offsets.c.partition == tp.partition,
            )
        )


def _delete_group_offsets(conn: Connection, group_id: str) -> None:
    conn.execute(delete(committed_offsets).where(committed_offsets.c.group_id == group_id))


def _delete_offsets_before(conn: Connection, group_id: str, committed_before_ms: int) -> int:
    deleted = conn.execute(
        delete(committed_offsets).where(
            committed_offsets.c.group_id == group_id,
            committed_offsets.c.commit_ms < committed_before_ms,
        )
    )
    return deleted.rowcount
