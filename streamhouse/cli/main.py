"""`streamhouse`: the agent command's options and what it prints; the composition root
(`streamhouse.agent`) hands in the function that runs an agent from its settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from streamhouse import __version__
from streamhouse.config import (
    AUTH_REQUIRED,
    COMPACTION_OFF,
    HTTP_DISABLED,
    MERGE_OFF,
    RECONCILE_OFF,
    Settings,
)

console = Console(stderr=True)
EXIT_USAGE = 2  # as click exits on a bad option

AgentRunner = Callable[[Settings], int]
"""Runs an agent until it stops; returns the process exit code."""


@dataclass(frozen=True)
class AgentBanner:
    """What a started agent shows the operator."""

    version: str
    agent_id: str
    storage_null: bool
    metadata_url: str
    objects: str
    wal: str
    flush: str
    recovered: str
    kafka: str
    http: str | None  # base URL, None when HTTP is off
    schema_registry: str | None = None  # base URL, None when the registry door is off
    rest_proxy: str | None = None  # base URL, None when the REST proxy door is off
    grpc: str | None = None  # host:port, None when the gRPC door is off


def _add_storage_rows(table: Table, banner: AgentBanner) -> None:
    if banner.storage_null:
        table.add_row("storage", "[red]null: every write is discarded (benchmark only)[/red]")
    else:
        table.add_row("metadata", redacted(banner.metadata_url))
        table.add_row("objects", banner.objects)


def print_banner(banner: AgentBanner) -> None:
    table = Table(title=f"StreamHouse {banner.version} agent {banner.agent_id}", show_header=False)
    _add_storage_rows(table, banner)
    table.add_row("WAL", banner.wal)
    table.add_row("flush", banner.flush)
    table.add_row("recovered", banner.recovered)
    table.add_row("kafka", banner.kafka)
    if banner.http is not None:
        base = banner.http
        table.add_row("http", f"{base}/health  {base}/ready  {base}/metrics")
    if banner.schema_registry is not None:
        table.add_row("schema registry", banner.schema_registry)
    if banner.rest_proxy is not None:
        table.add_row("rest proxy", f"{banner.rest_proxy}  {banner.rest_proxy}/docs")
    if banner.grpc is not None:
        table.add_row("grpc", banner.grpc)
    console.print(table)


def print_processes_banner(banners: list[AgentBanner], http: str | None) -> None:
    """The banner of `--processes N`: what they share, then each process's id, Kafka address
    and WAL."""
    first = banners[0]
    title = f"StreamHouse {first.version}: {len(banners)} agent processes"
    table = Table(title=title, show_header=False)
    _add_storage_rows(table, first)
    table.add_row("flush", first.flush)
    for index, banner in enumerate(banners):
        table.add_row(
            f"process {index}",
            f"kafka {banner.kafka}  {banner.agent_id}\nWAL {banner.wal} ({banner.recovered})",
        )
    if http is not None:
        table.add_row("http", f"{http}/health  {http}/ready  {http}/metrics (every process)")
    console.print(table)


def print_status(label: str, detail: str, style: str = "red") -> None:
    """One status line on stderr ("cannot start: …", "stopped cleanly")."""
    console.print(f"[{style}]{label}{':' if detail else ''}[/{style}] {detail}".rstrip())


def redacted(url: str) -> str:
    """The URL without a password, for printing."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def with_sasl_when_required(params: dict[str, Any]) -> dict[str, Any]:
    """`--auth required` on an open listener means its SASL form (PLAINTEXT → SASL_PLAINTEXT,
    SSL → SASL_SSL)."""
    protocol = params.get("kafka_security_protocol")
    if params.get("auth") == AUTH_REQUIRED and protocol in ("PLAINTEXT", "SSL"):
        return {**params, "kafka_security_protocol": f"SASL_{protocol}"}
    return params


def setting(name: str, help: str, *flags: str, envvar: str = "") -> Any:
    """The `streamhouse agent` option of the Settings field `name`: flag `--name-with-dashes`
    and environment variable `STREAMHOUSE_NAME` unless others are given; its parameter is
    named `name` and defaults to `Settings.name`, so names and defaults live in Settings."""
    return typer.Option(
        *(flags or ("--" + name.replace("_", "-"),)),
        envvar=envvar or "STREAMHOUSE_" + name.upper(),
        help=help,
    )


