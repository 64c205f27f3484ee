"""The shared stores a chaos cluster runs on -- PostgreSQL and an S3 server -- from containers
when a Docker engine answers (testcontainers: PostgreSQL and MinIO), else from the local
PostgreSQL binaries (initdb, pg_ctl) and moto's S3 server. Both kinds offer the same calls,
so every chaos test runs unchanged on either; `describe()` says which ran (the test header)."""

from __future__ import annotations

import os
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from streamhouse.testing.moto_server import dummy_credentials, running_moto_server
from streamhouse.testing.network import free_loopback_port
from streamhouse.testing.postgres import PostgresServer, running_postgres

DOCKER_PING_TIMEOUT_S = 3
POSTGRES_IMAGE = "postgres:16-alpine"
MINIO_IMAGE = "minio/minio:RELEASE.2024-12-18T13-15-44Z"
CONTAINER_STOP_TIMEOUT_S = 0  # a crash, not a clean shutdown
CONNECT_TIMEOUT_S = 10
STORES_ENV = "STREAMHOUSE_CHAOS_STORES"  # "local" forces the local binaries with Docker present


class ChaosStores(ABC):
    """One PostgreSQL server and one S3 endpoint, which a test may stop and start again."""

    s3_endpoint: str

    @abstractmethod
    def describe(self) -> str:
        """Which stores these are, for the test header."""

    @abstractmethod
    def admin_conninfo(self) -> str:
        """A superuser connection string to the server's `postgres` database."""

    @abstractmethod
    def database_url(self, name: str) -> str:
        """The URL agents use for database `name`."""

    @abstractmethod
    def s3_credentials(self) -> dict[str, str]:
        """The environment under which boto3 reaches the S3 endpoint."""

    @abstractmethod
    def stop_metadata(self) -> None:
        """Crash the PostgreSQL server (no clean shutdown); `start_metadata` brings it back."""

    @abstractmethod
    def start_metadata(self) -> None:
        """Start the PostgreSQL server again, on the same address and data."""

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"chaos_{uuid.uuid4().hex[:12]}"
        self._admin_execute("CREATE DATABASE {}", name)
        return self.database_url(name)

    def wipe_database(self, url: str) -> None:
        """Lose database `url` whole and leave an empty one of the same name in its place."""
        name = url.rsplit("/", 1)[1]
        self._admin_execute("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)
        self._admin_execute("CREATE DATABASE {}", name)

    def agent_environment(self) -> dict[str, str]:
        """This process's environment plus what agents need to reach the S3 endpoint."""
        return {**os.environ, **self.s3_credentials()}

    def _admin_execute(self, statement: str, name: str) -> None:
        conninfo = self.admin_conninfo()
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            conn.execute(sql.SQL(statement).format(sql.Identifier(name)))


class LocalStores(ChaosStores):
    """PostgreSQL from the machine's binaries (durable commits) and moto's S3 server."""

    def __init__(self, postgres: PostgresServer, s3_endpoint: str) -> None:
        self.postgres = postgres
        self.s3_endpoint = s3_endpoint

    def describe(self) -> str:
        return (
            f"local PostgreSQL ({self.postgres.bin_dir}) and moto's S3 server "
            "(no Docker engine reachable, or STREAMHOUSE_CHAOS_STORES=local)"
        )

    def admin_conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.postgres.port} user=postgres dbname=postgres"

    def database_url(self, name: str) -> str:
        return self.postgres.url(name)

    def s3_credentials(self) -> dict[str, str]:
        return dummy_credentials()

    def stop_metadata(self) -> None:
        self.postgres.stop()

    def start_metadata(self) -> None:
        self.postgres.start()


class ContainerStores(ChaosStores):
    """PostgreSQL and MinIO in containers, bound to fixed loopback ports so that a restarted
    container answers where the agents already connect."""

    def __init__(self, postgres: Any, minio: Any, postgres_port: int, minio_port: int) -> None:
        self.postgres = postgres
        self.minio = minio
        self.postgres_port = postgres_port
        self.s3_endpoint = f"http://127.0.0.1:{minio_port}"

    def describe(self) -> str:
        return f"containers: {POSTGRES_IMAGE} and {MINIO_IMAGE} (testcontainers)"

    def admin_conninfo(self) -> str:
        return (
            f"host=127.0.0.1 port={self.postgres_port} user=postgres password=postgres "
            "dbname=postgres"
        )

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres:postgres@127.0.0.1:{self.postgres_port}/{name}"

    def s3_credentials(self) -> dict[str, str]:
        config = self.minio.get_config()
        return {
            "AWS_ACCESS_KEY_ID": str(config["access_key"]),
            "AWS_SECRET_ACCESS_KEY": str(config["secret_key"]),
        }

    def stop_metadata(self) -> None:
        self.postgres.get_wrapped_container().stop(timeout=CONTAINER_STOP_TIMEOUT_S)

    def start_metadata(self) -> None:
        self.postgres.get_wrapped_container().start()
        _wait_for_postgres(self.admin_conninfo())


def describe_stores() -> str:
    """Which kind `running_stores` gives here."""
    if docker_reachable():
        return f"containers ({POSTGRES_IMAGE}, {MINIO_IMAGE}) through testcontainers"
    return "local PostgreSQL binaries and moto's S3 server (no Docker engine reachable)"


def docker_reachable() -> bool:
    """Whether a Docker engine answers here (the client alone is not enough)."""
    if os.environ.get(STORES_ENV) == "local":
        return False
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=DOCKER_PING_TIMEOUT_S).ping()
    except Exception:  # no socket, no permission, no engine: all mean "no containers"
        return False
    return True


@contextmanager
def running_stores(log_dir: Path) -> Iterator[ChaosStores]:
    """Containers where Docker runs, the local binaries and moto elsewhere; removed afterwards."""
    if docker_reachable():
        with _containers() as stores:
            yield stores
        return
    with ExitStack() as stack:
        postgres = stack.enter_context(running_postgres(durable=True))
        endpoint = stack.enter_context(running_moto_server(log_dir))
        yield LocalStores(postgres, endpoint)


@contextmanager
def _containers() -> Iterator[ContainerStores]:
    from testcontainers.community.minio import MinioContainer
    from testcontainers.community.postgres import PostgresContainer

    postgres_port, minio_port = free_loopback_port(), free_loopback_port()
    postgres = PostgresContainer(
        POSTGRES_IMAGE, username="postgres", password="postgres", dbname="postgres"
    ).with_bind_ports(5432, postgres_port)
    postgres.with_command("postgres -c fsync=on -c synchronous_commit=on -c max_connections=200")
    minio = MinioContainer(MINIO_IMAGE).with_bind_ports(9000, minio_port)
    with postgres, minio:
        stores = ContainerStores(postgres, minio, postgres_port, minio_port)
        _wait_for_postgres(stores.admin_conninfo())
        yield stores


def _wait_for_postgres(conninfo: str) -> None:
    deadline = time.monotonic() + CONNECT_TIMEOUT_S * 3
    while True:
        try:
            psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT_S).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
