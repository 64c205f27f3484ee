"""The composition root: builds the adapters from settings, wires the engine services to them
and opens the front doors (above every other floor; the only module that knows them all)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from streamhouse import __version__
from streamhouse.cli.main import AgentBanner, build_app, print_banner, print_status
from streamhouse.config import HTTP_DISABLED, RECONCILE_OFF, RETENTION_OFF, Settings
from streamhouse.engine.acls import AclService
from streamhouse.engine.admin import AdminService
from streamhouse.engine.authentication import (
    DIGEST_SALT_BYTES,
    Authenticator,
    BlockingRunner,
    StoreAuthenticator,
    run_inline,
)
from streamhouse.engine.cluster import ClusterDirectory
from streamhouse.engine.compactor import Compactor
from streamhouse.engine.consume import FetchService
from streamhouse.engine.consumer_instances import ConsumerInstances
from streamhouse.engine.coordinators import CoordinatorSlots, ensure_coordinator_slots
from streamhouse.engine.damaged_objects import DamagedObjects
from streamhouse.engine.embedded_formats import EmbeddedFormats
from streamhouse.engine.failure import AgentFailure
from streamhouse.engine.forwarding import Forwarding, forwarding_refused
from streamhouse.engine.group_calls import LocalGroupCalls, RoutedGroupCalls
from streamhouse.engine.groups import GroupCoordinator
from streamhouse.engine.log_store import LogStore
from streamhouse.engine.membership import Membership
from streamhouse.engine.merger import Merger
from streamhouse.engine.org_limits import OrgLimits
from streamhouse.engine.ownership import Ownership
from streamhouse.engine.produce import ProduceService
from streamhouse.engine.quotas import QuotaService
from streamhouse.engine.rebuild import Rebuilder, RebuildReport
from streamhouse.engine.reconciler import ReconcileLoop, Reconciler
from streamhouse.engine.remembered_topics import RememberedTopics
from streamhouse.engine.retention import Retention
from streamhouse.engine.rewrite import Rewriter
from streamhouse.engine.schema_registry import SchemaRegistry
from streamhouse.engine.schema_validation import RecordSchemas
from streamhouse.engine.snapshots import SnapshotWriter
from streamhouse.engine.tenancy import IssuedKey, TenancyService
from streamhouse.engine.transactions import TransactionCoordinator
from streamhouse.engine.txn_markers import MarkerDelivery
from streamhouse.engine.txn_verification import TxnVerification
from streamhouse.errors import StreamHouseError
from streamhouse.io.directory_lock import locked_directory
from streamhouse.io.kafka_peer import (
    StreamsMarkerSender,
    StreamsPeerGroups,
    StreamsPeerRequests,
)
from streamhouse.io.local_disk import LocalDisk
from streamhouse.io.locations import metadata_url, object_store_location, wal_directory
from streamhouse.io.null_storage import NullDisk, NullObjectStore
from streamhouse.io.sql.store import open_sql_metadata
from streamhouse.io.storage import open_metadata_store, open_object_store
from streamhouse.io.system_clock import SystemClock
from streamhouse.io.system_rng import SystemRng
from streamhouse.log.ids import ULID_RANDOM_BYTES, ulid
from streamhouse.ports.buggify import Buggify
from streamhouse.ports.clock import Clock
from streamhouse.ports.disk import Disk
from streamhouse.ports.metadata import MetadataStore
from streamhouse.ports.object_store import ObjectStore
from streamhouse.ports.peers import GroupCalls
from streamhouse.ports.rng import Rng
from streamhouse.ports.tenancy import TenancyStore
from streamhouse.server.grpc_door import GrpcDoor, GrpcEngine, start_grpc_door
from streamhouse.server.http_api import AgentHttp, AgentIdentity, start_agent_http
from streamhouse.server.http_auth import HttpAuth
from streamhouse.server.http_sql import install_sql_route
from streamhouse.server.kafka_context import KafkaContext
from streamhouse.server.kafka_listener import (
    KafkaListener,
    advertised_apis,
    advertised_host,
    check_kafka_security,
)
from streamhouse.server.metrics import AgentGauges, BackgroundStats, agent_registry
from streamhouse.server.rest_app import RestDoor, start_rest_door
from streamhouse.server.rest_common import RestServices
from streamhouse.server.schema_registry import RegistryDoor, start_registry_door
from streamhouse.server.sql_views_api import ViewsCollector, install_view_routes
from streamhouse.server.tenancy_api import install_tenancy_routes
from streamhouse.sql.service import SqlService
from streamhouse.sql.views import ViewService
from streamhouse.supervisor import Supervisor, drain_surplus
from streamhouse.tenancy.keys import SALT_BYTES, hash_secret, secret_matches

AGENT_ID_FILE = "agent-id"
EXIT_INVARIANT_BROKEN = 70  # EX_SOFTWARE: our own invariant failed; the WAL keeps the data
EXIT_CANNOT_START = 1
GC_THRESHOLDS = (20_000, 20, 100)  # gc.set_threshold: allocations between young collections


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
class Agent:
    """A running agent's engine, its Kafka door, the adapters it owns and its failure signal."""

    settings: Settings
    agent_id: str
    failure: AgentFailure
    log: LogStore
    admin: AdminService
    metadata: MetadataStore
    objects: ObjectStore
    kafka: KafkaListener
    kafka_port: int
    membership: Membership
    ownership: Ownership
    snapshots: SnapshotWriter
    reconciler: Reconciler
    merger: Merger
    compactor: Compactor
    schema_registry: SchemaRegistry
    tenancy: TenancyService
    authenticator: Authenticator | None  # None: clients are not asked who they are
    consumers: ConsumerInstances  # the REST and gRPC doors' consumer instances
    rebuilt: RebuildReport | None = None  # what a rebuild from the bucket at start did
    reconcile_loop: ReconcileLoop | None = None  # None: RECONCILE_OFF
    retention: Retention | None = None  # None: RETENTION_OFF
    group_calls: GroupCalls | None = None  # any group's coordinator, this agent's or another's
    views: ViewService | None = None  # continuous views, once open_views ran

    @property
    def produce(self) -> ProduceService:
        """The produce rule every door shares (the Kafka door's, too)."""
        return self.kafka.context.produce

    @property
    def fetch(self) -> FetchService:
        """The read rule every door shares (the Kafka door's, too)."""
        return self.kafka.context.fetch

    @functools.cached_property
    def sql(self) -> SqlService:
        """SQL over the agent's topics (POST /api/v1/sql, streamctl sql): one per agent, so
        its bound on queries at once holds for the agent."""
        return SqlService(
            self.settings, self.admin, self.fetch, self.schema_registry, self.metadata
        )

    @property
    def kafka_address(self) -> str:
        advertised = self.admin.cluster.advertised
        return f"{advertised.host}:{advertised.port}"

    def background_stats(self) -> dict[str, BackgroundStats]:
        """The background services' counters by metric component."""
        stats: dict[str, BackgroundStats] = {
            "merge": self.merger.stats,
            "compaction": self.compactor.stats,
            "schema_registry": self.schema_registry.stats,
        }
        if self.retention is not None:
            stats["retention"] = self.retention.stats
        return stats

    async def close(self) -> None:
        """Stop accepting requests, flush what is pending, hand every lease over (released, so
        the next owner takes it without waiting out the TTL), release connections."""
        if self.views is not None:  # its runners are clients of this agent's listener
            await self.views.close()
        await self.consumers.close()  # they leave their groups and auto commit: coordinator up
        if self.reconcile_loop is not None:
            await self.reconcile_loop.stop()
        await self.merger.stop()
        await self.compactor.stop()
        if self.retention is not None:
            await self.retention.stop()
        await self.ownership.stop()
        await self.kafka.close()
        await self.kafka.context.groups.close()
        await self.kafka.context.transactions.close()
        await self.log.close(flush=True)
        await self.snapshots.stop(final=True)  # the bucket gets the state the flush left
        await self.membership.leave()
        await self.metadata.close()

    async def readiness(self, stopping: bool = False) -> list[str]:
        """Why the agent cannot take traffic now; empty when it can."""
        problems: list[str] = []
        if stopping:
            problems.append("agent is shutting down")
        if self.failure.error is not None:
            problems.append(f"the agent failed: {self.failure.error!r}")
        server = self.kafka.server
        if server is None or not server.is_serving():
            problems.append("the Kafka listener is not accepting connections")
        try:
            await self.metadata.list_topics()
        except Exception as error:  # any failure means "not ready"; the reason goes to the caller
            problems.append(f"metadata store unreachable: {error}")
        return problems


