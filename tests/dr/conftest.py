"""The disaster-recovery suite runs every phase on moto's S3 server with its metadata in SQLite
and in PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dr.world import DrWorld, fresh_world


@pytest.fixture(params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path: Path, moto_s3_with_credentials: str
) -> Iterator[DrWorld]:
    backend = str(request.param)
    postgres = request.getfixturevalue("postgres_server") if backend == "postgres" else None
    made = fresh_world(backend, tmp_path, moto_s3_with_credentials, postgres)
    yield made
    if made.postgres is not None:
        made.postgres.drop_database(made.database)
