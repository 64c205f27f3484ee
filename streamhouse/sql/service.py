"""SQL over topics, the rule every door calls: a query's topics scanned and decoded into Arrow,
registered under their names on a fresh DuckDB connection, and the query run there.

Each topic is the caller's org's (`tenancy.names.scoped`: another org's topic is as unknown as
a missing one, 404) and needs READ in the caller's grant (403, checked first as Kafka does).
Bounds (Settings): sql_scan_rows_max and sql_scan_bytes_max over the records the scans read
(413, naming the limit and how to narrow the query), sql_result_rows_max over the answer (413),
sql_query_timeout_ms over the whole query (504), sql_queries_in_flight_max queries at once per
agent (429); DuckDB gets sql_threads and sql_memory_bytes_max and runs in a worker thread, so
the agent's loop keeps serving.

EXPLAIN <query> answers explain.py's listing of the objects the scans read and skip; EXPLAIN
ANALYZE <query> runs it and answers DuckDB's profile. CREATE / DROP MATERIALIZED VIEW go to the
views hook (`ViewStatements`), when the agent has one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from streamhouse.config import Settings
from streamhouse.engine.acls import EVERYTHING, Grant
from streamhouse.engine.admin import AdminService
from streamhouse.engine.consume import ConsumedRecord, FetchService
from streamhouse.engine.schema_registry import SchemaRegistry
from streamhouse.errors import StorageError, StreamHouseError, UnknownTopicOrPartition
from streamhouse.ports.leases import LeaseStore
from streamhouse.server.http_sql import SqlRefused
from streamhouse.sql.decoding import TopicDecoder, topic_decoder
from streamhouse.sql.engine import (
    EngineLimits,
    QueryFailed,
    QueryInterrupted,
    QueryRun,
    ResultTooLarge,
)
from streamhouse.sql.explain import Explainer, explain_table
from streamhouse.sql.pushdown import EVERYTHING as WHOLE_TOPIC
from streamhouse.sql.pushdown import ScanRange, scan_range
from streamhouse.sql.scan import ScanBounds, ScanLimit, ScanStats, scan_topic
from streamhouse.sql.statements import Kind, Statement, StatementRefused, read_statement
from streamhouse.tenancy.acls import AclOperation, ResourceType
from streamhouse.tenancy.names import DEFAULT_ORG, scoped

DECODE_BATCH_ROWS = 10_000  # records decoded into one Arrow batch
NARROWING_HINT = (
    "narrow the query with a filter the scan uses: `_timestamp >= TIMESTAMP '…'`, "
    "`_partition = n` or `_offset >= n`"
)


class SqlError(SqlRefused):
    """A query refused: `http_status` (400 bad SQL, 403 not allowed, 404 unknown topic,
    413 a named limit passed, 429 too many queries, 503 storage, 504 time) and `message`
    (the HTTP door answers its SqlRefused base)."""


@dataclass(frozen=True)
class SqlResult:
    """A query's answer (EXPLAIN's listing too) and what its scans read."""

    table: pa.Table
    stats: ScanStats = field(default_factory=ScanStats)


class ViewStatements(Protocol):
    """The hook CREATE / DROP MATERIALIZED VIEW go to (continuous views' service)."""

    async def execute(self, text: str, grant: Grant, org: str) -> pa.Table: ...


@dataclass(frozen=True)
class _Topic:
    shown: str  # as the caller names it (and the query's table name)
    internal: str  # as the engine keeps it


class SqlService:
    """Queries over the topics of the caller's org."""

    def __init__(
        self,
        settings: Settings,
        admin: AdminService,
        fetch: FetchService,
        registry: SchemaRegistry,
        segments: LeaseStore,
        views: ViewStatements | None = None,
    ) -> None:
        self._settings = settings
        self._admin = admin
        self._fetch = fetch
        self._registry = registry
        self._explainer = Explainer(fetch, admin, segments)
        self.views = views  # set by the composition root once the views service exists
        self._in_flight = 0

    async def query(
        self, text: str, grant: Grant | None = None, *, org: str = DEFAULT_ORG
    ) -> SqlResult:
        """The answer of `text` in `org` as `grant` allows (None: everything); SqlError if
        refused."""
        if self._in_flight >= self._settings.sql_queries_in_flight_max:
            raise SqlError(
                429,
                f"sql_queries_in_flight_max={self._settings.sql_queries_in_flight_max} "
                "queries already run on this agent; retry shortly",
            )
        self._in_flight += 1
        try:
            return await self._query(text, grant or EVERYTHING, org)
        finally:
            self._in_flight -= 1

    async def _query(self, text: str, grant: Grant, org: str) -> SqlResult:
        try:
            statement = read_statement(text)
        except StatementRefused as refused:
            raise SqlError(400, str(refused)) from None
        if statement.kind is Kind.VIEW:
            if self.views is None:
                raise SqlError(400, "materialized views are not available on this agent")
            return SqlResult(await self.views.execute(text, grant, org))
        topics = [_checked(org, grant, name) for name in statement.topics]
        for topic in topics:
            await self._exists(topic)
        timeout_ms = self._settings.sql_query_timeout_ms
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                return await self._answer(statement, topics, org)
        except TimeoutError:
            raise SqlError(
                504, f"the query ran past sql_query_timeout_ms={timeout_ms}; {NARROWING_HINT}"
            ) from None
        except UnknownTopicOrPartition:  # deleted while the query ran
            raise SqlError(404, "a topic the query names no longer exists") from None
        except StorageError as error:
            raise SqlError(503, f"the store failed, retry: {error}") from None
        except StreamHouseError as error:
            raise SqlError(503, f"{error.code.name} while reading, retry: {error}") from None

    async def _exists(self, topic: _Topic) -> None:
        try:
            await self._admin.topic(topic.internal)
        except UnknownTopicOrPartition:
            raise SqlError(404, f"topic {topic.shown!r} does not exist") from None
        except StorageError as error:
            raise SqlError(503, f"the store failed, retry: {error}") from None

    async def _answer(self, statement: Statement, topics: list[_Topic], org: str) -> SqlResult:
        assert statement.tree is not None
        ranges = {t.shown: scan_range(statement.tree, t.shown) for t in topics}
        if statement.kind is Kind.EXPLAIN:
            rows = []
            for topic in topics:
                rows += await self._explainer.listing(
                    topic.internal, topic.shown, ranges[topic.shown]
                )
            return SqlResult(explain_table(rows))
        bounds = ScanBounds(self._settings.sql_scan_rows_max, self._settings.sql_scan_bytes_max)
        tables = {}
        for topic in topics:
            tables[topic.shown] = await self._table(topic, org, ranges[topic.shown], bounds)
        text = statement.text
        if statement.kind is Kind.EXPLAIN_ANALYZE:
            text = f"EXPLAIN ANALYZE {text}"
        return SqlResult(await self._run(tables, text), bounds.stats)

    async def _table(
        self, topic: _Topic, org: str, wanted: ScanRange, bounds: ScanBounds
    ) -> pa.Table:
        decoder = await topic_decoder(self._registry, org, topic.shown)
        pending: list[ConsumedRecord] = []
        batches: list[pa.RecordBatch] = []

        def gathered(records: list[ConsumedRecord]) -> None:
            pending.extend(records)

        try:
            await scan_topic(self._fetch, self._admin, topic.internal, wanted, bounds, gathered)
        except ScanLimit as limit:
            raise SqlError(413, _scan_limit_message(topic.shown, limit, wanted)) from None
        for first in range(0, len(pending), DECODE_BATCH_ROWS):
            batches.append(await decoder.decode(pending[first : first + DECODE_BATCH_ROWS]))
        return _as_table(decoder, batches)

    async def _run(self, tables: dict[str, pa.Table], text: str) -> pa.Table:
        limits = EngineLimits(
            self._settings.sql_threads,
            self._settings.sql_memory_bytes_max,
            self._settings.sql_result_rows_max,
        )
        try:
            run = QueryRun(tables, limits)
        except QueryFailed as failed:
            raise SqlError(400, str(failed)) from None
        worker = asyncio.ensure_future(asyncio.to_thread(run.run, text))
        try:
            return await asyncio.shield(worker)
        except asyncio.CancelledError:
            run.interrupt()  # the thread cannot be cancelled; DuckDB stops at its next check
            await asyncio.gather(worker, return_exceptions=True)
            raise
        except ResultTooLarge:
            raise SqlError(
                413,
                f"the answer has more than sql_result_rows_max={limits.result_rows_max} rows; "
                "add a LIMIT or aggregate",
            ) from None
        except QueryFailed as failed:
            raise SqlError(400, str(failed)) from None
        except QueryInterrupted:
            raise TimeoutError() from None


def _checked(org: str, grant: Grant, name: str) -> _Topic:
    """The caller's topic `name`: 403 without READ, 404 when it would be another org's."""
    if not grant.allows(AclOperation.READ, ResourceType.TOPIC, name):
        raise SqlError(403, f"not authorized to READ topic {name}")
    try:
        return _Topic(name, scoped(org, name))
    except ValueError:
        raise SqlError(404, f"topic {name!r} does not exist") from None


def _as_table(decoder: TopicDecoder, batches: list[pa.RecordBatch]) -> pa.Table:
    decoder.infer(())  # a topic without records still has its meta columns
    schema = decoder.schema
    assert schema is not None
    return pa.Table.from_batches(batches, schema=schema)


def _scan_limit_message(topic: str, limit: ScanLimit, wanted: ScanRange) -> str:
    unit = "bytes" if limit.limit.endswith("bytes_max") else "records"
    narrowed = " (already narrowed)" if wanted != WHOLE_TOPIC else ""
    return (
        f"the scan of topic {topic}{narrowed} reads more than {limit.limit}={limit.value} "
        f"{unit}; {NARROWING_HINT}"
    )