# The storage options `streamhouse agent` and `streamctl admin` share: the same data
DataDir = Annotated[
    str, setting("data_dir", "Where the WAL, the agent id and embedded defaults live.")
]
MetadataUrl = Annotated[
    str,
    setting(
        "metadata_url",
        "sqlite:///path or postgresql://user@host/db; default: SQLite in the data dir.",
    ),
]
ObjectStoreUrl = Annotated[
    str,
    setting(
        "object_store_url",
        "s3://bucket/prefix or a directory; default: objects/ in the data dir.",
        "--object-store",
        envvar="STREAMHOUSE_OBJECT_STORE",
    ),
]
S3Endpoint = Annotated[
    str,
    setting(
        "s3_endpoint_url",
        "Endpoint URL of an S3-compatible store (MinIO, moto); credentials from AWS_*.",
        "--s3-endpoint",
        envvar="STREAMHOUSE_S3_ENDPOINT",
    ),
]


def build_app(run_agent: AgentRunner) -> typer.Typer:
    """The `streamhouse` command, whose `agent` subcommand calls `run_agent`."""
    app = typer.Typer(help="StreamHouse: an S3-native event streaming agent.", no_args_is_help=True)

    @app.command()
    def agent(
        options: typer.Context,
        data_dir: DataDir = Settings.data_dir,
        metadata_url: MetadataUrl = Settings.metadata_url,
        object_store_url: ObjectStoreUrl = Settings.object_store_url,
        s3_endpoint_url: S3Endpoint = Settings.s3_endpoint_url,
        agent_id: Annotated[
            str, setting("agent_id", "Default: generated once, kept in the data dir.")
        ] = Settings.agent_id,
        processes: Annotated[
            int,
            setting(
                "processes",
                "Agent processes on this host, one cluster; process i takes Kafka port "
                "kafka-port + i. 0: one per core; 1: a single process as before.",
            ),
        ] = Settings.processes,
        kafka_host: Annotated[
            str, setting("kafka_host", "Address the Kafka listener binds.")
        ] = Settings.kafka_host,
        kafka_port: Annotated[int, setting("kafka_port", "Kafka port.")] = Settings.kafka_port,
        http_host: Annotated[
            str, setting("http_host", "Address of /health, /ready, /metrics.")
        ] = Settings.http_host,
        http_port: Annotated[
            int, setting("http_port", f"HTTP port; {HTTP_DISABLED} turns HTTP off.")
        ] = Settings.http_port,
        schema_registry_host: Annotated[
            str, setting("schema_registry_host", "Address the schema registry binds.")
        ] = Settings.schema_registry_host,
        schema_registry_port: Annotated[
            int,
            setting(
                "schema_registry_port",
                f"Schema registry port (Confluent's REST API); {HTTP_DISABLED} turns it off.",
            ),
        ] = Settings.schema_registry_port,
        rest_proxy_host: Annotated[
            str, setting("rest_proxy_host", "Address the REST proxy binds.")
        ] = Settings.rest_proxy_host,
        rest_proxy_port: Annotated[
            int,
            setting(
                "rest_proxy_port",
                f"REST proxy port (Confluent REST Proxy API v2, v3); {HTTP_DISABLED}: off.",
            ),
        ] = Settings.rest_proxy_port,
        grpc_host: Annotated[
            str, setting("grpc_host", "Address the gRPC door binds.")
        ] = Settings.grpc_host,
        grpc_port: Annotated[
            int,
            setting("grpc_port", f"gRPC port (streamhouse.v1); {HTTP_DISABLED} turns it off."),
        ] = Settings.grpc_port,
        advertised_host: Annotated[
            str, setting("advertised_host", "Host clients are told to connect to.")
        ] = Settings.advertised_host,
        advertised_port: Annotated[
            int,
            setting(
                "advertised_port",
                "Port clients are told to connect to (a proxy in front); 0: the Kafka port.",
            ),
        ] = Settings.advertised_port,
        storage: Annotated[
            str,
            setting(
                "storage", "'null' discards every write: a benchmark baseline, never for data."
            ),
        ] = Settings.storage,
        event_loop: Annotated[
            str,
            setting(
                "event_loop", "'uvloop' (libuv's, faster) or 'asyncio' (the standard library's)."
            ),
        ] = Settings.event_loop,
        flush_interval_ms: Annotated[
            int, setting("flush_interval_ms", "Longest wait before pending data is flushed.")
        ] = Settings.flush_interval_ms,
        num_partitions: Annotated[
            int,
            setting(
                "num_partitions",
                "Partitions of auto-created topics and of CreateTopics asking for -1 "
                "(Kafka's num.partitions).",
            ),
        ] = Settings.num_partitions,
        auto_create_topics: Annotated[
            bool,
            setting(
                "auto_create_topics",
                "Create a topic a client asks Metadata for (Kafka's auto.create.topics.enable).",
                "--auto-create-topics/--no-auto-create-topics",
            ),
        ] = Settings.auto_create_topics,
        group_initial_rebalance_delay_ms: Annotated[
            int,
            setting(
                "group_initial_rebalance_delay_ms",
                "How long a new group waits for more members before its first generation.",
            ),
        ] = Settings.group_initial_rebalance_delay_ms,
        group_min_session_timeout_ms: Annotated[
            int,
            setting(
                "group_min_session_timeout_ms",
                "Shortest session timeout a group member may ask for.",
            ),
        ] = Settings.group_min_session_timeout_ms,
        group_max_session_timeout_ms: Annotated[
            int,
            setting(
                "group_max_session_timeout_ms",
                "Longest session timeout a group member may ask for.",
            ),
        ] = Settings.group_max_session_timeout_ms,
        group_max_size: Annotated[
            int,
            setting("group_max_size", "Most members one consumer group may have."),
        ] = Settings.group_max_size,
        offsets_retention_ms: Annotated[
            int,
            setting(
                "offsets_retention_ms",
                "How long an empty group's committed offsets are kept "
                "(Kafka's offsets.retention.minutes, in ms).",
            ),
        ] = Settings.offsets_retention_ms,
        offset_metadata_max_bytes: Annotated[
            int,
            setting(
                "offset_metadata_max_bytes", "Longest metadata string an offset commit may carry."
            ),
        ] = Settings.offset_metadata_max_bytes,
        transaction_max_timeout_ms: Annotated[
            int,
            setting(
                "transaction_max_timeout_ms",
                "Longest transaction.timeout.ms a transactional producer may ask for "
                "(Kafka's transaction.max.timeout.ms).",
            ),
        ] = Settings.transaction_max_timeout_ms,
        transactional_id_expiration_ms: Annotated[
            int,
            setting(
                "transactional_id_expiration_ms",
                "How long a transactional id outside any transaction is kept "
                "(Kafka's transactional.id.expiration.ms).",
            ),
        ] = Settings.transactional_id_expiration_ms,
        transactions_per_coordinator_max: Annotated[
            int,
            setting(
                "transactions_per_coordinator_max",
                "Most open transactions one agent coordinates; beyond, a new one is refused "
                "(COORDINATOR_NOT_AVAILABLE).",
            ),
        ] = Settings.transactions_per_coordinator_max,
        connections_max: Annotated[
            int,
            setting(
                "connections_max",
                "Most Kafka connections served at once; one more is closed at once.",
            ),
        ] = Settings.connections_max,
        kafka_security_protocol: Annotated[
            str,
            setting(
                "kafka_security_protocol",
                "PLAINTEXT (open), SASL_PLAINTEXT, SASL_SSL or SSL (Kafka's security.protocol).",
            ),
        ] = Settings.kafka_security_protocol,
        auth: Annotated[
            str,
            setting(
                "auth",
                "none (open) or required: API keys on every door; a PLAINTEXT (SSL) listener "
                "becomes SASL_PLAINTEXT (SASL_SSL).",
            ),
        ] = Settings.auth,
        sasl_mechanisms: Annotated[
            str,
            setting("sasl_mechanisms", "Comma-separated SASL mechanisms a SASL listener offers."),
        ] = Settings.sasl_mechanisms,
        ssl_certfile: Annotated[
            str,
            setting("ssl_certfile", "PEM certificate chain of the TLS listener (SSL, SASL_SSL)."),
        ] = Settings.ssl_certfile,
        ssl_keyfile: Annotated[
            str, setting("ssl_keyfile", "PEM private key of the TLS listener (SSL, SASL_SSL).")
        ] = Settings.ssl_keyfile,
        sasl_session_lifetime_ms: Annotated[
            int,
            setting(
                "sasl_session_lifetime_ms",
                "An authenticated connection must re-authenticate (KIP-368) within it, or is "
                "closed; 0: never required.",
            ),
        ] = Settings.sasl_session_lifetime_ms,
        requests_in_flight_max: Annotated[
            int,
            setting(
                "requests_in_flight_max",
                "Most requests of one connection awaiting answers; reading pauses past it.",
            ),
        ] = Settings.requests_in_flight_max,
        request_bytes_in_flight_max: Annotated[
            int,
            setting(
                "request_bytes_in_flight_max",
                "Most bytes of one connection's requests awaiting answers; reading pauses "
                "past it (one larger request is read alone).",
            ),
        ] = Settings.request_bytes_in_flight_max,
        topic_partitions_max: Annotated[
            int,
            setting(
                "topic_partitions_max",
                "Most partitions one topic may have; more is refused (INVALID_PARTITIONS).",
            ),
        ] = Settings.topic_partitions_max,
        reconcile_interval_ms: Annotated[
            int,
            setting(
                "reconcile_interval_ms",
                "How often the cluster's reconciler runs (one agent at a time): orphan objects "
                f"deleted, missing or corrupt ones reported. {RECONCILE_OFF}: never.",
            ),
        ] = Settings.reconcile_interval_ms,
        reconcile_grace_ms: Annotated[
            int,
            setting(
                "reconcile_grace_ms",
                "Orphan objects younger than this are kept: their upload may still be committed.",
            ),
        ] = Settings.reconcile_grace_ms,
        merge_interval_ms: Annotated[
            int,
            setting(
                "merge_interval_ms",
                "How often this agent merges runs of small blocks of the partitions it leads "
                f"into larger objects (fewer GETs for cold reads). {MERGE_OFF} or below: never.",
            ),
        ] = Settings.merge_interval_ms,
        merge_small_block_bytes: Annotated[
            int,
            setting(
                "merge_small_block_bytes",
                "A partition's blocks in one object under this many stored bytes are merged.",
            ),
        ] = Settings.merge_small_block_bytes,
        merge_target_bytes: Annotated[
            int,
            setting(
                "merge_target_bytes", "Stored bytes of small blocks one merge gathers at most."
            ),
        ] = Settings.merge_target_bytes,
        merge_run_rows_min: Annotated[
            int,
            setting(
                "merge_run_rows_min",
                "Small pieces (blocks of one object) a run needs before it is merged, unless "
                "it reaches merge_target_bytes first.",
            ),
        ] = Settings.merge_run_rows_min,
        merge_block_bytes_max: Annotated[
            int,
            setting(
                "merge_block_bytes_max",
                "Raw bytes of one block of a merged object, at most (one batch alone may "
                "exceed it).",
            ),
        ] = Settings.merge_block_bytes_max,
        merge_cycle_bytes_max: Annotated[
            int,
            setting("merge_cycle_bytes_max", "Raw bytes one merge cycle rewrites, at most."),
        ] = Settings.merge_cycle_bytes_max,
        merge_bytes_per_s_max: Annotated[
            int,
            setting("merge_bytes_per_s_max", "Raw bytes the merger rewrites a second, at most."),
        ] = Settings.merge_bytes_per_s_max,
        retention_check_interval_ms: Annotated[
            int,
            setting(
                "retention_check_interval_ms",
                "How often each agent applies retention.ms and retention.bytes to the partitions "
                "it leads (Kafka's log.retention.check.interval.ms). 0 or -1: never.",
            ),
        ] = Settings.retention_check_interval_ms,
        compaction_interval_ms: Annotated[
            int,
            setting(
                "compaction_interval_ms",
                "How often each agent runs a cleaning round on the due compacted partitions it "
                f"leads (Kafka's log.cleaner.backoff.ms). {COMPACTION_OFF} or below: never.",
            ),
        ] = Settings.compaction_interval_ms,
        compaction_bytes_per_s_max: Annotated[
            int,
            setting(
                "compaction_bytes_per_s_max", "Raw bytes compaction rewrites a second, at most."
            ),
        ] = Settings.compaction_bytes_per_s_max,
        lease_ttl_ms: Annotated[
            int,
            setting(
                "lease_ttl_ms",
                "How long a partition lease lasts unrenewed: another agent takes over a dead "
                "agent's partitions after it (shorter: faster failover, more store writes).",
            ),
        ] = Settings.lease_ttl_ms,
        agent_session_timeout_ms: Annotated[
            int,
            setting(
                "agent_session_timeout_ms",
                "An agent silent this long is no longer live (placement moves its share).",
            ),
        ] = Settings.agent_session_timeout_ms,
        snapshot_interval_ms: Annotated[
            int,
            setting(
                "snapshot_interval_ms",
                "Shortest time between metadata snapshots to the bucket, cluster-wide; one is "
                "written after committed flushes and at a clean shutdown. 0: none.",
            ),
        ] = Settings.snapshot_interval_ms,
        snapshot_keep_count: Annotated[
            int, setting("snapshot_keep_count", "How many of the newest snapshots are kept.")
        ] = Settings.snapshot_keep_count,
        rebuild_on_blank_metadata: Annotated[
            bool,
            setting(
                "rebuild_on_blank_metadata",
                "On a blank metadata store whose bucket holds data, rebuild the store from the "
                "bucket before serving.",
                "--rebuild-on-blank-metadata/--no-rebuild-on-blank-metadata",
            ),
        ] = Settings.rebuild_on_blank_metadata,
    ) -> None:
        """Start an agent on embedded defaults (SQLite + local object store) until
        SIGTERM/SIGINT."""
        try:
            settings = Settings(**with_sasl_when_required(options.params))
        except ValueError as error:
            print_status("cannot start", str(error))
            raise typer.Exit(EXIT_USAGE) from error
        code = run_agent(settings)
        if code:
            raise typer.Exit(code)

    @app.command()
    def version() -> None:
        """Print the version."""
        typer.echo(__version__)

    return app
