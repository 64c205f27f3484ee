"""The stores every metadata suite runs over: `store` (SQLite file, simulator, PostgreSQL) with
`store_time`, the store's own clock as the test moves it, and `sql_store` (the real databases
only, for several agents at once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.metadata import SimMetadataStore
from streamhouse.io.sql.store import SqlMetadataStore, open_sql_metadata
from streamhouse.io.sql.transactions import BlockingRunner, run_inline
from tests.unit.metadata.builders import StoreTime, run

# PostgreSQL runs in make test-all (marked slow): its start and round trips were half of make
# test's time, which must stay under 3 minutes; SQLite and the simulator's store run everywhere
POSTGRES = pytest.param("postgres", marks=pytest.mark.slow)


@pytest.fixture(params=["sqlite", "sim", POSTGRES])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_time(backend: str) -> StoreTime:
    return StoreTime(on_server=backend == "postgres")


@pytest.fixture
def store(
    request: pytest.FixtureRequest, backend: str, store_time: StoreTime, tmp_path: Path
) -> Iterator[SqlMetadataStore]:
    opened = _open_store(request, backend, store_time, tmp_path, asyncio.to_thread)
    try:
        yield opened
    finally:
        run(opened.close())


@pytest.fixture(params=["sqlite", POSTGRES])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlMetadataStore]:
    """A real database; its calls block the calling thread, so threads race for real."""
    backend = str(request.param)
    store_time = StoreTime(on_server=backend == "postgres")
    opened = _open_store(request, backend, store_time, tmp_path, run_inline)
    try:
        yield opened
    finally:
        run(opened.close())


def _open_store(
    request: pytest.FixtureRequest,
    backend: str,
    store_time: StoreTime,
    tmp_path: Path,
    run_blocking: BlockingRunner,
) -> SqlMetadataStore:
    if backend == "sim":
        assert store_time.virtual is not None
        return SimMetadataStore(clock=store_time.virtual)
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'metadata.db'}"
    else:
        url = request.getfixturevalue("postgres_database_url")
    return open_sql_metadata(url, run_blocking=run_blocking, store_clock=store_time)
