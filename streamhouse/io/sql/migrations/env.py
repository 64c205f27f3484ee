"""Alembic environment: runs migrations on a given Connection, or on a URL's engine."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlalchemy.pool import NullPool

from streamhouse.io.sql.schema import metadata


def _run_on(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


def _run_offline(url: str) -> None:
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        _run_on(given)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "set config.attributes['connection'] or the sqlalchemy.url option"
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            _run_on(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    _offline_url = context.config.get_main_option("sqlalchemy.url")
    assert _offline_url, "offline mode needs the sqlalchemy.url option"
    _run_offline(_offline_url)
else:
    _run_online()
