"""Where an agent keeps its data: the metadata store's URL and the object store's location,
from the settings or defaulted into the data directory."""

from __future__ import annotations

import os

from streamhouse.config import Settings

WAL_DISK_DIRECTORY = "local"  # under data_dir: the WAL, the agent id and the WAL marker


def metadata_url(settings: Settings) -> str:
    """The metadata store's URL: the configured one, else a SQLite file in the data directory
    (which is created if missing)."""
    if settings.metadata_url:
        return settings.metadata_url
    os.makedirs(settings.data_dir, exist_ok=True)
    return f"sqlite:///{os.path.abspath(os.path.join(settings.data_dir, 'metadata.db'))}"


def object_store_location(settings: Settings) -> str:
    """Where objects go: the configured s3:// URL, else a directory in the data directory."""
    return settings.object_store_url or os.path.abspath(os.path.join(settings.data_dir, "objects"))


def wal_directory(settings: Settings) -> str:
    """The directory the agent's local disk port is rooted at."""
    return os.path.join(settings.data_dir, WAL_DISK_DIRECTORY)
