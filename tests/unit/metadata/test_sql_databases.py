"""The real databases under every port: reopening, migrations, and failures mapped to errors."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from streamhouse.errors import (
    ErrorCode,
    MetadataUnavailable,
    MetadataUnknownOutcome,
)
from streamhouse.io.sql.migrations import alembic_config
from streamhouse.io.sql.store import open_sql_metadata
from streamhouse.io.sql.store_clock import default_store_clock, host_wall_ms, server_clock
from tests.unit.metadata.builders import (
    T0_MS,
    TP0,
    TTL_MS,
    committed,
    flush,
    run,
    segment,
)

# ---------------------------------------------------------------- files and migrations


def test_sqlite_reopen_keeps_data_and_migrations_are_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    first = open_sql_metadata(url)
    run(first.create_topic("orders", 1, {"k": "v"}, T0_MS))
    run(first.acquire_lease(TP0, "agent-a", TTL_MS))
    run(first.commit_flush(flush("obj-1", {TP0: 1}, [(TP0, 0, 4)])))
    run(first.close())
    second = open_sql_metadata(url)
    try:
        topic = run(second.get_topic("orders"))
        assert topic is not None and dict(topic.configs) == {"k": "v"}
        assert run(second.get_partition(TP0)).durable_end_offset == 5
        assert run(second.list_segments(TP0)) == [segment(TP0, 0, 4, "obj-1")]
    finally:
        run(second.close())
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        journal_mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    engine.dispose()
    head = ScriptDirectory.from_config(alembic_config(url=url)).get_current_head()
    assert [row[0] for row in versions] == [head]
    assert journal_mode == "wal"


def test_migrations_run_from_a_url_and_downgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    command.upgrade(alembic_config(url=url), "head")
    engine = sa.create_engine(url)
    assert set(sa.inspect(engine).get_table_names()) >= {"topics", "segments", "flush_outcomes"}
    command.downgrade(alembic_config(url=url), "base")
    assert sa.inspect(engine).get_table_names() == ["alembic_version"]
    engine.dispose()
    store = open_sql_metadata(url)
    run(store.create_topic("orders", 1, {}, T0_MS))
    run(store.close())


def test_sqlite_file_at_revision_0001_upgrades_on_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    command.upgrade(alembic_config(url=url), "0001")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO topics (name, partition_count, configs, created_ms) "
                "VALUES ('orders', 1, '{}', 5)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO partitions (topic, partition, leader_epoch, lease_expires_ms, "
                "durable_end_offset, log_start_offset) VALUES ('orders', 0, 2, 0, 7, 0)"
            )
        )
    engine.dispose()
    store = open_sql_metadata(url)
    try:
        assert run(store.get_partition(TP0)).durable_end_offset == 7
        run(store.commit_offsets("billing", {TP0: committed(7)}))
        assert run(store.fetch_offsets("billing")) == {TP0: committed(7)}
    finally:
        run(store.close())


# ---------------------------------------------------------------- the store's clock

CLOCK_SKEW_MS_MAX = 1_000  # the test's PostgreSQL runs on this host: its clock is ours


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_each_database_judges_expiry_by_its_own_clock(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """Unless told otherwise, PostgreSQL reads its server's clock and SQLite the host's, both
    in milliseconds since the epoch."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'metadata.db'}"
    else:
        url = request.getfixturevalue("postgres_database_url")
    store = open_sql_metadata(url)
    try:
        assert (default_store_clock(store.engine) is server_clock) == (backend == "postgres")
        run(store.create_topic("orders", 1, {}, T0_MS))
        before = host_wall_ms()
        lease = run(store.acquire_lease(TP0, "agent-a", TTL_MS))
        after = host_wall_ms()
        assert lease is not None
        low, high = before + TTL_MS - CLOCK_SKEW_MS_MAX, after + TTL_MS + CLOCK_SKEW_MS_MAX
        assert low <= lease.expires_ms <= high
        assert run(store.get_partition(TP0)).lease_live
    finally:
        run(store.close())


# ---------------------------------------------------------------- failures


def test_sqlite_in_unwritable_place_is_unavailable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'metadata.db'}"
    with pytest.raises(MetadataUnavailable, match="unavailable during migrate") as raised:
        open_sql_metadata(url)
    assert raised.value.code == ErrorCode.KAFKA_STORAGE_ERROR


def test_unreachable_postgres_is_unavailable() -> None:
    url = "postgresql://postgres@127.0.0.1:1/nothing?connect_timeout=2"
    with pytest.raises(MetadataUnavailable, match="reachable") as raised:
        open_sql_metadata(url)
    assert "127.0.0.1:1" in str(raised.value)


def test_failure_at_commit_is_an_unknown_outcome_for_writes(tmp_path: Path) -> None:
    store = open_sql_metadata(f"sqlite:///{tmp_path / 'metadata.db'}")
    run(store.create_topic("orders", 1, {}, T0_MS))

    def lose_connection(_conn: sa.Connection) -> None:
        raise sa.exc.OperationalError("COMMIT", None, Exception("server closed the connection"))

    sa.event.listen(store.engine, "commit", lose_connection)
    try:
        with pytest.raises(MetadataUnknownOutcome, match="may or may not"):
            run(store.set_log_start_offset(TP0, 5))
        with pytest.raises(MetadataUnavailable, match="server closed the connection"):
            run(store.get_partition(TP0))
    finally:
        sa.event.remove(store.engine, "commit", lose_connection)
    assert run(store.get_partition(TP0)).log_start_offset == 0
    run(store.close())


def test_an_in_memory_store_serves_overlapping_calls() -> None:
    """One shared connection: overlapping calls (threads by default) must not interleave
    their transactions (they failed with "cannot start a transaction within a transaction",
    and stopped a --storage null agent)."""

    async def overlapping() -> list[str]:
        store = open_sql_metadata("sqlite://")
        try:
            names = [f"t{index}" for index in range(50)]
            await asyncio.gather(*(store.create_topic(name, 2, {}, T0_MS) for name in names))
            return [topic.name for topic in await store.list_topics()]
        finally:
            await store.close()

    assert sorted(asyncio.run(overlapping())) == sorted(f"t{index}" for index in range(50))


def test_an_agent_starting_while_another_holds_the_new_file_waits_for_it(tmp_path: Path) -> None:
    """Agents starting together on one new SQLite file: the one finding it locked (the other
    migrating) tries again rather than refusing to start."""
    path = tmp_path / "shared.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    releaser = threading.Timer(0.6, holder.execute, args=("COMMIT",))
    releaser.start()
    try:
        store = open_sql_metadata(f"sqlite:///{path}", busy_timeout_ms=50)
    finally:
        releaser.join()
        holder.close()
    asyncio.run(store.create_topic("t", 1, {}, T0_MS))
    asyncio.run(store.close())
