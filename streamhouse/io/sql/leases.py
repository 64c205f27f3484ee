"""SQL adapter of the leases port: partition leases and the writes their epochs fence.

Every writer here locks partition rows in (topic, partition) order, the order
topic deletion and offset commits use too, so none of them can deadlock on
PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection, delete, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from streamhouse.io.sql.producers import apply_txn_changes, fold_producers
from streamhouse.io.sql.rows import record_from_row
from streamhouse.io.sql.schema import flush_outcomes, objects, partitions, segments
from streamhouse.io.sql.store_clock import StoreClock
from streamhouse.io.sql.topics import existing_partition, find_partition, update_partition
from streamhouse.io.sql.transactions import SqlAdapter
from streamhouse.names import TopicPartition
from streamhouse.ports.leases import (
    FlushCommit,
    FlushOutcome,
    Lease,
    LeaseStore,
    ObjectRecord,
    ObjectRef,
    SegmentRecord,
    SegmentSwap,
)
from streamhouse.ports.topics import PartitionRecord


class SqlLeaseStore(SqlAdapter, LeaseStore):
    """The leases port over SQL: one transaction per call."""

    async def acquire_lease(self, tp: TopicPartition, agent: str, ttl_ms: int) -> Lease | None:
        clock = self._sql.store_clock
        return await self._sql.write("acquire_lease", _acquire_lease, clock, tp, agent, ttl_ms)

    async def renew_leases(
        self, held: Mapping[TopicPartition, int], agent: str, ttl_ms: int
    ) -> dict[TopicPartition, Lease | None]:
        clock = self._sql.store_clock
        return await self._sql.write("renew_leases", _renew_leases, clock, held, agent, ttl_ms)

    async def fence_own_leases(self, agent: str) -> int:
        return await self._sql.write("fence_own_leases", _fence_own_leases, agent)

    async def release_lease(self, tp: TopicPartition, agent: str) -> None:
        await self._sql.write("release_lease", _release_lease, self._sql.store_clock, tp, agent)

    async def commit_flush(self, commit: FlushCommit) -> FlushOutcome:
        return await self._sql.write("commit_flush", _commit_flush, self._sql.store_clock, commit)

    async def list_segments(
        self, tp: TopicPartition, from_offset: int = 0, limit: int = 1000
    ) -> list[SegmentRecord]:
        clock = self._sql.store_clock
        return await self._sql.read(
            "list_segments", _select_segments, clock, tp, from_offset, limit
        )

    async def partition_sizes(self, topic: str) -> dict[int, int]:
        return await self._sql.read("partition_sizes", _sum_segment_lengths, topic)

    async def partition_objects(self, topic: str) -> dict[int, int]:
        return await self._sql.read("partition_objects", _count_segment_objects, topic)

    async def partition_dirty_sizes(self, topic: str) -> dict[int, int]:
        return await self._sql.read("partition_dirty_sizes", _sum_dirty_lengths, topic)

    async def list_objects(self) -> list[ObjectRecord]:
        return await self._sql.read("list_objects", _select_objects)

    async def list_object_refs(self, after_key: str = "", limit: int = 1000) -> list[ObjectRef]:
        assert limit >= 0, f"a page holds at least 0 objects, got a limit of {limit}"
        clock = self._sql.store_clock
        return await self._sql.read(
            "list_object_refs", _select_object_refs, clock, after_key, limit
        )

    async def object_segments(self, key: str) -> list[SegmentRecord]:
        return await self._sql.read("object_segments", _select_object_segments, key)

    async def forget_object(self, key: str) -> bool:
        return await self._sql.write("forget_object", _forget_object, key)

    async def set_log_start_offset(self, tp: TopicPartition, offset: int) -> int:
        clock = self._sql.store_clock
        return await self._sql.write("set_log_start_offset", _raise_log_start, clock, tp, offset)

    async def swap_segments(self, swap: SegmentSwap) -> bool:
        return await self._sql.write("swap_segments", _swap_segments, self._sql.store_clock, swap)


# ---------------------------------------------------------------- lease statements


def _acquire_lease(
    conn: Connection, clock: StoreClock, tp: TopicPartition, agent: str, ttl_ms: int
) -> Lease | None:
    """Judged and granted in the store's time, read before waiting for the row's lock: an
    earlier time can only find live a lease that expired meanwhile, or end the new one
    sooner, and it still comes after the holder noted when it asked (where its local
    deadline starts, engine/leases.py)."""
    assert ttl_ms > 0, f"lease ttl must be positive, got {ttl_ms} ms"
    now_ms = clock(conn)
    current = existing_partition(conn, tp, lock=True, now_ms=now_ms)
    if current.leader_agent == agent:
        epoch = current.leader_epoch
    elif current.lease_live:
        return None
    else:
        epoch = current.leader_epoch + 1
    expires_ms = now_ms + ttl_ms
    update_partition(conn, tp, leader_agent=agent, leader_epoch=epoch, lease_expires_ms=expires_ms)
    return Lease(tp, agent, epoch, expires_ms)


def _renew_leases(
    conn: Connection,
    clock: StoreClock,
    held: Mapping[TopicPartition, int],
    agent: str,
    ttl_ms: int,
) -> dict[TopicPartition, Lease | None]:
    """One UPDATE per partition, in (topic, partition) order (the lock order of every writer
    here), matching only the holder at its epoch; the store's time is read first, as in
    `_acquire_lease`."""
    assert ttl_ms > 0, f"lease ttl must be positive, got {ttl_ms} ms"
    now_ms = clock(conn)
    expires_ms = now_ms + ttl_ms
    renewed: dict[TopicPartition, Lease | None] = {}
    for tp in sorted(held):
        epoch = held[tp]
        changed = conn.execute(
            update(partitions)
            .where(
                partitions.c.topic == tp.topic,
                partitions.c.partition == tp.partition,
                partitions.c.leader_agent == agent,
                partitions.c.leader_epoch == epoch,
            )
            .values(lease_expires_ms=expires_ms)
        )
        if changed.rowcount == 1:
            renewed[tp] = Lease(tp, agent, epoch, expires_ms)
        elif find_partition(conn, tp, lock=False, now_ms=now_ms) is not None:
            renewed[tp] = None  # another holder, or a newer epoch
    return renewed


def _fence_own_leases(conn: Connection, agent: str) -> int:
    held = conn.execute(
        select(partitions.c.topic, partitions.c.partition, partitions.c.leader_epoch)
        .where(partitions.c.leader_agent == agent)
        .order_by(partitions.c.topic, partitions.c.partition)  # commit_flush's lock order
        .with_for_update()
    ).all()
    for row in held:
        tp = TopicPartition(row.topic, row.partition)
        update_partition(conn, tp, leader_epoch=row.leader_epoch + 1, lease_expires_ms=0)
    return len(held)


def _release_lease(conn: Connection, clock: StoreClock, tp: TopicPartition, agent: str) -> None:
    current = existing_partition(conn, tp, lock=True, now_ms=clock(conn))
    if current.leader_agent == agent:
        # Expired at any time; the holder stays recorded so that it renews the
        # same epoch if it comes back before anyone else takes the lease.
        update_partition(conn, tp, lease_expires_ms=0)


def _raise_log_start(conn: Connection, clock: StoreClock, tp: TopicPartition, offset: int) -> int:
    now_ms = clock(conn)
    current = existing_partition(conn, tp, lock=True, now_ms=now_ms)
    if offset <= current.log_start_offset:
        return current.log_start_offset
    update_partition(conn, tp, log_start_offset=offset)
    below = _of_partition(tp), segments.c.last_offset < offset
    keys = set(conn.execute(select(segments.c.object_key).where(*below)).scalars())
    conn.execute(delete(segments).where(*below))
    _release_objects(conn, now_ms, keys)
    return offset


# ---------------------------------------------------------------- rewrite statements


def _swap_segments(conn: Connection, clock: StoreClock, swap: SegmentSwap) -> bool:
    now_ms = clock(conn)
    current = existing_partition(conn, swap.tp, lock=True, now_ms=now_ms)
    first, last = swap.old[0].base_offset, swap.old[-1].last_offset
    in_range = _of_partition(swap.tp), segments.c.base_offset.between(first, last)
    query = select(segments).where(*in_range).order_by(segments.c.base_offset)
    stored = [record_from_row(SegmentRecord, row) for row in conn.execute(query)]
    if stored == list(swap.new):
        return True  # a replay of a swap that committed
    if current.leader_epoch != swap.epoch or stored != list(swap.old):
        return False
    if not insert_object(conn, swap.obj):
        return False  # the object of an earlier swap whose rows have moved on since
    conn.execute(delete(segments).where(*in_range))
    conn.execute(insert(segments), [asdict(row) for row in swap.new])
    _release_objects(conn, now_ms, {row.object_key for row in swap.old})
    if swap.cleaned_end_offset is not None:
        cleaned_end_offset = max(current.cleaned_end_offset, swap.cleaned_end_offset)
        update_partition(conn, swap.tp, cleaned_end_offset=cleaned_end_offset, compacted_ms=now_ms)
    return True


def _of_partition(tp: TopicPartition) -> Any:
    return (segments.c.topic == tp.topic) & (segments.c.partition == tp.partition)


def _release_objects(conn: Connection, now_ms: int, keys: set[str]) -> None:
    """Stamp the objects among `keys` that no segment row points into any more: the grace
    before the reconciler deletes them starts now."""
    if not keys:
        return
    referenced = exists().where(segments.c.object_key == objects.c.key)
    conn.execute(
        update(objects)
        .where(objects.c.key.in_(sorted(keys)), objects.c.released_ms.is_(None), ~referenced)
        .values(released_ms=now_ms)
    )


# ---------------------------------------------------------------- flush statements


def _commit_flush(conn: Connection, clock: StoreClock, commit: FlushCommit) -> FlushOutcome:
    _check_commit_shape(commit)
    stored = _stored_outcome(conn, commit.obj.key)
    if stored is not None:
        return stored
    if not insert_object(conn, commit.obj):
        return _outcome_of_a_concurrent_replay(conn, commit.obj.key)
    rows_by_tp = _segments_by_partition(commit.segments)
    committed: set[TopicPartition] = set()
    fenced: set[TopicPartition] = set()
    now_ms = clock(conn)
    for tp in sorted(commit.epochs):  # one lock order for every writer
        current = find_partition(conn, tp, lock=True, now_ms=now_ms)
        if current is None or current.leader_epoch != commit.epochs[tp]:
            fenced.add(tp)
            continue
        append_segments(conn, commit.obj.key, current, rows_by_tp.get(tp, []))
        fold_producers(
            conn,
            tp,
            commit.producers.get(tp, ()),
            appended_ms=commit.obj.created_ms,
            expire_before_ms=commit.producers_expire_before_ms,
        )
        apply_txn_changes(conn, tp, commit.txns.get(tp, ()))
        committed.add(tp)
    outcome = FlushOutcome(frozenset(committed), frozenset(fenced))
    conn.execute(
        insert(flush_outcomes).values(
            object_key=commit.obj.key,
            committed=encode_partitions(outcome.committed),
            fenced=encode_partitions(outcome.fenced),
        )
    )
    return outcome


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


def insert_object(conn: Connection, obj: ObjectRecord) -> bool:
    """Insert the object's row; False if another transaction inserted it first (a concurrent
    replay of one flush, which has committed by the time the insert fails)."""
    try:
        with conn.begin_nested():  # a savepoint: the failed insert leaves the transaction usable
            conn.execute(insert(objects).values(asdict(obj)))
    except IntegrityError:
        return False
    return True


def _outcome_of_a_concurrent_replay(conn: Connection, key: str) -> FlushOutcome:
    stored = _stored_outcome(conn, key)
    if stored is None:
        raise AssertionError(f"object {key!r} is in the objects table but has no flush outcome")
    return stored


def _segments_by_partition(
    rows: Sequence[SegmentRecord],
) -> dict[TopicPartition, list[SegmentRecord]]:
    grouped: dict[TopicPartition, list[SegmentRecord]] = {}
    for row in rows:
        grouped.setdefault(row.tp, []).append(row)
    for group in grouped.values():
        group.sort(key=lambda row: row.base_offset)
    return grouped


def append_segments(
    conn: Connection, key: str, current: PartitionRecord, rows: list[SegmentRecord]
) -> None:
    """The rows go in at the partition's durable end, which moves past them; rows wholly below
    the log start (records deleted before they were flushed) are not kept."""
    if not rows:
        return
    _check_contiguous(key, current, rows)
    kept = [asdict(row) for row in rows if row.last_offset >= current.log_start_offset]
    if kept:
        conn.execute(insert(segments), kept)
    update_partition(conn, current.tp, durable_end_offset=rows[-1].last_offset + 1)


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


def _stored_outcome(conn: Connection, key: str) -> FlushOutcome | None:
    row = conn.execute(select(flush_outcomes).where(flush_outcomes.c.object_key == key)).first()
    if row is None:
        return None
    return FlushOutcome(_decode_partitions(row.committed), _decode_partitions(row.fenced))


def encode_partitions(tps: frozenset[TopicPartition]) -> str:
    return json.dumps([[tp.topic, tp.partition] for tp in sorted(tps)])


def _decode_partitions(text: str) -> frozenset[TopicPartition]:
    return frozenset(TopicPartition(topic, partition) for topic, partition in json.loads(text))


# ---------------------------------------------------------------- segment and object reads


def _select_segments(
    conn: Connection, clock: StoreClock, tp: TopicPartition, from_offset: int, limit: int
) -> list[SegmentRecord]:
    existing_partition(conn, tp, lock=False, now_ms=clock(conn))
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
    return [record_from_row(SegmentRecord, row) for row in conn.execute(query)]


def _sum_segment_lengths(conn: Connection, topic: str) -> dict[int, int]:
    query = (
        select(segments.c.partition, func.sum(segments.c.length))
        .where(segments.c.topic == topic)
        .group_by(segments.c.partition)
    )
    return {int(partition): int(size) for partition, size in conn.execute(query)}


def _count_segment_objects(conn: Connection, topic: str) -> dict[int, int]:
    query = (
        select(segments.c.partition, func.count(segments.c.object_key.distinct()))
        .where(segments.c.topic == topic)
        .group_by(segments.c.partition)
    )
    return {int(partition): int(count) for partition, count in conn.execute(query)}


def _sum_dirty_lengths(conn: Connection, topic: str) -> dict[int, int]:
    checkpoint = (partitions.c.topic == segments.c.topic) & (
        partitions.c.partition == segments.c.partition
    )
    query = (
        select(segments.c.partition, func.sum(segments.c.length))
        .join(partitions, checkpoint)
        .where(segments.c.topic == topic, segments.c.last_offset >= partitions.c.cleaned_end_offset)
        .group_by(segments.c.partition)
    )
    return {int(partition): int(size) for partition, size in conn.execute(query)}


def _select_objects(conn: Connection) -> list[ObjectRecord]:
    query = select(objects).order_by(objects.c.key)
    return [record_from_row(ObjectRecord, row) for row in conn.execute(query)]


def _select_object_refs(
    conn: Connection, clock: StoreClock, after_key: str, limit: int
) -> list[ObjectRef]:
    """A page of objects with their segment counts (the count walks ix_segments_object_key)."""
    now_ms = clock(conn)
    count = (
        select(func.count())
        .select_from(segments)
        .where(segments.c.object_key == objects.c.key)
        .scalar_subquery()
    )
    query = (
        select(objects.c.key, objects.c.size_bytes, objects.c.created_ms, count)
        .add_columns(objects.c.released_ms)
        .where(objects.c.key > after_key)
        .order_by(objects.c.key)
        .limit(limit)
    )
    return [
        ObjectRef(
            str(key),
            int(size_bytes),
            int(created_ms),
            int(segment_count),
            None if released_ms is None else now_ms - int(released_ms),
        )
        for key, size_bytes, created_ms, segment_count, released_ms in conn.execute(query)
    ]


def _select_object_segments(conn: Connection, key: str) -> list[SegmentRecord]:
    query = (
        select(segments)
        .where(segments.c.object_key == key)
        .order_by(segments.c.topic, segments.c.partition, segments.c.base_offset)
    )
    return [record_from_row(SegmentRecord, row) for row in conn.execute(query)]


def _forget_object(conn: Connection, key: str) -> bool:
    """One statement decides: the row goes only while no segment row points into it (a flush
    inserts an object's rows with its segment rows, so none can point into it later)."""
    referenced = exists().where(segments.c.object_key == key)
    deleted = conn.execute(delete(objects).where(objects.c.key == key, ~referenced))
    if deleted.rowcount != 1:
        return False
    conn.execute(delete(flush_outcomes).where(flush_outcomes.c.object_key == key))
    return True
