"""Opening the stores an agent's settings name: the object store (a local directory or an S3
bucket) and the metadata store; shared by the agent and by `streamctl admin`, which work on
the same storage."""

from __future__ import annotations

import os

from streamhouse.config import Settings
from streamhouse.errors import MetadataUnavailable
from streamhouse.io.local_object_store import LocalObjectStore
from streamhouse.io.locations import SQLITE_FILE, metadata_url, object_store_location
from streamhouse.io.s3_object_store import S3ObjectStore
from streamhouse.io.sql.store import SqlMetadataStore, open_sql_metadata
from streamhouse.ports.object_store import ObjectStore


async def open_object_store(settings: Settings) -> ObjectStore:
    """The local directory or S3 bucket the settings name (S3 credentials: boto3's usual chain,
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles or an instance role)."""
    location = object_store_location(settings)
    if not location.startswith("s3://"):
        return LocalObjectStore(location.removeprefix("file://"))
    store = S3ObjectStore.from_url(
        location,
        settings,
        endpoint_url=settings.s3_endpoint_url or None,
        region=settings.s3_region,
    )
    await store.ensure_bucket()
    return store


def open_metadata_store(settings: Settings, *, create: bool = True) -> SqlMetadataStore:
    """The metadata store the settings name, migrated to head. Unless `create`, the default
    SQLite file must exist already (a tool pointed at the wrong data directory must not
    report on a new, empty store): MetadataUnavailable otherwise."""
    if not create and not settings.metadata_url:
        path = os.path.join(settings.data_dir, SQLITE_FILE)
        if not os.path.isfile(path):
            raise MetadataUnavailable(
                f"no metadata store at {os.path.abspath(path)}: give the agent's --data-dir "
                "or --metadata-url"
            )
    return open_sql_metadata(metadata_url(settings))
