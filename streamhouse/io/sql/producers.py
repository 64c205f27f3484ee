"""SQL adapter of the producers port: producer ids, and idempotent producers' state.

The state of a partition's producers is written only by flush commits
(`fold_producers`, called by the leases adapter for committed partitions),
so it always matches the partition's durable end.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import astuple
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from streamhouse.io.sql.schema import (
    PRODUCER_ID_COUNTER,
    counters,
    partition_txns,
    producer_states,
)
from streamhouse.io.sql.transactions import SqlAdapter
from streamhouse.log.partition_txns import AbortedTxn, TxnBegan, TxnChange, TxnEnded
from streamhouse.log.producer_state import ProducerBatch, ProducerSnapshot, SequencedBatch, folded
from streamhouse.names import TopicPartition
from streamhouse.ports.producers import ProducerStore


class SqlProducerStore(SqlAdapter, ProducerStore):
    """The producers port over SQL: one transaction per call."""

    async def list_producer_states(self, tp: TopicPartition) -> list[ProducerSnapshot]:
        return await self._sql.read("list_producer_states", _producer_states, tp)

    async def list_open_txns(self, tp: TopicPartition) -> dict[int, int]:
        return await self._sql.read("list_open_txns", _open_txns, tp)

    async def list_aborted_txns(
        self, tp: TopicPartition, from_offset: int, to_offset: int
    ) -> list[AbortedTxn]:
        return await self._sql.read("list_aborted_txns", _aborted_txns, tp, from_offset, to_offset)

    async def allocate_producer_id(self) -> int:
        return await self._sql.write("allocate_producer_id", _next_producer_id)


def _in_partition(tp: TopicPartition) -> tuple[Any, Any]:
    return partition_txns.c.topic == tp.topic, partition_txns.c.partition == tp.partition


def _open_txns(conn: Connection, tp: TopicPartition) -> dict[int, int]:
    query = select(partition_txns.c.producer_id, partition_txns.c.first_offset).where(
        *_in_partition(tp), partition_txns.c.last_offset.is_(None)
    )
    return {row.producer_id: row.first_offset for row in conn.execute(query)}


def _aborted_txns(
    conn: Connection, tp: TopicPartition, from_offset: int, to_offset: int
) -> list[AbortedTxn]:
    query = (
        select(partition_txns)
        .where(
            *_in_partition(tp),
            partition_txns.c.last_offset >= from_offset,
            partition_txns.c.first_offset <= to_offset,
        )
        .order_by(partition_txns.c.last_offset)
    )
    return [AbortedTxn(r.producer_id, r.first_offset, r.last_offset) for r in conn.execute(query)]


def apply_txn_changes(conn: Connection, tp: TopicPartition, changes: Sequence[TxnChange]) -> None:
    """Apply a committed flush's transaction changes of `tp`, in offset order: an opened
    transaction gets a row, a committed one loses it, an aborted one keeps it with its
    marker's offset (what reads of aborted ranges need)."""
    for change in changes:
        if isinstance(change, TxnBegan):
            conn.execute(
                insert(partition_txns).values(
                    topic=tp.topic,
                    partition=tp.partition,
                    producer_id=change.producer_id,
                    first_offset=change.first_offset,
                    last_offset=None,
                )
            )
            continue
        this_txn = (
            *_in_partition(tp),
            partition_txns.c.producer_id == change.producer_id,
            partition_txns.c.first_offset == change.first_offset,
        )
        if change.committed:
            conn.execute(delete(partition_txns).where(*this_txn))
            continue
        ended = update(partition_txns).where(*this_txn).values(last_offset=change.marker_offset)
        if conn.execute(ended).rowcount == 0:  # its opening was never committed (a replay)
            conn.execute(insert(partition_txns).values(_txn_row(tp, change)))


def _txn_row(tp: TopicPartition, change: TxnEnded) -> dict[str, Any]:
    return {
        "topic": tp.topic,
        "partition": tp.partition,
        "producer_id": change.producer_id,
        "first_offset": change.first_offset,
        "last_offset": change.marker_offset,
    }


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


def _next_producer_id(conn: Connection) -> int:
    counter = counters.c.name == PRODUCER_ID_COUNTER
    value: int = conn.execute(
        select(counters.c.next_value).where(counter).with_for_update()
    ).scalar_one()
    conn.execute(update(counters).where(counter).values(next_value=value + 1))
    return value


def fold_producers(
    conn: Connection,
    tp: TopicPartition,
    produced: Sequence[ProducerBatch],
    *,
    appended_ms: int,
    expire_before_ms: int,
) -> None:
    """Fold a committed flush's idempotent batches of `tp` into the stored states, and drop
    the states last appended to before `expire_before_ms` (readers skip expired states too,
    so a partition without idempotent writes may keep them a while)."""
    if not produced:
        return  # partitions without idempotent writes cost this flush nothing
    here = (producer_states.c.topic == tp.topic, producer_states.c.partition == tp.partition)
    conn.execute(
        delete(producer_states).where(*here, producer_states.c.last_append_ms < expire_before_ms)
    )
    touched = producer_states.c.producer_id.in_({p.producer_id for p in produced})
    states = {
        row.producer_id: _producer_snapshot(row)
        for row in conn.execute(select(producer_states).where(*here, touched))
    }
    for producer in produced:
        states[producer.producer_id] = folded(
            states.get(producer.producer_id), producer, appended_ms
        )
    conn.execute(delete(producer_states).where(*here, touched))
    conn.execute(
        insert(producer_states), [_state_row(tp, state) for _, state in sorted(states.items())]
    )


def _state_row(tp: TopicPartition, state: ProducerSnapshot) -> dict[str, Any]:
    return {
        "topic": tp.topic,
        "partition": tp.partition,
        "producer_id": state.producer_id,
        "producer_epoch": state.producer_epoch,
        "batches": json.dumps([list(astuple(batch)) for batch in state.batches]),
        "last_append_ms": state.last_append_ms,
    }
