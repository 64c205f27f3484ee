"""The stores every metadata suite runs over: `store` (SQLite file, simulator, PostgreSQL) and
`sql_store` (the real databases only, for several agents at once)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.metadata import SimMetadataStore
from streamhouse.io.sql.store import SqlMetadataStore, open_sql_metadata
from streamhouse.io.sql.transactions import run_inline
from streamhouse.ports.metadata import MetadataStore
from tests.unit.metadata.builders import run


@pytest.fixture(params=["sqlite", "sim", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    opened = _open_store(request, tmp_path)
    try:
        yield opened
    finally:
        run(opened.close())


def _open_store(request: pytest.FixtureRequest, tmp_path: Path) -> MetadataStore:
    if request.param == "sqlite":
        return open_sql_metadata(f"sqlite:///{tmp_path / 'metadata.db'}")
    if request.param == "sim":
        return SimMetadataStore()
    return open_sql_metadata(request.getfixturevalue("postgres_database_url"))


@pytest.fixture(params=["sqlite", "postgres"])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlMetadataStore]:
    """A real database; its calls block the calling thread, so threads race for real."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'metadata.db'}"
    else:
        url = request.getfixturevalue("postgres_database_url")
    opened = open_sql_metadata(url, run_blocking=run_inline)
    try:
        yield opened
    finally:
        run(opened.close())
