"""Continuous views of the cluster: their definitions, which agent runs each, and the
statements and status calls that the HTTP door hands here.

Definitions live in the compacted topic `__streamhouse_views` (made by the first CREATE; key:
the view's org-scoped name, value: its JSON definition, a tombstone on drop), like ksqlDB's
command topic: every agent sharing the metadata store and bucket reads the same definitions,
they survive restarts as any topic does, and no schema change of the metadata store is needed.
Every `check_interval_ms` each agent reads the topic to its end and runs the views whose output
topic's partition 0 it leads (the lease decides: exactly one agent), stopping those it no
longer leads or that were dropped. Runners talk to the cluster as Kafka clients through the
agent's own listener, which needs no credentials only on a PLAINTEXT listener: on SASL or TLS
agents views are refused with a message saying so.

Two agents creating the same name at the same moment both pass the 409 check and the later
definition wins (the catalog is a topic, not a compare-and-set store).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from streamhouse.engine.acls import Grant
from streamhouse.engine.admin import AdminService
from streamhouse.engine.failure import AgentFailure
from streamhouse.engine.log_store import LogStore
from streamhouse.engine.periodic import Periodic
from streamhouse.engine.schema_registry import SchemaRegistry
from streamhouse.errors import StorageError, TopicAlreadyExists, UnknownTopicOrPartition
from streamhouse.names import TopicPartition as EnginePartition
from streamhouse.ports.clock import Clock
from streamhouse.ports.peers import GroupCalls
from streamhouse.ports.rng import Rng
from streamhouse.sql.view_definition import (
    ViewDefinition,
    ViewDrop,
    ViewRefused,
    parse_view_statement,
)
from streamhouse.sql.view_runner import MS_PER_S, ViewLimits, ViewRunner, client_id
from streamhouse.sql.view_state import ViewProgress
from streamhouse.tenancy.acls import AclOperation, ResourceType
from streamhouse.tenancy.names import scoped

log = logging.getLogger(__name__)
CATALOG_TOPIC = "__streamhouse_views"
CATALOG_CONFIGS = {"cleanup.policy": "compact"}
OUTPUT_CONFIGS = {"cleanup.policy": "delete"}
VIEW_ID_BYTES = 8
CATALOG_READ_MAX = 1_000  # records per poll while reading the catalog to its end
CHECK_INTERVAL_MS = 500


@dataclass(frozen=True)
class ViewShown:
    """One view as `GET /api/v1/sql/views` lists it."""

    name: str
    sql: str
    output_topic: str
    allowed_lateness_ms: int
    state: str
    watermark: int | None  # ms since the epoch
    windows_emitted: int
    late_records: int
    invalid_records: int  # records without a usable event time (dropped)
    agent: str | None


class ViewService:
    """Creates, drops, lists and runs the cluster's continuous views on this agent."""

    def __init__(
        self,
        admin: AdminService,
        log_store: LogStore,
        clock: Clock,
        rng: Rng,
        group_calls: GroupCalls,
        bootstrap: str,
        registry: SchemaRegistry,
        *,
        refused: str | None = None,
        limits: ViewLimits | None = None,
        check_interval_ms: int = CHECK_INTERVAL_MS,
    ) -> None:
        self._admin = admin
        self._log = log_store
        self._clock = clock
        self._rng = rng
        self._groups = group_calls
        self._bootstrap = bootstrap
        self._registry = registry
        self._refused = refused
        self._limits = limits or ViewLimits()
        self.definitions: dict[str, ViewDefinition] = {}  # by org-scoped name
        self.runners: dict[str, ViewRunner] = {}
        self._catalog_lock = asyncio.Lock()
        self._reader: Any = None
        self._catalog_next = 0  # past the last catalog record read
        self._writer: Any = None
        self._checks = Periodic("views", clock, check_interval_ms, self.check, log)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, failure: AgentFailure) -> None:
        if self._refused is None:
            self._checks.start(failure)

    async def close(self) -> None:
        await self._checks.stop()
        for runner in list(self.runners.values()):
            await runner.stop()
        self.runners.clear()
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(KafkaException, RuntimeError):
                await asyncio.to_thread(reader.close)
        writer, self._writer = self._writer, None
        if writer is not None:
            await asyncio.to_thread(writer.flush, self._timeout_s)

    @property
    def _timeout_s(self) -> float:
        return self._limits.kafka_timeout_ms / MS_PER_S

    async def check(self) -> None:
        """Read the catalog to its end; run the views led here, stop the others. Until the
        first view is created anywhere there is no catalog, and nothing to do."""
        if self._reader is None and not await self._catalog_exists():
            return
        try:
            await self._read_catalog()
        except (KafkaException, ViewRefused) as error:  # its leader moving: the next check retries
            log.warning("views: cannot read the catalog: %s", error)
            return
        for key, definition in self.definitions.items():
            if key not in self.runners and self._leads(definition):
                self._start_runner(key, definition)
        for key in list(self.runners):
            runner = self.runners[key]
            current = self.definitions.get(key)
            stale = current is None or current.view_id != runner.definition.view_id
            if stale or not self._leads(runner.definition):
                del self.runners[key]
                await runner.stop()

    def _leads(self, definition: ViewDefinition) -> bool:
        tp = EnginePartition(scoped(definition.org, definition.output_topic), 0)
        plog = self._log.led_partition(tp)
        return plog is not None and plog.leading(self._clock.monotonic_ms())

    def _start_runner(self, key: str, definition: ViewDefinition) -> None:
        runner = ViewRunner(
            definition,
            self._bootstrap,
            self._limits,
            self._registry,
            self._clock,
            input_topic=scoped(definition.org, definition.input_topic),
            output_topic=scoped(definition.org, definition.output_topic),
        )
        self.runners[key] = runner
        runner.start()

    # --- the catalog -----------------------------------------------------------------------

    async def _catalog_exists(self) -> bool:
        try:
            await self._admin.topic(CATALOG_TOPIC)
        except UnknownTopicOrPartition:
            return False
        return True

    async def _ensure_catalog(self) -> None:
        if self._reader is not None:
            return
        with contextlib.suppress(TopicAlreadyExists):
            await self._admin.create_topic(CATALOG_TOPIC, 1, CATALOG_CONFIGS)
        common = {"bootstrap.servers": self._bootstrap}
        reader = Consumer(
            {**common, "group.id": "streamhouse-views-catalog", "enable.auto.commit": False}
        )
        reader.assign([TopicPartition(CATALOG_TOPIC, 0, OFFSET_BEGINNING)])
        self._writer = Producer({**common, "acks": "all", "enable.idempotence": True})
        self._reader = reader

    async def _read_catalog(self, *, patient: bool = True) -> None:
        """Apply the catalog's records up to its end as of now (ViewRefused(503) when that
        takes longer than the Kafka timeout or the catalog cannot be read, as while its
        partition's leader moves). A Kafka error is retried, every retry_backoff_ms, for
        kafka_timeout_ms: a catalog just created, or whose leader just died, has none yet
        (not `patient`: tried once)."""
        deadline_ms = self._clock.monotonic_ms() + (self._limits.kafka_timeout_ms if patient else 0)
        while True:
            try:
                await self._read_catalog_to_end()
                return
            except KafkaException as error:
                if self._clock.monotonic_ms() >= deadline_ms:
                    raise ViewRefused(
                        503, f"the views catalog could not be read ({error.args[0].str()}); retry"
                    ) from None
            await self._clock.sleep_ms(self._limits.retry_backoff_ms)

    async def _read_catalog_to_end(self) -> None:
        async with self._catalog_lock:
            await self._ensure_catalog()
            reader = self._reader
            tp = TopicPartition(CATALOG_TOPIC, 0)
            _, end = await asyncio.to_thread(reader.get_watermark_offsets, tp, self._timeout_s)
            deadline_ms = self._clock.monotonic_ms() + self._limits.kafka_timeout_ms
            while await self._catalog_position(tp) < end:
                if self._clock.monotonic_ms() > deadline_ms:
                    raise ViewRefused(
                        503,
                        f"the views catalog was not read to its end within "
                        f"{self._limits.kafka_timeout_ms} ms (kafka_timeout_ms); retry",
                    )
                for message in await asyncio.to_thread(
                    reader.consume, CATALOG_READ_MAX, self._limits.poll_wait_ms / MS_PER_S
                ):
                    if message.error() is None:
                        self._catalog_next = message.offset() + 1
                        self._apply(message.key(), message.value())

    async def _catalog_position(self, tp: TopicPartition) -> int:
        """Where the catalog reader is: its fetch position (past records compaction removed)
        once it has one, else past the last record it read."""
        position: int = (await asyncio.to_thread(self._reader.position, [tp]))[0].offset
        return max(position, self._catalog_next)

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        name = key.decode()
        if value is None:
            self.definitions.pop(name, None)
        else:
            self.definitions[name] = ViewDefinition.from_json(value)

    async def _write_catalog(self, key: str, value: bytes | None) -> None:
        async with self._catalog_lock:
            await self._ensure_catalog()
            delivered: list[Any] = []
            self._writer.produce(
                CATALOG_TOPIC, value, key.encode(), on_delivery=lambda e, _: delivered.append(e)
            )
            await asyncio.to_thread(self._writer.flush, self._timeout_s)
            if not delivered or delivered[0] is not None:
                raise ViewRefused(503, f"the views catalog did not take the change: {delivered}")
            self._apply(key.encode(), value)

    # --- statements ------------------------------------------------------------------------

    async def execute(self, text: str, grant: Grant, org: str) -> pa.Table:
        """Run a CREATE or DROP MATERIALIZED VIEW statement (the SqlService's hook); what it
        did, as one row."""
        return pa.Table.from_pylist([await self._execute(text, grant, org)])

    async def _execute(self, text: str, grant: Grant, org: str) -> dict[str, Any]:
        if self._refused is not None:
            raise ViewRefused(400, f"continuous views cannot run on this agent: {self._refused}")
        view_id = self._rng.randbytes(VIEW_ID_BYTES).hex()
        statement = parse_view_statement(text, org, view_id)
        if isinstance(statement, ViewDrop):
            dropped = await self.drop(org, statement.name, grant, if_exists=statement.if_exists)
            return {"view": statement.name, "dropped": dropped}
        await self._create(statement, grant)
        return {"view": statement.name, "output_topic": statement.output_topic, "created": True}

    async def _create(self, definition: ViewDefinition, grant: Grant) -> None:
        org = definition.org
        source, target = definition.input_topic, definition.output_topic
        if source == target:
            raise ViewRefused(400, f"a view cannot write to its input topic {source!r}")
        if not grant.allows(AclOperation.READ, ResourceType.TOPIC, source):
            raise ViewRefused(403, f"not authorized to READ topic {source}")
        if not grant.allows(AclOperation.WRITE, ResourceType.TOPIC, target):
            raise ViewRefused(403, f"not authorized to WRITE topic {target}")
        await self._topic(org, source)
        await self._read_catalog()
        key = _key(org, definition.name)
        if key in self.definitions:
            raise ViewRefused(409, f"materialized view {definition.name!r} already exists")
        await self._output_topic(definition, grant)
        await self._write_catalog(key, definition.to_json())

    async def _topic(self, org: str, name: str) -> None:
        try:
            await self._admin.topic(_internal(org, name))
        except UnknownTopicOrPartition:
            raise ViewRefused(404, f"topic {name!r} does not exist") from None
        except StorageError as error:
            raise ViewRefused(503, f"the metadata store failed, retry: {error}") from None

    async def _output_topic(self, definition: ViewDefinition, grant: Grant) -> None:
        name = definition.output_topic
        try:
            await self._topic(definition.org, name)
            return
        except ViewRefused as refused:
            if refused.http_status != 404:
                raise
        if not grant.may_create_topic(name):
            raise ViewRefused(403, f"not authorized to CREATE topic {name}")
        with contextlib.suppress(TopicAlreadyExists):
            await self._admin.create_topic(_internal(definition.org, name), 1, OUTPUT_CONFIGS)

    async def drop(self, org: str, name: str, grant: Grant, *, if_exists: bool = False) -> bool:
        """Drop view `name` of `org` (its output topic stays); False when it did not exist and
        `if_exists`, ViewRefused(404) when it did not otherwise."""
        if self._refused is not None:
            raise ViewRefused(400, f"continuous views cannot run on this agent: {self._refused}")
        await self._read_catalog()
        key = _key(org, name)
        definition = self.definitions.get(key)
        if definition is None:
            if if_exists:
                return False
            raise ViewRefused(404, f"materialized view {name!r} does not exist")
        if not grant.allows(AclOperation.WRITE, ResourceType.TOPIC, definition.output_topic):
            raise ViewRefused(403, f"not authorized to WRITE topic {definition.output_topic}")
        await self._write_catalog(key, None)
        runner = self.runners.pop(key, None)
        if runner is not None:
            await runner.stop()
        return True

    # --- status ----------------------------------------------------------------------------

    async def views(self, org: str) -> list[ViewShown]:
        """The org's views, with the progress of each (live where it runs here, else as its
        runner last committed it)."""
        if self._refused is not None:
            return []
        try:
            await self._read_catalog(patient=False)
        except ViewRefused as refused:  # a status: show the views known, as last read
            log.warning("views listed as last read: %s", refused.message)
        shown = []
        for key, definition in sorted(self.definitions.items()):
            if definition.org == org:
                shown.append(await self._shown(key, definition))
        return shown

    async def _shown(self, key: str, definition: ViewDefinition) -> ViewShown:
        runner = self.runners.get(key)
        if runner is not None:
            status = runner.status()
            state, progress, watermark = status.state, status.progress, status.watermark_ms
            agent: str | None = self._log.agent_id
        else:
            progress = await self._committed(definition)
            state = "running elsewhere"
            watermark = _watermark(definition, progress)
            agent = await self._runner_agent(definition)
        return ViewShown(
            name=definition.name,
            sql=definition.sql,
            output_topic=definition.output_topic,
            allowed_lateness_ms=definition.allowed_lateness_ms,
            state=state,
            watermark=watermark,
            windows_emitted=progress.windows_emitted,
            late_records=progress.late_records,
            invalid_records=progress.invalid_records,
            agent=agent,
        )

    async def _committed(self, definition: ViewDefinition) -> ViewProgress:
        group = scoped(definition.org, client_id(definition.name))
        try:
            found = await self._groups.fetch_offsets(group, None)
        except Exception:  # status is best effort: a coordinator moving, unreachable
            found = {}
        metadata: Mapping[int, str | None] = {tp.partition: o.metadata for tp, o in found.items()}
        return ViewProgress.committed(definition.view_id, metadata)

    async def _runner_agent(self, definition: ViewDefinition) -> str | None:
        tp = EnginePartition(scoped(definition.org, definition.output_topic), 0)
        hint = await self._admin.current_leader(tp)
        return None if hint is None else hint[0].agent_id

    def late_records(self) -> dict[str, int]:
        """The late records of the views running here, by view name (for /metrics)."""
        return {
            runner.definition.name: runner.status().progress.late_records
            for runner in self.runners.values()
        }


def _key(org: str, name: str) -> str:
    return scoped(org, name)


def _internal(org: str, name: str) -> str:
    try:
        return scoped(org, name)
    except ValueError:
        raise ViewRefused(404, f"topic {name!r} does not exist") from None


def _watermark(definition: ViewDefinition, progress: ViewProgress) -> int | None:
    seen = progress.max_event_ms
    return None if seen is None else seen - definition.allowed_lateness_ms
