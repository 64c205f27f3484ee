"""`streamctl`: operate a StreamHouse deployment (topics and their offsets, consumer groups)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from streamhouse.cli.groups import groups
from streamhouse.cli.options import DataDir, MetadataUrl
from streamhouse.config import Settings
from streamhouse.errors import StreamHouseError
from streamhouse.io.locations import metadata_url
from streamhouse.io.sql.store import open_sql_metadata
from streamhouse.io.system_clock import SystemClock
from streamhouse.log.topics import validate_topic_name
from streamhouse.names import TopicPartition
from streamhouse.ports.topics import TopicStore

app = typer.Typer(
    help="Operate StreamHouse: topics, offsets, consumer groups.", no_args_is_help=True
)
topics = typer.Typer(help="Create, list and describe topics.", no_args_is_help=True)
app.add_typer(topics, name="topics")
app.add_typer(groups, name="groups")
console = Console()


@contextlib.asynccontextmanager
async def _topic_store(data_dir: str, metadata: str) -> AsyncIterator[TopicStore]:
    """The deployment's topics, its metadata store closed on the way out."""
    store = open_sql_metadata(metadata_url(Settings(data_dir=data_dir, metadata_url=metadata)))
    try:
        yield store
    finally:
        await store.close()


@topics.command("list")
def list_topics(data_dir: DataDir = "./data", metadata: MetadataUrl = "") -> None:
    """List topics with their partition counts."""

    async def run() -> None:
        async with _topic_store(data_dir, metadata) as store:
            listed = await store.list_topics()
        table = Table("topic", "partitions", "configs")
        for topic in listed:
            configs = ", ".join(f"{k}={v}" for k, v in sorted(topic.configs.items()))
            table.add_row(topic.name, str(topic.partition_count), configs)
        console.print(table)

    asyncio.run(run())


@topics.command("create")
def create_topic(
    name: str,
    partitions: int = typer.Option(1, "--partitions", "-p", min=1, help="Partition count."),
    config: Annotated[
        list[str] | None, typer.Option("--config", "-c", help="key=value topic config.")
    ] = None,
    data_dir: DataDir = "./data",
    metadata: MetadataUrl = "",
) -> None:
    """Create a topic."""
    configs = dict(item.split("=", 1) for item in config or [])

    async def run() -> None:
        validate_topic_name(name)
        async with _topic_store(data_dir, metadata) as store:
            await store.create_topic(name, partitions, configs, SystemClock().now_ms())

    _run_or_exit(run())
    console.print(f"created topic [bold]{name}[/bold] with {partitions} partition(s)")


@topics.command("describe")
def describe_topic(name: str, data_dir: DataDir = "./data", metadata: MetadataUrl = "") -> None:
    """Show each partition's leader, epoch and durable offsets."""

    async def run() -> None:
        async with _topic_store(data_dir, metadata) as store:
            topic = await store.get_topic(name)
            if topic is None:
                raise typer.BadParameter(f"no topic named {name!r}")
            table = Table("partition", "leader", "epoch", "log start", "durable end")
            for index in range(topic.partition_count):
                record = await store.get_partition(TopicPartition(name, index))
                table.add_row(
                    str(index),
                    record.leader_agent or "-",
                    str(record.leader_epoch),
                    str(record.log_start_offset),
                    str(record.durable_end_offset),
                )
        console.print(table)

    _run_or_exit(run())


def _run_or_exit(coroutine: Coroutine[Any, Any, None]) -> None:
    try:
        asyncio.run(coroutine)
    except StreamHouseError as exc:
        console.print(f"[red]error {exc.code.name}:[/red] {exc}")
        raise typer.Exit(1) from exc
