"""Alembic migrations of the metadata store, and `upgrade_to_head` to apply them from code."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

MIGRATIONS_DIR = Path(__file__).resolve().parent

# Any constant works; it only has to be the same for every agent.
_POSTGRES_MIGRATION_LOCK_ID = 0x5354_484F_5553_45


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic Config built in code (no alembic.ini) for a connection or a URL."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade_to_head(connection: Connection) -> None:
    """Apply every pending migration on `connection`.

    Runs inside the caller's transaction when one is open (so the caller
    chooses how it begins, e.g. BEGIN IMMEDIATE on SQLite), else in its own.
    On PostgreSQL a transaction-scoped advisory lock serialises agents that
    start together.
    """
    if connection.in_transaction():
        _upgrade_locked(connection)
        return
    with connection.begin():
        _upgrade_locked(connection)


def _upgrade_locked(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:lock_id)"),
            {"lock_id": _POSTGRES_MIGRATION_LOCK_ID},
        )
    command.upgrade(alembic_config(connection=connection), "head")
