"""Where an agent keeps its data: the metadata store's URL and the object store's location,
from the settings or defaulted into the data directory."""

from __future__ import annotations

import os

from streamhouse.config import Settings

WAL_DISK_DIRECTORY = "local"  # under data_dir: the WAL, the agent id and the WAL marker
# Process i > 0 of `--processes N` keeps its own under local-<i>; process 0 keeps `local`, so a
# data directory of one process is process 0's when it becomes several
PROCESS_DIRECTORY_SEPARATOR = "-"
SQLITE_FILE = "metadata.db"  # the embedded metadata store, in data_dir


def metadata_url(settings: Settings) -> str:
    """The metadata store's URL: the configured one, else a SQLite file in the data directory
    (which is created if missing)."""
    if settings.metadata_url:
        return settings.metadata_url
    os.makedirs(settings.data_dir, exist_ok=True)
    return f"sqlite:///{os.path.abspath(os.path.join(settings.data_dir, SQLITE_FILE))}"


def object_store_location(settings: Settings) -> str:
    """Where objects go: the configured s3:// URL, else a directory in the data directory."""
    return settings.object_store_url or os.path.abspath(os.path.join(settings.data_dir, "objects"))


def wal_directory(settings: Settings) -> str:
    """The directory the agent's local disk port is rooted at: its process's own."""
    return process_directory(settings.data_dir, settings.process_index)


def process_directory(data_dir: str, index: int) -> str:
    """Where agent process `index` of a data directory keeps its WAL, id and WAL marker."""
    name = WAL_DISK_DIRECTORY
    if index > 0:
        name += f"{PROCESS_DIRECTORY_SEPARATOR}{index}"
    return os.path.join(data_dir, name)


def process_indexes_on_disk(data_dir: str) -> list[int]:
    """The indexes of every agent process that has a directory in `data_dir`, ascending."""
    if not os.path.isdir(data_dir):
        return []
    prefix = WAL_DISK_DIRECTORY + PROCESS_DIRECTORY_SEPARATOR
    found = {0} if os.path.isdir(process_directory(data_dir, 0)) else set()
    for name in os.listdir(data_dir):
        suffix = name.removeprefix(prefix)
        if name.startswith(prefix) and suffix.isdigit() and int(suffix) > 0:
            found.add(int(suffix))
    return sorted(found)
