"""The whole metadata store over SQL: every port's adapter sharing one set of transactions."""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine

from streamhouse.io.sql.groups import SqlGroupStore
from streamhouse.io.sql.jobs import SqlJobClaims
from streamhouse.io.sql.leases import SqlLeaseStore
from streamhouse.io.sql.membership import SqlMembershipStore
from streamhouse.io.sql.producers import SqlProducerStore
from streamhouse.io.sql.schemas import SqlSchemaStore
from streamhouse.io.sql.snapshots import SqlSnapshotStore
from streamhouse.io.sql.store_clock import StoreClock
from streamhouse.io.sql.tenancy import SqlTenancyStore
from streamhouse.io.sql.topics import SqlTopicStore
from streamhouse.io.sql.transactions import (
    SQLITE_BUSY_TIMEOUT_MS,
    BlockingRunner,
    open_transactions,
)
from streamhouse.io.sql.txn_store import SqlTransactionStore
from streamhouse.ports.metadata import MetadataStore


def open_sql_metadata(
    url: str,
    *,
    run_blocking: BlockingRunner = asyncio.to_thread,
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    store_clock: StoreClock | None = None,
) -> SqlMetadataStore:
    """Open the store at `url` (by default blocking calls run on threads), migrated to head;
    expiry is judged by `store_clock`, the database's own clock unless given."""
    sql = open_transactions(
        url, run_blocking=run_blocking, busy_timeout_ms=busy_timeout_ms, store_clock=store_clock
    )
    return SqlMetadataStore(sql)


class SqlMetadataStore(
    SqlTopicStore,
    SqlLeaseStore,
    SqlProducerStore,
    SqlGroupStore,
    SqlMembershipStore,
    SqlTransactionStore,
    SqlJobClaims,
    SqlSnapshotStore,
    SqlSchemaStore,
    SqlTenancyStore,
    MetadataStore,
):
    """SQLite or PostgreSQL as every metadata port."""

    @property
    def engine(self) -> Engine:
        return self._sql.engine

    async def close(self) -> None:
        await self._sql.close()