async def _open_storage(settings: Settings) -> tuple[Disk, ObjectStore, MetadataStore]:
    if settings.storage == "null":  # benchmark baseline: same code path, no storage cost
        metadata = open_sql_metadata(settings.metadata_url or "sqlite://")
        return NullDisk(), NullObjectStore(), metadata
    disk = LocalDisk(wal_directory(settings))
    return disk, await open_object_store(settings), open_metadata_store(settings)


async def open_agent(settings: Settings, authenticator: Authenticator | None = None) -> Agent:
    """Build every real adapter, recover the log and start the background services.
    `authenticator`: checks credentials; by default, with auth required, the metadata store's
    API keys do. ValueError when the listener's security cannot be served."""
    disk, objects, metadata = await _open_storage(settings)
    rng = SystemRng()
    if authenticator is None and settings.auth_required:
        authenticator = await store_authenticator(metadata, rng)
    try:
        check_kafka_security(settings, authenticator)  # a certificate that does not load
    except ValueError:
        await metadata.close()
        raise
    return await assemble_agent(
        settings,
        SystemClock(),
        rng,
        disk,
        objects,
        metadata,
        authenticator=authenticator,
        run_blocking=asyncio.to_thread,
    )


async def store_authenticator(store: TenancyStore, rng: Rng) -> StoreAuthenticator:
    """The metadata store's API keys, the slow hash checked on a thread. An unknown key is
    checked against a decoy hash of a random secret, so its answer takes as long as a wrong
    secret's. Successful checks are remembered under digests salted for this process only."""
    decoy = functools.partial(hash_secret, rng.randbytes(32).hex(), rng.randbytes(SALT_BYTES))
    decoy_hash = await asyncio.to_thread(decoy)
    return StoreAuthenticator(
        store,
        secret_matches,
        asyncio.to_thread,
        decoy_hash=decoy_hash,
        digest_salt=rng.randbytes(DIGEST_SALT_BYTES),
    )


