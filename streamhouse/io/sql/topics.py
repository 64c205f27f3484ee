"""SQL adapter of the topics port, and the partition-row statements other aggregates share.

A topic's partitions are rows of `partitions`; a topic deleted and created
again starts each partition above the epoch its namesake reached
(`retired_epochs`), so a lease on the old topic never matches the new one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from streamhouse.errors import InvalidPartitions, TopicAlreadyExists, UnknownTopicOrPartition
from streamhouse.io.sql.rows import record_from_row
from streamhouse.io.sql.schema import (
    NEW_PARTITION_EPOCH_FLOOR,
    committed_offsets,
    counter_value,
    partitions,
    producer_states,
    retired_epochs,
    segments,
    topics,
)
from streamhouse.io.sql.store_clock import StoreClock
from streamhouse.io.sql.transactions import SqlAdapter
from streamhouse.names import TopicPartition
from streamhouse.ports.topics import PartitionRecord, TopicRecord, TopicStore


class SqlTopicStore(SqlAdapter, TopicStore):
    """The topics port over SQL: one transaction per call."""

    async def create_topic(
        self, name: str, partition_count: int, configs: Mapping[str, str], now_ms: int
    ) -> TopicRecord:
        record = TopicRecord(name, partition_count, dict(configs), now_ms)
        return await self._sql.write("create_topic", insert_topic, record)

    async def get_topic(self, name: str) -> TopicRecord | None:
        return await self._sql.read("get_topic", _select_topic, name)

    async def list_topics(self) -> list[TopicRecord]:
        return await self._sql.read("list_topics", _select_topics)

    async def delete_topic(self, name: str) -> None:
        await self._sql.write("delete_topic", _delete_topic, name)

    async def add_partitions(self, name: str, new_total: int) -> TopicRecord:
        return await self._sql.write("add_partitions", add_partitions, name, new_total)

    async def set_topic_configs(
        self, name: str, configs: Mapping[str, str | None], *, incremental: bool
    ) -> TopicRecord:
        return await self._sql.write(
            "set_topic_configs", _set_topic_configs, name, dict(configs), incremental=incremental
        )

    async def get_partition(self, tp: TopicPartition) -> PartitionRecord:
        return await self._sql.read("get_partition", _get_partition, self._sql.store_clock, tp)

    async def list_partitions(self) -> list[PartitionRecord]:
        return await self._sql.read("list_partitions", _select_partitions, self._sql.store_clock)

    async def list_topic_partitions(self, name: str) -> list[PartitionRecord]:
        clock = self._sql.store_clock
        return await self._sql.read("list_topic_partitions", _select_topic_partitions, clock, name)

    async def set_preferred_agent(self, tp: TopicPartition, agent: str | None) -> None:
        await self._sql.write("set_preferred_agent", _set_preferred_agent, tp, agent)


# ---------------------------------------------------------------- topic statements


def insert_topic(conn: Connection, record: TopicRecord) -> TopicRecord:
    # The admin service refuses such a request; reaching here is our bug.
    count = record.partition_count
    assert count >= 1, f"topic {record.name!r}: {count} partitions"
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
    a lease on the deleted topic can never match an epoch of the new one; in a store rebuilt
    from the bucket, at least at the rebuild's floor (a namesake the bucket did not know may
    have used any epoch below it)."""
    retired = select(retired_epochs).where(retired_epochs.c.topic == topic)
    floors = {row.partition: row.leader_epoch for row in conn.execute(retired)}
    floor = counter_value(conn, NEW_PARTITION_EPOCH_FLOOR, 0)
    rows = [_new_partition_row(topic, index, max(floors.get(index, 0), floor)) for index in indexes]
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
        "preferred_agent": None,
    }


def _select_topic(conn: Connection, name: str) -> TopicRecord | None:
    row = conn.execute(select(topics).where(topics.c.name == name)).first()
    return None if row is None else _topic_record(row)


def _select_topics(conn: Connection) -> list[TopicRecord]:
    return [_topic_record(row) for row in conn.execute(select(topics).order_by(topics.c.name))]


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


def add_partitions(conn: Connection, name: str, new_total: int) -> TopicRecord:
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


def _topic_record(row: Row[Any]) -> TopicRecord:
    configs = json.loads(row.configs)
    return TopicRecord(row.name, row.partition_count, configs, row.created_ms)


# ---------------------------------------------------------------- partition rows


def _get_partition(conn: Connection, clock: StoreClock, tp: TopicPartition) -> PartitionRecord:
    return existing_partition(conn, tp, lock=False, now_ms=clock(conn))


def _select_partitions(conn: Connection, clock: StoreClock) -> list[PartitionRecord]:
    now_ms = clock(conn)
    query = select(partitions).order_by(partitions.c.topic, partitions.c.partition)
    return [_partition_record(row, now_ms) for row in conn.execute(query)]


def _select_topic_partitions(
    conn: Connection, clock: StoreClock, name: str
) -> list[PartitionRecord]:
    now_ms = clock(conn)
    query = select(partitions).where(partitions.c.topic == name).order_by(partitions.c.partition)
    return [_partition_record(row, now_ms) for row in conn.execute(query)]


def _set_preferred_agent(conn: Connection, tp: TopicPartition, agent: str | None) -> None:
    changed = conn.execute(
        update(partitions)
        .where(partitions.c.topic == tp.topic, partitions.c.partition == tp.partition)
        .values(preferred_agent=agent)
    )
    if changed.rowcount == 0:
        raise UnknownTopicOrPartition(f"partition {tp} does not exist")


def existing_partition(
    conn: Connection, tp: TopicPartition, *, lock: bool, now_ms: int
) -> PartitionRecord:
    """The partition's row (locked for update with `lock`), its lease judged live or not at
    the store's time `now_ms`. Raises UnknownTopicOrPartition."""
    record = find_partition(conn, tp, lock=lock, now_ms=now_ms)
    if record is None:
        raise UnknownTopicOrPartition(f"partition {tp} does not exist")
    return record


def find_partition(
    conn: Connection, tp: TopicPartition, *, lock: bool, now_ms: int
) -> PartitionRecord | None:
    """The partition's row (locked for update with `lock`), its lease judged live or not at
    the store's time `now_ms`, or None."""
    query = select(partitions).where(
        partitions.c.topic == tp.topic, partitions.c.partition == tp.partition
    )
    if lock:
        # Writers here change no key column: FOR NO KEY UPDATE on PostgreSQL, so
        # rows that only reference the partition (offset commits) need not wait.
        query = query.with_for_update(key_share=True)
    row = conn.execute(query).first()
    return None if row is None else _partition_record(row, now_ms)


def _partition_record(row: Row[Any], now_ms: int) -> PartitionRecord:
    """The row as a record, its lease judged live or not at the store's time `now_ms`."""
    live = row.leader_agent is not None and row.lease_expires_ms > now_ms
    return record_from_row(PartitionRecord, row, lease_live=live)


def update_partition(conn: Connection, tp: TopicPartition, **values: Any) -> None:
    """Set these columns of the partition's row."""
    conn.execute(
        update(partitions)
        .where(partitions.c.topic == tp.topic, partitions.c.partition == tp.partition)
        .values(**values)
    )
