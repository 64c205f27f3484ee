"""The composition root: builds the real adapters from settings and wires the engine to them."""

from __future__ import annotations

import os
from dataclasses import dataclass

from streamhouse.config import Settings
from streamhouse.engine.groups import GroupCoordinator
from streamhouse.engine.log_store import LogStore
from streamhouse.io.local_disk import LocalDisk
from streamhouse.io.local_object_store import LocalObjectStore
from streamhouse.io.null_storage import NullDisk, NullObjectStore
from streamhouse.io.s3_object_store import S3ObjectStore
from streamhouse.io.sql_metadata import open_sql_metadata
from streamhouse.io.system_clock import SystemClock
from streamhouse.io.system_rng import SystemRng
from streamhouse.log.ids import ULID_RANDOM_BYTES, ulid
from streamhouse.ports.buggify import Buggify
from streamhouse.ports.clock import Clock
from streamhouse.ports.disk import Disk
from streamhouse.ports.metadata import MetadataStore
from streamhouse.ports.object_store import ObjectStore
from streamhouse.ports.rng import Rng
from streamhouse.server.kafka_context import KafkaContext
from streamhouse.server.kafka_listener import KafkaListener, advertised_apis, advertised_host

AGENT_ID_FILE = "agent-id"
WAL_DISK_DIRECTORY = "local"


def metadata_url(settings: Settings) -> str:
    """The metadata store's URL: the configured one, else a SQLite file in the data directory
    (which is created if missing)."""
    if settings.metadata_url:
        return settings.metadata_url
    os.makedirs(settings.data_dir, exist_ok=True)
    return f"sqlite:///{os.path.abspath(os.path.join(settings.data_dir, 'metadata.db'))}"


def object_store_location(settings: Settings) -> str:
    """Where objects go: the configured s3:// URL, else a directory in the data directory."""
    return settings.object_store_url or os.path.abspath(os.path.join(settings.data_dir, "objects"))


async def open_object_store(settings: Settings) -> ObjectStore:
    location = object_store_location(settings)
    if not location.startswith("s3://"):
        return LocalObjectStore(location.removeprefix("file://"))
    store = S3ObjectStore.from_url(
        location,
        settings,
        endpoint_url=settings.s3_endpoint_url or None,
        region=settings.s3_region,
        access_key_id=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
    )
    await store.ensure_bucket()
    return store


async def agent_identity(disk: Disk, clock: Clock, rng: Rng, configured: str) -> str:
    """The configured agent id, else the one kept on disk, else a new one kept from now on."""
    if configured:
        return configured
    if disk.exists(AGENT_ID_FILE):
        return disk.read(AGENT_ID_FILE).decode().strip()
    agent_id = "agent-" + ulid(clock.now_ms(), rng.randbytes(ULID_RANDOM_BYTES)).lower()
    await disk.write_atomic(AGENT_ID_FILE, agent_id.encode())
    return agent_id


@dataclass
class Broker:
    """A running agent's engine, its front doors and the adapters it owns."""

    settings: Settings
    agent_id: str
    log: LogStore
    metadata: MetadataStore
    objects: ObjectStore
    kafka: KafkaListener
    kafka_port: int

    async def close(self) -> None:
        """Stop accepting requests, flush what is pending, release connections."""
        await self.kafka.close()
        await self.kafka.context.groups.close()
        await self.log.close(flush=True)
        await self.metadata.close()


async def _open_storage(settings: Settings) -> tuple[Disk, ObjectStore, MetadataStore]:
    if settings.storage == "null":  # benchmark baseline: same code path, no storage cost
        metadata = open_sql_metadata(settings.metadata_url or "sqlite://")
        return NullDisk(), NullObjectStore(), metadata
    disk = LocalDisk(os.path.join(settings.data_dir, WAL_DISK_DIRECTORY))
    return disk, await open_object_store(settings), open_sql_metadata(metadata_url(settings))


async def open_broker(settings: Settings) -> Broker:
    """Build every real adapter, recover the log and start the background services."""
    disk, objects, metadata = await _open_storage(settings)
    return await assemble_broker(settings, SystemClock(), SystemRng(), disk, objects, metadata)


async def assemble_broker(
    settings: Settings,
    clock: Clock,
    rng: Rng,
    disk: Disk,
    objects: ObjectStore,
    metadata: MetadataStore,
    buggify: Buggify | None = None,
) -> Broker:
    """Wire the engine and its front doors to the given ports (real ones, or the simulator's),
    recover the log and start listening. `buggify`: the simulator's switch; production
    passes none (a switch that never fires)."""
    agent_id = await agent_identity(disk, clock, rng, settings.agent_id)
    log = LogStore(settings, clock, rng, disk, objects, metadata, agent_id, buggify or Buggify())
    await log.open()
    host = advertised_host(settings.kafka_host, settings.advertised_host)
    groups = GroupCoordinator(settings, clock, rng, metadata)
    groups.start(log.crashed)
    context = KafkaContext(
        settings,
        clock,
        log,
        metadata,
        advertised_apis(),
        host,
        0,
        f"streamhouse-{settings.org}",
        groups,
    )
    kafka = KafkaListener(context)
    port = await kafka.start(settings.kafka_host, settings.kafka_port)
    context.advertised_port = port
    return Broker(settings, agent_id, log, metadata, objects, kafka, port)
