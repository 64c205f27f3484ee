"""SQL adapter of the transactions port: transactional ids' coordinator state and the offsets
pending in open transactions, every write fenced by a coordinator slot's lease epoch."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection, Row, delete, select

from streamhouse.io.sql.groups import check_coordinator, offsets_upsert, upsert_group_offsets
from streamhouse.io.sql.rows import record_from_row
from streamhouse.io.sql.schema import committed_offsets, transactions, txn_offsets
from streamhouse.io.sql.transactions import SqlAdapter
from streamhouse.log.txn_state import OPEN_STATES, PREPARED, Transaction, TxnState
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import CommittedOffset, CoordinatorFence
from streamhouse.ports.transactions import TransactionStore


class SqlTransactionStore(SqlAdapter, TransactionStore):
    """The transactions port over SQL: one transaction per call."""

    async def get_transaction(self, transactional_id: str) -> Transaction | None:
        return await self._sql.read("get_transaction", _select_transaction, transactional_id)

    async def find_transaction_of_producer(self, producer_id: int) -> Transaction | None:
        return await self._sql.read(
            "find_transaction_of_producer", _select_transaction_of_producer, producer_id
        )

    async def list_transactions(self, slot: TopicPartition | None = None) -> list[Transaction]:
        return await self._sql.read("list_transactions", _select_transactions, slot)

    async def put_transaction(self, txn: Transaction, fence: CoordinatorFence) -> None:
        await self._sql.write("put_transaction", _put_transaction, txn, fence)

    async def expire_transactions(self, fence: CoordinatorFence, updated_before_ms: int) -> int:
        return await self._sql.write(
            "expire_transactions", _delete_expired, fence, updated_before_ms
        )

    async def commit_pending_offsets(
        self,
        group_id: str,
        producer_id: int,
        offsets: Mapping[TopicPartition, CommittedOffset],
        fence: CoordinatorFence | None = None,
    ) -> None:
        await self._sql.write(
            "commit_pending_offsets", _upsert_pending, group_id, producer_id, offsets, fence
        )

    async def pending_offsets(
        self, group_id: str
    ) -> dict[int, dict[TopicPartition, CommittedOffset]]:
        return await self._sql.read("pending_offsets", _select_pending, group_id)


# ---------------------------------------------------------------- transactions


def _select_transaction(conn: Connection, transactional_id: str) -> Transaction | None:
    query = select(transactions).where(transactions.c.transactional_id == transactional_id)
    row = conn.execute(query).one_or_none()
    return None if row is None else _transaction(row)


def _select_transaction_of_producer(conn: Connection, producer_id: int) -> Transaction | None:
    query = select(transactions).where(transactions.c.producer_id == producer_id).limit(1)
    row = conn.execute(query).one_or_none()
    return None if row is None else _transaction(row)


def _select_transactions(conn: Connection, slot: TopicPartition | None) -> list[Transaction]:
    query = select(transactions).order_by(transactions.c.transactional_id)
    if slot is not None:
        query = query.where(transactions.c.slot == slot.partition)
    return [_transaction(row) for row in conn.execute(query)]


def _transaction(row: Row[Any]) -> Transaction:
    partitions = frozenset(TopicPartition(t, p) for t, p in json.loads(row.partitions))
    return record_from_row(
        Transaction,
        row,
        state=TxnState(row.state),
        partitions=partitions,
        groups=frozenset(json.loads(row.groups)),
    )


def _put_transaction(conn: Connection, txn: Transaction, fence: CoordinatorFence) -> None:
    check_coordinator(conn, f"transactional id {txn.transactional_id!r}", fence)
    before = _select_transaction(conn, txn.transactional_id)
    values = {
        **asdict(txn),
        "slot": fence.slot.partition,
        "state": txn.state.value,
        "partitions": json.dumps(sorted([tp.topic, tp.partition] for tp in txn.partitions)),
        "groups": json.dumps(sorted(txn.groups)),
    }
    if before is None:
        conn.execute(transactions.insert().values(values))
    else:
        row = transactions.c.transactional_id == txn.transactional_id
        conn.execute(transactions.update().where(row).values(values))
    deciding = txn.state in PREPARED and (before is None or before.state not in PREPARED)
    if deciding:
        _settle_pending(conn, txn.producer_id, txn.state is TxnState.PREPARE_COMMIT)


def _settle_pending(conn: Connection, producer_id: int, commit: bool) -> None:
    """The decision's offsets: into the groups' committed offsets, or dropped."""
    mine = txn_offsets.c.producer_id == producer_id
    if commit:
        query = select(txn_offsets).where(mine).order_by(*txn_offsets.primary_key.columns)
        rows = [
            {name: getattr(row, name) for name in _COMMITTED_COLUMNS} for row in conn.execute(query)
        ]
        if rows:
            conn.execute(offsets_upsert(conn, committed_offsets, ["group_id"]), rows)
    conn.execute(delete(txn_offsets).where(mine))


_COMMITTED_COLUMNS = [column.name for column in committed_offsets.columns]


def _delete_expired(conn: Connection, fence: CoordinatorFence, updated_before_ms: int) -> int:
    check_coordinator(conn, f"the transactions of slot {fence.slot}", fence)
    idle = [state.value for state in TxnState if state not in OPEN_STATES]
    deleted = conn.execute(
        delete(transactions).where(
            transactions.c.slot == fence.slot.partition,
            transactions.c.state.in_(idle),
            transactions.c.update_ms < updated_before_ms,
        )
    )
    return deleted.rowcount


# ---------------------------------------------------------------- pending offsets


def _upsert_pending(
    conn: Connection,
    group_id: str,
    producer_id: int,
    offsets: Mapping[TopicPartition, CommittedOffset],
    fence: CoordinatorFence | None,
) -> None:
    keys = {"group_id": group_id, "producer_id": producer_id}
    upsert_group_offsets(conn, txn_offsets, keys, offsets, fence)


def _select_pending(
    conn: Connection, group_id: str
) -> dict[int, dict[TopicPartition, CommittedOffset]]:
    query = select(txn_offsets).where(txn_offsets.c.group_id == group_id)
    found: dict[int, dict[TopicPartition, CommittedOffset]] = {}
    for row in conn.execute(query):
        tp = TopicPartition(row.topic, row.partition)
        found.setdefault(row.producer_id, {})[tp] = record_from_row(CommittedOffset, row)
    return found
