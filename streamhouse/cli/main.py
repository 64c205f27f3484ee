"""`streamhouse`: the agent command's options and what it prints; the composition root
(`streamhouse.agent`) hands in the function that runs an agent from its settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import typer
from rich.console import Console
from rich.table import Table

from streamhouse import __version__
from streamhouse.cli.options import DataDir, MetadataUrl, ObjectStoreUrl, S3Endpoint
from streamhouse.config import HTTP_DISABLED, Settings

console = Console(stderr=True)

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


def print_banner(banner: AgentBanner) -> None:
    table = Table(title=f"StreamHouse {banner.version} agent {banner.agent_id}", show_header=False)
    if banner.storage_null:
        table.add_row("storage", "[red]null: every write is discarded (benchmark only)[/red]")
    else:
        table.add_row("metadata", redacted(banner.metadata_url))
        table.add_row("objects", banner.objects)
    table.add_row("WAL", banner.wal)
    table.add_row("flush", banner.flush)
    table.add_row("recovered", banner.recovered)
    table.add_row("kafka", banner.kafka)
    if banner.http is not None:
        base = banner.http
        table.add_row("http", f"{base}/health  {base}/ready  {base}/metrics")
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


def build_app(run_agent: AgentRunner) -> typer.Typer:
    """The `streamhouse` command, whose `agent` subcommand calls `run_agent`."""
    app = typer.Typer(help="StreamHouse: an S3-native event streaming agent.", no_args_is_help=True)

    @app.command()
    def agent(
        data_dir: DataDir = "./data",
        metadata: MetadataUrl = "",
        object_store: ObjectStoreUrl = "",
        s3_endpoint: S3Endpoint = "",
        agent_id: str = typer.Option(
            "", envvar="STREAMHOUSE_AGENT_ID", help="Default: kept in data dir."
        ),
        kafka_host: str = typer.Option(
            "127.0.0.1", envvar="STREAMHOUSE_KAFKA_HOST", help="Address the Kafka listener binds."
        ),
        kafka_port: int = typer.Option(9092, envvar="STREAMHOUSE_KAFKA_PORT", help="Kafka port."),
        http_host: str = typer.Option(
            "127.0.0.1",
            envvar="STREAMHOUSE_HTTP_HOST",
            help="Address of /health, /ready, /metrics.",
        ),
        http_port: int = typer.Option(
            8080,
            envvar="STREAMHOUSE_HTTP_PORT",
            help=f"HTTP port; {HTTP_DISABLED} turns HTTP off.",
        ),
        advertised_host: str = typer.Option(
            "", envvar="STREAMHOUSE_ADVERTISED_HOST", help="Host clients are told to connect to."
        ),
        storage: str = typer.Option(
            "real", help="'null' discards every write: a benchmark baseline, never for data."
        ),
        flush_interval_ms: int = typer.Option(
            200,
            envvar="STREAMHOUSE_FLUSH_INTERVAL_MS",
            help="Longest wait before pending data is flushed.",
        ),
        group_initial_rebalance_delay_ms: int = typer.Option(
            3000,
            envvar="STREAMHOUSE_GROUP_INITIAL_REBALANCE_DELAY_MS",
            help="How long a new group waits for more members before its first generation.",
        ),
        group_min_session_timeout_ms: int = typer.Option(
            6000,
            envvar="STREAMHOUSE_GROUP_MIN_SESSION_TIMEOUT_MS",
            help="Shortest session timeout a group member may ask for.",
        ),
        connections_max: int = typer.Option(
            Settings.connections_max,
            envvar="STREAMHOUSE_CONNECTIONS_MAX",
            help="Most Kafka connections served at once; one more is closed at once.",
        ),
    ) -> None:
        """Start an agent on embedded defaults (SQLite + local object store) until
        SIGTERM/SIGINT."""
        settings = Settings(
            data_dir=data_dir,
            metadata_url=metadata,
            object_store_url=object_store,
            s3_endpoint_url=s3_endpoint,
            agent_id=agent_id,
            flush_interval_ms=flush_interval_ms,
            storage=storage,
            kafka_host=kafka_host,
            kafka_port=kafka_port,
            http_host=http_host,
            http_port=http_port,
            advertised_host=advertised_host,
            group_initial_rebalance_delay_ms=group_initial_rebalance_delay_ms,
            group_min_session_timeout_ms=group_min_session_timeout_ms,
            connections_max=connections_max,
        )
        code = run_agent(settings)
        if code:
            raise typer.Exit(code)

    @app.command()
    def version() -> None:
        """Print the version."""
        typer.echo(__version__)

    return app
