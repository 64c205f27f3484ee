"""`streamctl admin`: disaster recovery on the storage itself.

Unlike the other streamctl commands, which ask a running agent over Kafka, these open the
metadata store and the object store directly, with the options (and STREAMHOUSE_*
environment variables) `streamhouse agent` takes: a rebuild is what runs when no agent can.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streamhouse.cli.agent_client import (
    EXIT_FAILED,
    Output,
    OutputFormat,
    console,
    errors,
    print_json,
)
from streamhouse.cli.main import DataDir, MetadataUrl, ObjectStoreUrl, S3Endpoint
from streamhouse.config import Settings
from streamhouse.errors import StreamHouseError

if TYPE_CHECKING:
    from streamhouse.engine.rebuild import RebuildReport

T = TypeVar("T")
EXIT_USAGE = 2
OPERATOR_ID = "streamctl"  # who began a rebuild, as the metadata store records it

admin = typer.Typer(
    help="Disaster recovery on the storage itself (works with no agent running).",
    no_args_is_help=True,
)

StepNames = {"footers": "reading object footers", "blocks": "reading blocks after the snapshot"}


def storage_settings(
    data_dir: str, metadata_url: str, object_store_url: str, s3_endpoint_url: str
) -> Settings:
    """The settings of the storage an agent with these options uses."""
    return Settings(
        data_dir=data_dir,
        metadata_url=metadata_url,
        object_store_url=object_store_url,
        s3_endpoint_url=s3_endpoint_url,
    )


def run_on_storage(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `work`; a storage failure is said once (exit 1)."""
    try:
        return asyncio.run(work())
    except StreamHouseError as error:
        errors.print(f"[red]failed:[/red] {error}")
        raise typer.Exit(EXIT_FAILED) from error


@admin.command("rebuild")
def rebuild(
    from_bucket: Annotated[
        bool,
        typer.Option(
            "--from-bucket",
            help="Rebuild the metadata store from the bucket: the newest snapshot, then the "
            "footers of later objects. The store must be blank (a new, empty database).",
        ),
    ] = False,
    data_dir: DataDir = Settings.data_dir,
    metadata_url: MetadataUrl = Settings.metadata_url,
    object_store_url: ObjectStoreUrl = Settings.object_store_url,
    s3_endpoint_url: S3Endpoint = Settings.s3_endpoint_url,
    output: OutputFormat = Output.TABLE,
) -> None:
    """Rebuild a lost metadata store from the object store alone, then print what was done."""
    if not from_bucket:
        errors.print("say where from: --from-bucket (the only source a rebuild has)")
        raise typer.Exit(EXIT_USAGE)
    settings = storage_settings(data_dir, metadata_url, object_store_url, s3_endpoint_url)
    with _progress(output) as progress:
        report = run_on_storage(lambda: _rebuild(settings, progress))
    if output is Output.JSON:
        print_json(dataclasses.asdict(report))
    else:
        console.print(_report_table(report))


async def _rebuild(settings: Settings, progress: _Bars) -> RebuildReport:
    # The storage adapters load only when an admin command runs: the rest of streamctl
    # talks Kafka to an agent and never opens a store
    from streamhouse.engine.rebuild import Rebuilder
    from streamhouse.io.storage import open_metadata_store, open_object_store
    from streamhouse.io.system_clock import SystemClock

    objects = await open_object_store(settings)
    store = open_metadata_store(settings)
    try:
        rebuilder = Rebuilder(
            SystemClock(),
            objects,
            OPERATOR_ID,
            snapshots=store,
            topics=store,
            leases=store,
            producers=store,
            progress=progress.advance,
        )
        return await rebuilder.rebuild()
    finally:
        await store.close()


class _Bars:
    """A Rich progress bar per rebuild step (none for --output json)."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._tasks: dict[str, Any] = {}

    def advance(self, step: str, done: int, total: int) -> None:
        if self._progress is None:
            return
        task = self._tasks.get(step)
        if task is None:
            task = self._progress.add_task(StepNames.get(step, step), total=total)
            self._tasks[step] = task
        self._progress.update(task, completed=done, total=total)

    def __enter__(self) -> _Bars:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def _progress(output: Output) -> _Bars:
    if output is Output.JSON:
        return _Bars(None)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    return _Bars(Progress(*columns, console=errors, transient=False))


def _report_table(report: RebuildReport) -> Table:
    table = Table(title="metadata rebuilt from the bucket", show_header=False)
    table.add_row("snapshot restored", report.snapshot_key or "none (footers alone)")
    table.add_row("rows restored", str(report.snapshot_rows))
    for key, why in report.snapshots_damaged:
        table.add_row("[yellow]snapshot skipped[/yellow]", f"{key}: {why}")
    table.add_row("objects listed", str(report.objects_listed))
    table.add_row("objects newer than the snapshot", str(report.objects_new))
    table.add_row("objects added", str(report.objects_added))
    table.add_row("segment rows added", str(report.segments_added))
    table.add_row("partitions extended", str(report.partitions_extended))
    table.add_row("topics created", ", ".join(report.topics_created) or "none")
    table.add_row("blocks skipped", str(len(report.blocks_skipped)))
    for key, why in report.objects_unreadable:
        table.add_row("[red]object unreadable[/red]", f"{key}: {why}")
    if not report.completed_here:
        table.add_row("[yellow]note[/yellow]", "another agent completed the rebuild first")
    table.add_row("time", f"{report.elapsed_ms / 1000:.1f} s")
    return table
