"""`streamhouse`: run an agent."""

from __future__ import annotations

import asyncio
import logging
import signal

import typer
from rich.console import Console
from rich.table import Table

from streamhouse import __version__
from streamhouse.cli.options import DataDir, MetadataUrl, ObjectStoreUrl, S3Endpoint
from streamhouse.config import HTTP_DISABLED, Settings
from streamhouse.engine.broker import Broker, metadata_url, object_store_location, open_broker
from streamhouse.errors import StreamHouseError
from streamhouse.server.http_api import AgentHttp, start_agent_http

app = typer.Typer(help="StreamHouse: an S3-native event streaming agent.", no_args_is_help=True)
console = Console(stderr=True)


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
        "127.0.0.1", envvar="STREAMHOUSE_HTTP_HOST", help="Address of /health, /ready, /metrics."
    ),
    http_port: int = typer.Option(
        8080, envvar="STREAMHOUSE_HTTP_PORT", help=f"HTTP port; {HTTP_DISABLED} turns HTTP off."
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
) -> None:
    """Start an agent on embedded defaults (SQLite + local object store) until SIGTERM/SIGINT."""
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
    )
    asyncio.run(_run_agent(settings))


async def _run_agent(settings: Settings) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        broker = await open_broker(settings)
    except OSError as error:
        console.print(f"[red]cannot start:[/red] {error}")
        raise typer.Exit(1) from None
    http: AgentHttp | None = None
    if settings.http_port != HTTP_DISABLED:
        try:
            http = await start_agent_http(broker, __version__)
        except StreamHouseError as error:
            await broker.close()
            console.print(f"[red]cannot start:[/red] {error}")
            raise typer.Exit(1) from None
    _print_banner(broker, http.port if http else None)
    crashed = broker.log.crashed
    assert crashed is not None
    crashed.add_done_callback(lambda _: stop.set())
    await stop.wait()
    if crashed.done():
        console.print(f"[red]agent failed:[/red] {crashed.exception()!r}")
        raise typer.Exit(70)  # EX_SOFTWARE: an invariant broke; the WAL keeps the data
    console.print("[yellow]stopping: flushing pending data…[/yellow]")
    if http:
        http.begin_stop()
    await broker.close()
    if http:
        await http.close()
    console.print("[green]stopped cleanly[/green]")


def _print_banner(broker: Broker, http_port: int | None) -> None:
    settings = broker.settings
    table = Table(title=f"StreamHouse {__version__} agent {broker.agent_id}", show_header=False)
    if settings.storage == "null":
        table.add_row("storage", "[red]null: every write is discarded (benchmark only)[/red]")
    else:
        table.add_row("metadata", _redacted(metadata_url(settings)))
        table.add_row("objects", object_store_location(settings))
    table.add_row("WAL", f"{settings.data_dir}/local/wal")
    table.add_row("flush", f"every {settings.flush_interval_ms} ms or {settings.flush_bytes_max} B")
    recovery = broker.log.recovery
    table.add_row(
        "recovered",
        f"{recovery.replayed_batches} batches replayed, {recovery.dropped_batches} dropped",
    )
    table.add_row("kafka", f"{broker.kafka.context.advertised_host}:{broker.kafka_port}")
    if http_port is not None:
        base = f"http://{settings.http_host}:{http_port}"
        table.add_row("http", f"{base}/health  {base}/ready  {base}/metrics")
    console.print(table)


def _redacted(url: str) -> str:
    """The URL without a password, for printing."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


if __name__ == "__main__":
    app()
