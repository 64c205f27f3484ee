"""`streamctl admin`: work on the stores themselves, with or without an agent running.

Unlike the other streamctl commands, which talk to a running agent over Kafka, these open the
metadata store and the object store directly, named by the same options and environment
variables the agent takes (`--data-dir`, `--metadata-url`, `--object-store`, `--s3-endpoint`,
`--s3-region`; STREAMHOUSE_*). `admin_storage` is the one way in, for every admin command
(`reconcile` here; further commands add themselves to the `admin` Typer app).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from streamhouse.cli.agent_client import (
    EXIT_FAILED,
    Output,
    OutputFormat,
    errors,
    print_json,
    say,
)
from streamhouse.cli.main import EXIT_USAGE, setting
from streamhouse.config import Settings
from streamhouse.engine.reconciler import Reconciler, ReconcileReport
from streamhouse.errors import StreamHouseError
from streamhouse.ports.object_store import ObjectStore

if TYPE_CHECKING:
    from streamhouse.io.sql.store import SqlMetadataStore

EXIT_DAMAGE_FOUND = 1  # scripts notice: some object that rows point into is missing or corrupt

admin = typer.Typer(
    help=(
        "Work on the metadata store and the object store directly (no agent needed): "
        "reconcile the bucket with the metadata."
    ),
    no_args_is_help=True,
)

DataDir = Annotated[
    str, setting("data_dir", "The agent's data directory (its embedded SQLite and objects).")
]
MetadataUrl = Annotated[
    str,
    setting(
        "metadata_url", "sqlite:///path or postgresql://user@host/db; default: SQLite in data dir."
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
S3Region = Annotated[str, setting("s3_region", "The bucket's region.")]


@dataclass(frozen=True)
class StorageOptions:
    """Where the stores are, as the admin commands' options say."""

    data_dir: str = Settings.data_dir
    metadata_url: str = Settings.metadata_url
    object_store_url: str = Settings.object_store_url
    s3_endpoint_url: str = Settings.s3_endpoint_url
    s3_region: str = Settings.s3_region

    def settings(self, **overrides: Any) -> Settings:
        """The agent's settings for these stores, with `overrides`; a bad value exits 2."""
        try:
            return Settings(
                data_dir=self.data_dir,
                metadata_url=self.metadata_url,
                object_store_url=self.object_store_url,
                s3_endpoint_url=self.s3_endpoint_url,
                s3_region=self.s3_region,
                **overrides,
            )
        except ValueError as error:
            errors.print(f"[red]error:[/red] {error}")
            raise typer.Exit(EXIT_USAGE) from error


@asynccontextmanager
async def admin_storage(settings: Settings) -> AsyncIterator[tuple[ObjectStore, SqlMetadataStore]]:
    """The object store and the existing metadata store the settings name, closed after.
    Raises StorageError (MetadataUnavailable when there is no metadata store there)."""
    # Imported here: the commands that talk to an agent never load SQLAlchemy or boto3
    from streamhouse.io.stores import open_metadata_store, open_object_store

    metadata = open_metadata_store(settings, create=False)
    try:
        yield await open_object_store(settings), metadata
    finally:
        await metadata.close()


@contextmanager
def failures_exit() -> Iterator[None]:
    """A store that cannot be opened or fails midway: said on stderr, exit 1."""
    try:
        yield
    except StreamHouseError as error:
        errors.print(f"[red]error:[/red] {error}")
        raise typer.Exit(EXIT_FAILED) from error


@admin.command("reconcile")
def reconcile(
    data_dir: DataDir = Settings.data_dir,
    metadata_url: MetadataUrl = Settings.metadata_url,
    object_store_url: ObjectStoreUrl = Settings.object_store_url,
    s3_endpoint_url: S3Endpoint = Settings.s3_endpoint_url,
    s3_region: S3Region = Settings.s3_region,
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
    where = StorageOptions(data_dir, metadata_url, object_store_url, s3_endpoint_url, s3_region)
    settings = where.settings(reconcile_grace_ms=grace_ms)
    with failures_exit():
        report = asyncio.run(_reconcile(settings, dry_run, verify))
    if output is Output.JSON:
        print_json(report.as_json())
    else:
        _show(report)
    if report.damage_found:
        raise typer.Exit(EXIT_DAMAGE_FOUND)


async def _reconcile(settings: Settings, dry_run: bool, verify: bool) -> ReconcileReport:
    from streamhouse.io.system_clock import SystemClock  # with the stores: see admin_storage

    async with admin_storage(settings) as (objects, metadata):
        reconciler = Reconciler(settings, SystemClock(), objects, metadata)
        with errors.status("listing the bucket…") as status:

            def progress(so_far: ReconcileReport) -> None:
                status.update(
                    f"reconciling: {so_far.listed} objects listed, "
                    f"{so_far.orphans_deleted} orphans {'found' if dry_run else 'deleted'}, "
                    f"{so_far.missing + so_far.corrupt} damaged"
                )

            return await reconciler.run(dry_run=dry_run, verify=verify, on_page=progress)


def _show(report: ReconcileReport) -> None:
    title = "reconcile" + (" (dry run: nothing deleted)" if report.dry_run else "")
    counts = Table("", "objects", title=title)
    would = "would be " if report.dry_run else ""
    rows = [
        ("listed in the bucket", report.listed),
        ("referenced by segment rows", report.referenced),
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
