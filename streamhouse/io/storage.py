"""Opening the stores an agent's settings name: the object store (a local directory or an S3
bucket) and the metadata store; shared by the agent and by `streamctl admin`, which work on
the same storage."""

from __future__ import annotations

from streamhouse.config import Settings
from streamhouse.io.local_object_store import LocalObjectStore
from streamhouse.io.locations import metadata_url, object_store_location
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


def open_metadata_store(settings: Settings) -> SqlMetadataStore:
    """The metadata store the settings name, migrated to head."""
    return open_sql_metadata(metadata_url(settings))
