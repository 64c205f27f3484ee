"""A throwaway PostgreSQL server from the local binaries, on loopback, for tests and
benchmarks: `running_postgres()` starts one in a temporary directory and removes it afterwards;
`PostgresServer.create_database` gives each user a fresh database on it. As root (CI), the
server runs as an unprivileged user, since initdb and postgres refuse to run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from streamhouse.testing.network import free_loopback_port

_SUPERUSER = "postgres"
_SESSION_DATABASE = "streamhouse"
_START_ATTEMPTS_MAX = 3
_START_TIMEOUT_S = 60
_UNPRIVILEGED_USERS = ("postgres", "nobody")
_FALLBACK_USER = "streamhouse-pg"


@dataclass(frozen=True)
class _RunAs:
    """The OS user the server runs as (None fields: the current user)."""

    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway server: where it listens and how to reach it."""

    bin_dir: Path
    base_dir: Path
    port: int
    run_as: _RunAs

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    def url(self, database: str) -> str:
        return f"postgresql://{_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database `name` and return its URL."""
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            statement = "DROP DATABASE IF EXISTS {} WITH (FORCE)"
            conn.execute(sql.SQL(statement).format(sql.Identifier(name)))

    def stop(self) -> None:
        """Stop the server at once (as a crash would: no checkpoint); `start` brings it back."""
        _stop(self)

    def start(self) -> None:
        """Start the stopped server again on its port and data (WAL recovery runs first)."""
        log_path = self.base_dir / "server-restarted.log"
        result = _run(
            _pg_ctl_start(self.bin_dir, self.base_dir, log_path), self.run_as, self.base_dir
        )
        if result.returncode != 0:
            log = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start again:\n{result.stderr}{log}")

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        conninfo = f"host=127.0.0.1 port={self.port} user={_SUPERUSER} dbname=postgres"
        return psycopg.connect(conninfo, autocommit=True, connect_timeout=10)


class PostgresMissing(RuntimeError):
    """The PostgreSQL binaries (initdb, pg_ctl) are not installed."""


@contextmanager
def running_postgres(durable: bool = False) -> Iterator[PostgresServer]:
    """A PostgreSQL server until the block ends; then stopped and its directory removed.
    Raises PostgresMissing without the binaries, RuntimeError if it does not start.
    `durable`: commits are fsynced before they answer, so they survive the server's crash (a
    `stop` then `start`); else, for speed, a crash may lose the last commits."""
    bin_dir = _find_bin_dir()
    run_as = _unprivileged_user() if os.geteuid() == 0 else _RunAs()
    base_dir = Path(tempfile.mkdtemp(prefix="streamhouse-pg-"))
    try:
        _hand_over(base_dir, run_as)
        _initdb(bin_dir, base_dir, run_as)
        server = _start_with_retries(bin_dir, base_dir, run_as, durable)
        try:
            yield server
        finally:
            _stop(server)
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)


# ---------------------------------------------------------------- setup steps


def _find_bin_dir() -> Path:
    found = shutil.which("initdb")
    if found is not None and shutil.which("pg_ctl") is not None:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major_version)
    if candidates:
        return Path(candidates[-1]).parent
    raise PostgresMissing(
        "PostgreSQL binaries (initdb, pg_ctl) are not installed: "
        "`apt-get install postgresql` (.ci/run does this)"
    )


def _major_version(initdb_path: str) -> int:
    version = Path(initdb_path).parent.parent.name
    return int(version) if version.isdigit() else 0


def _unprivileged_user() -> _RunAs:
    for name in (*_UNPRIVILEGED_USERS, _FALLBACK_USER):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return _RunAs(entry.pw_uid, entry.pw_gid)
    command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    subprocess.run([*command, _FALLBACK_USER], check=True, capture_output=True)
    entry = pwd.getpwnam(_FALLBACK_USER)
    return _RunAs(entry.pw_uid, entry.pw_gid)


def _hand_over(base_dir: Path, run_as: _RunAs) -> None:
    if run_as.uid is not None and run_as.gid is not None:
        os.chown(base_dir, run_as.uid, run_as.gid)
    base_dir.chmod(0o700)


def _run(command: list[str], run_as: _RunAs, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "HOME": str(cwd)}
    env.pop("PGDATA", None)
    return subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=_START_TIMEOUT_S + 30,
        check=False,
        user=run_as.uid,
        group=run_as.gid,
        extra_groups=None if run_as.uid is None else [],
    )


def _initdb(bin_dir: Path, base_dir: Path, run_as: _RunAs) -> None:
    command = [
        str(bin_dir / "initdb"),
        "--pgdata",
        str(base_dir / "data"),
        "--username",
        _SUPERUSER,
        "--auth",
        "trust",
        "--encoding",
        "UTF8",
        "--locale",
        "C",
        "--no-sync",
    ]
    result = _run(command, run_as, base_dir)
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")


def _configure(base_dir: Path, port: int, durable: bool) -> None:
    # Appended lines win over earlier ones, so a retry just appends a new port.
    safety = "on" if durable else "off"
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": f"'{base_dir}'",
        "fsync": safety,
        "synchronous_commit": safety,
        "full_page_writes": safety,
        "max_connections": "200",
    }
    lines = "".join(f"{name} = {value}\n" for name, value in settings.items())
    with (base_dir / "data" / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write(lines)


def _start_with_retries(
    bin_dir: Path, base_dir: Path, run_as: _RunAs, durable: bool
) -> PostgresServer:
    # Retried because the free port can be taken between our probe and the server's bind.
    errors: list[str] = []
    for attempt in range(_START_ATTEMPTS_MAX):
        port = free_loopback_port()
        _configure(base_dir, port, durable)
        log_path = base_dir / f"server-{attempt}.log"
        result = _run(_pg_ctl_start(bin_dir, base_dir, log_path), run_as, base_dir)
        if result.returncode == 0:
            return PostgresServer(bin_dir, base_dir, port, run_as)
        log = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        errors.append(f"port {port}: {result.stdout}{result.stderr}{log}")
    raise RuntimeError("PostgreSQL did not start:\n" + "\n".join(errors))


def _pg_ctl_start(bin_dir: Path, base_dir: Path, log_path: Path) -> list[str]:
    return [
        str(bin_dir / "pg_ctl"),
        "--pgdata",
        str(base_dir / "data"),
        "--log",
        str(log_path),
        "--wait",
        "--timeout",
        str(_START_TIMEOUT_S),
        "start",
    ]


def _stop(server: PostgresServer) -> None:
    command = [
        str(server.bin_dir / "pg_ctl"),
        "--pgdata",
        str(server.data_dir),
        "--mode",
        "immediate",
        "--wait",
        "stop",
    ]
    _run(command, server.run_as, server.base_dir)
