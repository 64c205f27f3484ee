"""`streamctl admin`: work on the storage itself: rebuild a lost metadata store from the
bucket, reconcile the bucket with the metadata.

Unlike the other streamctl commands, which ask a running agent over Kafka, these open the
metadata store and the object store directly, with the options (and STREAMHOUSE_*
environment variables) `streamhouse agent` takes: a rebuild is what runs when no agent can.
A further command adds itself to the `admin` app and opens the stores with `storage`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
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
    say,
)
from streamhouse.cli.main import DataDir, MetadataUrl, ObjectStoreUrl, S3Endpoint, setting
from streamhouse.config import Settings
from streamhouse.errors import StreamHouseError

if TYPE_CHECKING:
    from streamhouse.engine.rebuild import RebuildReport
    from streamhouse.engine.reconciler import ReconcileReport
    from streamhouse.io.sql.store import SqlMetadataStore
    from streamhouse.ports.object_store import ObjectStore

T = TypeVar("T")
EXIT_USAGE = 2
OPERATOR_ID = "streamctl"  # who began a rebuild, as the metadata store records it
EXIT_DAMAGE_FOUND = 1  # reconcile: an object that rows point into is missing or corrupt

admin = typer.Typer(
    help=(
        "Work on the storage itself, with no agent running: rebuild the metadata from the "
        "bucket, reconcile the bucket with the metadata."
    ),
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


@asynccontextmanager
async def storage(
    settings: Settings, *, create: bool
) -> AsyncIterator[tuple[ObjectStore, SqlMetadataStore]]:
    """The object store and the metadata store the settings name, the latter closed after;
    unless `create`, an embedded metadata store must exist already. Raises StorageError."""
    # The storage adapters load only when an admin command runs: the rest of streamctl
    # talks Kafka to an agent and never opens a store
    from streamhouse.io.storage import open_metadata_store, open_object_store

    objects = await open_object_store(settings)
    store = open_metadata_store(settings, create=create)
    try:
        yield objects, store
    finally:
        await store.close()


async def _rebuild(settings: Settings, progress: _Bars) -> RebuildReport:
    from streamhouse.engine.rebuild import Rebuilder  # with the stores: see `storage`
    from streamhouse.io.system_clock import SystemClock

    async with storage(settings, create=True) as (objects, store):
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


@admin.command("reconcile")
def reconcile(
    data_dir: DataDir = Settings.data_dir,
    metadata_url: MetadataUrl = Settings.metadata_url,
    object_store_url: ObjectStoreUrl = Settings.object_store_url,
    s3_endpoint_url: S3Endpoint = Settings.s3_endpoint_url,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Delete nothing; report what would be deleted.")
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify", help="Also read every referenced object's footer and blocks (slow)."
        ),
    ] = False,
    grace_ms: Annotated[
        int,
        setting(
            "reconcile_grace_ms",
            "Orphans younger than this (ms) are kept: their upload may still be committed.",
            "--grace-ms",
        ),
    ] = Settings.reconcile_grace_ms,
    output: OutputFormat = Output.TABLE,
) -> None:
    """Diff the bucket against the metadata: delete orphan objects past the grace, report
    objects that rows point into but that are missing or corrupt (exit 1 if any)."""
    stores = storage_settings(data_dir, metadata_url, object_store_url, s3_endpoint_url)
    try:
        settings = stores.with_overrides(reconcile_grace_ms=grace_ms)
    except ValueError as error:
        errors.print(f"[red]error:[/red] {error}")
        raise typer.Exit(EXIT_USAGE) from error
    report = run_on_storage(lambda: _reconcile(settings, dry_run, verify, output))
    if output is Output.JSON:
        print_json(report.as_json())
    else:
        _show_reconcile(report)
    if report.damage_found:
        raise typer.Exit(EXIT_DAMAGE_FOUND)


async def _reconcile(
    settings: Settings, dry_run: bool, verify: bool, output: Output
) -> ReconcileReport:
    from streamhouse.engine.reconciler import Reconciler  # with the stores: see `storage`
    from streamhouse.io.system_clock import SystemClock

    async with storage(settings, create=False) as (objects, store):
        reconciler = Reconciler(settings, SystemClock(), objects, store)
        if output is Output.JSON:
            return await reconciler.run(dry_run=dry_run, verify=verify)
        with errors.status("listing the bucket…") as status:

            def progress(so_far: ReconcileReport) -> None:
                status.update(
                    f"reconciling: {so_far.listed} objects listed, "
                    f"{so_far.orphans_deleted} orphans {'found' if dry_run else 'deleted'}, "
                    f"{so_far.missing + so_far.corrupt} damaged"
                )

            return await reconciler.run(dry_run=dry_run, verify=verify, on_page=progress)


def _show_reconcile(report: ReconcileReport) -> None:
    title = "reconcile" + (" (dry run: nothing deleted)" if report.dry_run else "")
    counts = Table(title=title, show_header=False)
    would = "would be " if report.dry_run else ""
    rows = [
        ("objects listed in the bucket", report.listed),
        ("objects referenced by segment rows", report.referenced),
        (f"orphans {would}deleted", report.orphans_deleted),
        ("orphans kept (in grace)", report.orphans_kept_in_grace),
        (f"rows of gone orphans {would}forgotten", report.rows_forgotten),
        ("missing", report.missing),
        ("corrupt", report.corrupt),
    ]
    for label, value in rows:
        style = "red" if label in ("missing", "corrupt") and value else ""
        counts.add_row(label, f"[{style}]{value}[/{style}]" if style else str(value))
    counts.add_row(f"bytes {would}freed", str(report.bytes_freed))
    if report.verified:
        counts.add_row("blocks verified", str(report.blocks_verified))
    counts.add_row("elapsed", f"{report.elapsed_ms} ms")
    say(counts)
    if not report.damaged:
        return
    damaged = Table("object", "damage", "partitions and offsets", "detail", title="damaged")
    for found in report.damaged:
        held = "\n".join(str(r) for r in found.ranges)
        damaged.add_row(found.key, found.damage.value, held, found.detail)
    say(damaged)
    shown = len(report.damaged)
    if shown < report.missing + report.corrupt:
        say(f"… and {report.missing + report.corrupt - shown} more damaged objects")