ADMIN_CREDENTIALS_FILE = "admin-credentials.json"


async def _first_admin(agent: Agent, settings: Settings) -> None:
    """On the first start with auth required (no key anywhere yet), issue an admin key of the
    default org and leave it in the data directory for the operator; log where, never what."""
    issued = await agent.tenancy.first_admin()
    if issued is None:
        return
    path = os.path.join(settings.data_dir, ADMIN_CREDENTIALS_FILE)
    os.makedirs(settings.data_dir, exist_ok=True)
    write_first_admin(path, issued)
    logging.getLogger(__name__).warning(
        "auth required and no API key existed: an admin key of org %r is in %s (mode 0600)",
        issued.org,
        path,
    )


def write_first_admin(path: str, issued: IssuedKey) -> None:
    """The first admin key, readable by its owner only."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as credentials:
        json.dump({"key": issued.key_id, "secret": issued.secret}, credentials)


async def assemble_agent(
    settings: Settings,
    clock: Clock,
    rng: Rng,
    disk: Disk,
    objects: ObjectStore,
    metadata: MetadataStore,
    buggify: Buggify | None = None,
    failure: AgentFailure | None = None,
    authenticator: Authenticator | None = None,
    run_blocking: BlockingRunner[str] = run_inline,
) -> Agent:
    """Wire the engine and its front doors to the given ports (real ones, or the simulator's),
    recover the log and start listening. `buggify`: the simulator's switch; production
    passes none (a switch that never fires). `failure`: the signal every service and door
    reports our own failures into (a new one unless the caller watches its own)."""
    failure = failure or AgentFailure()
    agent_id = await agent_identity(disk, clock, rng, settings.agent_id)
    rebuilt: RebuildReport | None = None
    if settings.rebuild_on_blank_metadata:  # a lost metadata store comes back from the bucket
        rebuilder = Rebuilder(
            clock,
            objects,
            agent_id,
            snapshots=metadata,
            topics=metadata,
            leases=metadata,
            producers=metadata,
        )
        rebuilt = await rebuilder.rebuild_if_needed()
    cluster = ClusterDirectory(agent_id)
    damaged = DamagedObjects()  # what reconcile runs and reads found
    log = LogStore(
        settings,
        clock,
        rng,
        disk,
        objects,
        agent_id,
        topics=metadata,
        leases=metadata,
        producers=metadata,
        buggify=buggify or Buggify(),
        failure=failure,
        may_lead=cluster.may_lead,
        verify_txn=TxnVerification(metadata).verify,
        damaged=damaged,
    )
    await log.open()
    snapshots = SnapshotWriter(
        settings, clock, objects, agent_id, snapshots=metadata, jobs=metadata
    )
    log.flusher.on_committed.append(snapshots.flushed)
    snapshots.start(failure)
    await ensure_coordinator_slots(metadata, clock.now_ms())
    slots = CoordinatorSlots(log, clock, cluster.may_lead)
    groups = GroupCoordinator(
        settings, clock, rng, topics=metadata, groups=metadata, coordinating=slots, pending=metadata
    )
    groups.start(failure)
    markers = MarkerDelivery(
        settings,
        clock,
        log=log,
        topics=metadata,
        cluster=cluster,
        sender=StreamsMarkerSender(settings.txn_marker_request_timeout_ms),
    )
    transactions = TransactionCoordinator(
        settings,
        clock,
        store=metadata,
        producers=metadata,
        topics=metadata,
        slots=slots,
        markers=markers,
    )
    transactions.start(failure)
    topics = RememberedTopics(metadata, clock)  # Metadata answers through a store outage
    schema_registry = SchemaRegistry(metadata)
    schema_registry.on_changed.append(snapshots.flushed)  # the bucket must describe it too
    record_schemas = RecordSchemas(schema_registry, clock)
    quotas = QuotaService(metadata, clock)
    admin = AdminService(
        settings,
        clock,
        topics,
        log,
        groups,
        cluster,
        leases=metadata,
        record_schemas=record_schemas,
        limits=OrgLimits(quotas, clock, metadata, metadata),
    )
    tenancy = TenancyService(metadata, clock, rng, run_blocking, topics=metadata)
    refused = forwarding_refused(settings)  # REST and gRPC serve partitions led elsewhere
    peers = None if refused else StreamsPeerRequests(settings.frame_bytes_max)
    forwarding = Forwarding(admin, log, peers, refused or "")
    context = KafkaContext(
        settings=settings,
        clock=clock,
        log=log,
        producers=metadata,
        apis=advertised_apis(settings.kafka_sasl),
        groups=groups,
        admin=admin,
        transactions=transactions,
        markers=markers,
        produce=ProduceService(clock, log, admin, forwarding),
        fetch=FetchService(settings, log, admin, forwarding),
        authenticator=authenticator,
        tenancy=tenancy,
        acls=AclService(metadata, clock),
        quotas=quotas,
    )
    # the REST and gRPC doors' consumers reach any group's coordinator (the same rule)
    group_peers = None if refused else StreamsPeerGroups(settings.frame_bytes_max)
    group_calls = RoutedGroupCalls(LocalGroupCalls(groups), admin, group_peers, refused or "")
    consumers = ConsumerInstances(group_calls, admin, context.fetch, clock, rng)
    consumers.start(failure)
    kafka = KafkaListener(context, failure)
    port = await kafka.bind(settings.kafka_host, settings.kafka_port)
    host = advertised_host(settings.kafka_host, settings.advertised_host)
    cluster.advertise(host, settings.advertised_port or port)
    membership = Membership(settings, clock, metadata, cluster)
    await membership.join()  # the node id comes before the first client
    membership.start(failure)
    ownership = Ownership(settings, clock, metadata, log, cluster, membership)
    ownership.start(failure)
    reconciler = Reconciler(settings, clock, objects, metadata, damaged)
    reconcile_loop = None
    if settings.reconcile_interval_ms != RECONCILE_OFF:  # one agent of the cluster per interval
        reconcile_loop = ReconcileLoop(settings, clock, reconciler, metadata, agent_id)
        reconcile_loop.start(failure)
    rewriter = Rewriter(settings, clock, rng, objects, metadata, agent_id, buggify)
    rewriter.on_swapped.append(lambda _: snapshots.flushed())  # the bucket must describe them
    rewriter.on_swapped.append(log.rows_swapped)  # reads must see them
    merger = Merger(settings, clock, log, metadata, rewriter, buggify)
    merger.start(failure)  # the partitions this agent leads, every merge_interval_ms
    compactor = Compactor(
        settings, clock, log, metadata, metadata, metadata, objects, rewriter, buggify
    )
    compactor.start(failure)  # compacted partitions led here, every compaction_interval_ms
    retention = None
    if settings.retention_check_interval_ms not in RETENTION_OFF:  # the partitions led here
        retention = Retention(settings, clock, log, metadata, metadata)
        retention.start(failure)
    await kafka.serve()
    return Agent(
        settings,
        agent_id,
        failure,
        log,
        admin,
        metadata,
        objects,
        kafka,
        port,
        membership,
        ownership,
        snapshots,
        reconciler,
        merger,
        compactor,
        schema_registry,
        tenancy,
        authenticator,
        consumers,
        rebuilt,
        reconcile_loop,
        retention,
        group_calls,
    )


async def open_http(agent: Agent, stopping: asyncio.Event) -> AgentHttp:
    """The agent's HTTP door: health, readiness (503 once `stopping` is set) and metrics."""
    kafka = agent.kafka
    transactions = kafka.context.transactions

    def gauges() -> AgentGauges:
        return AgentGauges(
            kafka_connections=len(kafka.connections),
            transactions_open=transactions.open_count,
            transactions_completing=transactions.completing_count,
        )

    registry = agent_registry(
        agent.log,
        gauges,
        kafka.stats,
        transactions.stats,
        agent.reconciler,
        agent.snapshots,
        background=agent.background_stats(),
        traffic=kafka.context.quotas.traffic if kafka.context.quotas is not None else None,
    )
    identity = AgentIdentity(agent.agent_id, __version__, agent.kafka_address)
    acls = kafka.context.acls
    assert acls is not None, "the composition root always builds the ACL service"
    auth = HttpAuth(agent.authenticator)
    routes = [
        lambda app: install_tenancy_routes(
            app, agent.tenancy, agent.authenticator, agent.kafka.context.quotas
        ),
        lambda app: install_sql_route(app, agent.sql, auth, acls),
    ]
    if agent.views is not None:  # CREATE / DROP come through POST /api/v1/sql (agent.sql)
        views = agent.views
        routes.append(lambda app: install_view_routes(app, views, auth, acls))
        registry.register(ViewsCollector(views))

    async def readiness() -> list[str]:
        return await agent.readiness(stopping.is_set())

    settings = agent.settings
    return await start_agent_http(
        settings.http_host,
        settings.http_port,
        identity,
        readiness,
        registry,
        agent.admin.describe_storage,
        routes=routes,
        auth=HttpAuth(agent.authenticator),
    )


def open_views(agent: Agent) -> ViewService:
    """Start the agent's continuous views service (kept as `agent.views`); its runners reach
    the cluster through this agent's Kafka listener."""
    assert agent.group_calls is not None, "assemble_agent always wires the group calls"
    views = ViewService(
        agent.admin,
        agent.log,
        SystemClock(),
        SystemRng(),
        agent.group_calls,
        agent.kafka_address,
        agent.schema_registry,
        refused=forwarding_refused(agent.settings),
    )
    views.start(agent.failure)
    agent.views = views
    agent.sql.views = views  # CREATE / DROP MATERIALIZED VIEW statements go there
    return views


def rest_services(agent: Agent) -> RestServices:
    """The engine services the REST proxy door translates to."""
    context = agent.kafka.context
    assert context.acls is not None, "the composition root always builds the ACL service"
    return RestServices(
        admin=agent.admin,
        produce=agent.produce,
        fetch=agent.fetch,
        acls=context.acls,
        auth=HttpAuth(agent.authenticator),  # the same keys as every door
        formats=EmbeddedFormats(agent.schema_registry),
        consumers=agent.consumers,
    )


async def open_rest_proxy(agent: Agent) -> RestDoor:
    """The agent's REST proxy door (Confluent's API v2 and v3) over its engine services."""
    settings = agent.settings
    return await start_rest_door(
        settings.rest_proxy_host, settings.rest_proxy_port, rest_services(agent)
    )


async def serve(
    settings: Settings,
    announce: Callable[[AgentBanner], None] = print_banner,
    supervisor: Connection | None = None,
    drain: bool = False,
) -> int:
    """Run an agent until SIGTERM/SIGINT (exit 0 after flushing) or until our own invariant
    fails in a service or on the request path (exit 70 with the traceback logged; the WAL
    keeps the data). Returns the exit code. `announce` is told the banner once the agent
    serves; `supervisor`: the link to the process that started this one, which stops the
    agent when it closes (the supervisor is gone); `drain`: stop as soon as started (the WAL
    recovered, flushed and the leases handed over)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if supervisor is not None:
        _stop_when_closed(loop, supervisor, stop)
    with contextlib.ExitStack() as held:
        try:
            if settings.storage != "null":  # one process per WAL directory
                held.enter_context(locked_directory(wal_directory(settings)))
            agent = await open_agent(settings)
            if settings.auth_required and settings.process_index == 0:  # one per host
                await _first_admin(agent, settings)
        except (OSError, StreamHouseError) as error:  # a taken port, an unreachable store
            print_status("cannot start", str(error))
            return EXIT_CANNOT_START
        except ValueError as error:  # check_kafka_security: a certificate, an authenticator
            print_status("cannot start", str(error))
            return EXIT_CANNOT_START
        gc.freeze()  # what starting built (modules, services) lives as long as the agent
        return await _serve_until_stopped(agent, settings, stop, announce, drain)


async def _serve_until_stopped(
    agent: Agent,
    settings: Settings,
    stop: asyncio.Event,
    announce: Callable[[AgentBanner], None],
    drain: bool,
) -> int:
    stopping = asyncio.Event()
    http: AgentHttp | None = None
    registry: RegistryDoor | None = None
    grpc_door: GrpcDoor | None = None
    rest: RestDoor | None = None
    try:
        open_views(agent)
        if settings.http_port != HTTP_DISABLED:
            http = await open_http(agent, stopping)
        if settings.schema_registry_port != HTTP_DISABLED:
            registry = await start_registry_door(
                settings.schema_registry_host,
                settings.schema_registry_port,
                agent.schema_registry,
                HttpAuth(agent.authenticator),  # the same keys as every door
            )
        if settings.grpc_port != HTTP_DISABLED:
            grpc_door = await open_grpc(agent)
        if settings.rest_proxy_port != HTTP_DISABLED:
            rest = await open_rest_proxy(agent)
    except StreamHouseError as error:
        if grpc_door:
            await grpc_door.close()
        if registry:
            await registry.close()
        if http:
            await http.close()
        await agent.close()
        print_status("cannot start", str(error))
        return EXIT_CANNOT_START
    announce(
        _banner(
            agent,
            http.port if http else None,
            registry.port if registry else None,
            grpc_door.port if grpc_door else None,
            rest.port if rest else None,
        )
    )
    agent.failure.on_failure(lambda _: stop.set())
    if drain:
        stop.set()
    await stop.wait()
    if agent.failure.error is not None:
        print_status("agent failed", repr(agent.failure.error))
        return EXIT_INVARIANT_BROKEN
    print_status("stopping", f"{agent.agent_id} flushing pending data…", style="yellow")
    stopping.set()  # /ready turns 503 before the agent drains, so traffic moves elsewhere first
    if rest:
        await rest.close()
    if registry:
        await registry.close()
    if grpc_door:
        await grpc_door.close()
    await agent.close()
    if http:
        await http.close()
    print_status("stopped cleanly", agent.agent_id, style="green")
    return 0


def _stop_when_closed(
    loop: asyncio.AbstractEventLoop, supervisor: Connection, stop: asyncio.Event
) -> None:
    """Set `stop` once the supervisor's end of the link closes (it never writes to it)."""

    def closed() -> None:
        loop.remove_reader(supervisor.fileno())
        stop.set()

    loop.add_reader(supervisor.fileno(), closed)


async def open_grpc(agent: Agent) -> GrpcDoor:
    """The agent's gRPC door on its settings' address, over the agent's engine services."""
    context = agent.kafka.context
    assert context.acls is not None, "the agent always wires its ACLs"
    engine = GrpcEngine(
        admin=agent.admin,
        produce=agent.produce,
        fetch=agent.fetch,
        acls=context.acls,
        authenticator=agent.authenticator if agent.settings.auth_required else None,
        failure=agent.failure,
        consumers=agent.consumers,
    )
    return await start_grpc_door(agent.settings.grpc_host, agent.settings.grpc_port, engine)


def _banner(
    agent: Agent,
    http_port: int | None,
    registry_port: int | None,
    grpc_port: int | None = None,
    rest_port: int | None = None,
) -> AgentBanner:
    settings = agent.settings
    recovery = agent.log.recovery
    return AgentBanner(
        version=__version__,
        agent_id=agent.agent_id,
        storage_null=settings.storage == "null",
        metadata_url=metadata_url(settings),
        objects=object_store_location(settings),
        wal=os.path.join(wal_directory(settings), "wal"),
        flush=f"every {settings.flush_interval_ms} ms or {settings.flush_bytes_max} B",
        recovered=(
            f"{recovery.replayed_batches} batches replayed, {recovery.dropped_batches} dropped"
            + _rebuilt_line(agent.rebuilt)
        ),
        kafka=agent.kafka_address,
        http=None if http_port is None else f"http://{settings.http_host}:{http_port}",
        schema_registry=(
            None
            if registry_port is None
            else f"http://{settings.schema_registry_host}:{registry_port}"
        ),
        grpc=None if grpc_port is None else f"{settings.grpc_host}:{grpc_port}",
        rest_proxy=(
            None if rest_port is None else f"http://{settings.rest_proxy_host}:{rest_port}"
        ),
    )


def _rebuilt_line(report: RebuildReport | None) -> str:
    if report is None:
        return ""
    source = report.snapshot_key or "footers alone"
    return (
        f"; metadata rebuilt from the bucket ({source}, {report.objects_added} newer objects, "
        f"{report.elapsed_ms / 1000:.1f} s)"
    )


def run(settings: Settings) -> int:
    """Run the agent processes the settings ask for (one per core by default): one in this
    process and its event loop, or several under a supervisor. Returns the exit code."""
    count = settings.processes or cores()
    problem = asyncio.run(drain_surplus(settings, count, run_supervised))
    if problem is not None:
        print_status("cannot start", problem)
        return EXIT_CANNOT_START
    if count == 1:
        return run_agent_loop(settings, serve(settings))
    return asyncio.run(Supervisor(settings, count, run_supervised).run())


def run_agent_loop(settings: Settings, main: Coroutine[Any, Any, int]) -> int:
    """Run an agent's `main` in a fresh event loop of the settings' kind; its exit code."""
    # Every request in flight holds a few dozen objects (futures, coroutines, buffers), and
    # thousands are in flight at once: at Python's default threshold (700 allocations) the
    # collector kept walking them, a third of the CPU of a one-record request
    gc.set_threshold(*GC_THRESHOLDS)
    with asyncio.Runner(loop_factory=event_loop_factory(settings.event_loop)) as runner:
        return runner.run(main)


def event_loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the event loop `name` (None: asyncio's default)."""
    if name == "asyncio":
        return None
    import uvloop  # only where it is asked for: it is not built for every platform

    return uvloop.new_event_loop


def cores() -> int:
    """The cores this process may run on (its CPU affinity: taskset, cpusets), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def run_supervised(settings: Settings, supervisor: Connection, drain: bool) -> None:
    """The body of one supervised agent process: serve, tell the supervisor the banner over
    `supervisor` once serving, exit with the agent's code."""
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s process-{settings.process_index} %(name)s: %(message)s",
    )
    sys.exit(run_agent_loop(settings, serve(settings, supervisor.send, supervisor, drain)))


def main() -> None:
    """The `streamhouse` command."""
    build_app(run)()
