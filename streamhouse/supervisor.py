"""`streamhouse agent --processes N`: N agent processes of one cluster on this host, started,
restarted and stopped by one supervisor process.

Each process is a whole agent (its own id, Kafka port, WAL directory) sharing the metadata store
and the bucket with the others, so F6's membership, leases and placement spread the partitions
and coordinator slots over them. Process i listens for Kafka on kafka_port + i (each is the
leader clients are sent to) and keeps its WAL under data_dir/local-i (process 0: data_dir/local,
a single process's directory). The supervisor serves the HTTP port, answering /health, /ready
and /metrics for every process from each one's own HTTP door on an ephemeral loopback port.

A process that dies once all have started is restarted after a backoff (doubling from 1 s to
30 s, back to 1 s after a minute of running), logged as an error each time; one that cannot
start at first stops them all (exit 1): a taken port or an unreachable store is the operator's
to fix. SIGTERM/SIGINT stop every process gracefully (each flushes and hands its leases over)
and the supervisor exits 0 if they all did. A process directory beyond N whose WAL still holds
entries (N lowered after a crash) is drained before any process starts, N = 1 included
(`drain_surplus`): its agent recovers, flushes, hands over and exits, so nothing it
acknowledged is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from streamhouse import __version__
from streamhouse.cli.main import AgentBanner, print_processes_banner, print_status
from streamhouse.config import HTTP_DISABLED, Settings
from streamhouse.engine.wal import SEGMENT_SUFFIX, WAL_DIRECTORY
from streamhouse.errors import StreamHouseError
from streamhouse.io.locations import process_directory, process_indexes_on_disk
from streamhouse.server.http_api import AgentHttp
from streamhouse.server.process_http import ProcessView, start_processes_http

PROCESS_RESTART_BACKOFF_MS_MIN = 1_000
PROCESS_RESTART_BACKOFF_MS_MAX = 30_000
PROCESS_STABLE_MS = 60_000  # a process that ran this long is restarted after the shortest wait
PROCESS_STOP_TIMEOUT_MS = 120_000  # flushing and handing over; then it is killed
CHILD_HTTP_HOST = "127.0.0.1"  # each process's own HTTP door, read only by the supervisor
NULL_METADATA_FILE = "null-metadata.db"  # --storage null: the processes' shared, fresh store
EXIT_CANNOT_START = 1
EXIT_SIGNALLED_BASE = 128  # a process killed by signal s counts as exit 128 + s, as in shells

ProcessBody = Callable[[Settings, Connection, bool], None]
"""Runs one agent process: its settings, its link to the supervisor (the banner is sent over
it once serving; it closes when the supervisor is gone) and whether to drain and exit."""


def process_settings(settings: Settings, index: int) -> Settings:
    """The settings of agent process `index`: its Kafka port (kafka_port + index; 0 stays any
    free port), its WAL directory, its agent id (a configured id gets `-index` past process 0)
    and its own HTTP door on a loopback port the supervisor reads."""
    agent_id = settings.agent_id
    if agent_id and index > 0:
        agent_id = f"{agent_id}-{index}"
    return settings.with_overrides(
        processes=1,
        process_index=index,
        kafka_port=settings.kafka_port + index if settings.kafka_port > 0 else 0,
        advertised_port=settings.advertised_port + index if settings.advertised_port > 0 else 0,
        agent_id=agent_id,
        http_host=CHILD_HTTP_HOST,
        http_port=HTTP_DISABLED if settings.http_port == HTTP_DISABLED else 0,
        # one registry door per host: process 0's (every process answers alike from the store)
        schema_registry_port=settings.schema_registry_port if index == 0 else HTTP_DISABLED,
        rest_proxy_port=settings.rest_proxy_port if index == 0 else HTTP_DISABLED,
        grpc_port=settings.grpc_port if index == 0 else HTTP_DISABLED,  # one per host, too
    )


def holds_wal_entries(directory: str) -> bool:
    """Whether a process directory's WAL has a segment with bytes in it (a clean stop leaves
    none: segments are deleted once everything in them is durable)."""
    wal = os.path.join(directory, WAL_DIRECTORY)
    if not os.path.isdir(wal):
        return False
    return any(
        name.endswith(SEGMENT_SUFFIX) and os.path.getsize(os.path.join(wal, name)) > 0
        for name in os.listdir(wal)
    )


def _exit_code(process: BaseProcess) -> int:
    code = process.exitcode
    assert code is not None, "asked for the exit code of a running process"
    return EXIT_SIGNALLED_BASE - code if code < 0 else code


async def _readable(*fds: int) -> int:
    """Wait until one of `fds` is readable (or at its end); returns that one."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[int] = loop.create_future()

    def seen(fd: int) -> None:
        if not ready.done():
            ready.set_result(fd)

    for fd in fds:
        loop.add_reader(fd, seen, fd)
    try:
        return await ready
    finally:
        for fd in fds:
            loop.remove_reader(fd)


async def drain_surplus(settings: Settings, count: int, body: ProcessBody) -> str | None:
    """Drain the WAL of every process directory beyond the `count` processes about to start
    (an agent recovers it, flushes and hands its leases over, then exits); a problem to report
    if one still holds entries after."""
    if settings.storage == "null":
        return None
    for index in process_indexes_on_disk(settings.data_dir):
        directory = process_directory(settings.data_dir, index)
        if index < count or not holds_wal_entries(directory):
            continue
        print_status(
            "draining",
            f"{directory} holds the WAL of process {index}, beyond --processes {count}: "
            "recovering and flushing it first",
            style="yellow",
        )
        drainer = Child(index, process_settings(settings, index))
        drainer.settings = drainer.settings.with_overrides(
            kafka_port=0,
            http_port=HTTP_DISABLED,
            schema_registry_port=HTTP_DISABLED,
            grpc_port=HTTP_DISABLED,
            rest_proxy_port=HTTP_DISABLED,
        )
        drainer.start(body, drain=True)
        code = await drainer.exited()
        if code != 0 or holds_wal_entries(directory):
            return (
                f"the WAL in {directory} (process {index}) still holds entries after draining "
                f"(exit {code}); start with --processes {index + 1} to serve it, or fix what "
                "the log above says"
            )
    return None


@dataclass
class Child:
    """One agent process of the supervisor, across its restarts."""

    index: int
    settings: Settings
    process: BaseProcess | None = None
    link: Connection | None = None
    banner: AgentBanner | None = None
    started_at_s: float = 0.0
    restarts: int = 0
    backoff_ms: int = PROCESS_RESTART_BACKOFF_MS_MIN

    def start(self, body: ProcessBody, drain: bool = False) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter, no loop inherited
        ours, theirs = context.Pipe(duplex=True)
        process = context.Process(
            target=body,
            args=(self.settings, theirs, drain),
            name=f"streamhouse-process-{self.index}",
        )
        process.start()
        theirs.close()
        self.process, self.link, self.banner = process, ours, None
        self.started_at_s = time.monotonic()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.exitcode is None

    async def serving(self) -> AgentBanner | None:
        """The banner once the process serves; None if it exited first."""
        assert self.process is not None and self.link is not None
        await _readable(self.link.fileno(), self.process.sentinel)
        try:
            if self.link.poll():
                received = self.link.recv()
                assert isinstance(received, AgentBanner), received
                self.banner = received
                return received
        except (EOFError, OSError):
            pass
        await self.exited()
        return None

    async def exited(self) -> int:
        """Wait for the process to exit; its exit code (128 + s after signal s)."""
        assert self.process is not None
        if self.process.exitcode is None:
            await _readable(self.process.sentinel)
        self.process.join()
        if self.link is not None:
            self.link.close()
            self.link = None
        return _exit_code(self.process)

    def view(self) -> ProcessView:
        banner = self.banner
        return ProcessView(
            index=self.index,
            pid=self.process.pid if self.process is not None else None,
            running=self.running and banner is not None,
            agent_id=banner.agent_id if banner else "",
            kafka=banner.kafka if banner else "",
            http=banner.http if banner else None,
            restarts=self.restarts,
        )


class Supervisor:
    """Starts `count` agent processes running `body`, keeps them running, stops them."""

    def __init__(self, settings: Settings, count: int, body: ProcessBody) -> None:
        self._settings = settings
        self._body = body
        self._stop = asyncio.Event()
        shared = self._shared_settings(settings, count)
        self._children = [Child(i, process_settings(shared, i)) for i in range(count)]

    @staticmethod
    def _shared_settings(settings: Settings, count: int) -> Settings:
        """--storage null keeps metadata in memory: one store per process, so several would
        each believe they are alone. They share a fresh SQLite file instead."""
        if settings.storage != "null" or settings.metadata_url:
            return settings
        os.makedirs(settings.data_dir, exist_ok=True)
        path = os.path.abspath(os.path.join(settings.data_dir, NULL_METADATA_FILE))
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path + suffix)
        return settings.with_overrides(metadata_url=f"sqlite:///{path}")

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        problem = await self._start_all()
        if problem is not None:
            await self._stop_all()
            print_status("cannot start", problem)
            return EXIT_CANNOT_START
        try:
            http = await self._open_http()
        except StreamHouseError as error:
            await self._stop_all()
            print_status("cannot start", str(error))
            return EXIT_CANNOT_START
        banners = [child.banner for child in self._children if child.banner is not None]
        if not self._stop.is_set():
            base = None if http is None else f"http://{self._settings.http_host}:{http.port}"
            print_processes_banner(banners, base)
        keepers = [asyncio.create_task(self._keep_running(child)) for child in self._children]
        await self._stop.wait()
        for keeper in keepers:
            keeper.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)
        code = await self._stop_all()
        if http is not None:
            await http.close()
        if code == 0:
            print_status("stopped cleanly", f"{len(self._children)} processes", style="green")
        return code

    async def _start_all(self) -> str | None:
        """Start every process and wait until each serves (or SIGTERM); a problem if one
        exited first."""
        for child in self._children:
            child.start(self._body)
        waiting = asyncio.ensure_future(
            asyncio.gather(*(child.serving() for child in self._children))
        )
        stopped = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait((waiting, stopped), return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not waiting.done():
            waiting.cancel()
            return None
        for child, banner in zip(self._children, waiting.result(), strict=True):
            if banner is None:
                assert child.process is not None
                return (
                    f"process {child.index} exited with code {_exit_code(child.process)} "
                    "before serving (its log is above)"
                )
        return None

    async def _open_http(self) -> AgentHttp | None:
        """The supervisor's HTTP door over every process; None when HTTP is off. Raises
        StreamHouseError when its port cannot be served."""
        if self._settings.http_port == HTTP_DISABLED or self._stop.is_set():
            return None
        return await start_processes_http(
            self._settings.http_host,
            self._settings.http_port,
            __version__,
            lambda: [child.view() for child in self._children],
        )

    async def _keep_running(self, child: Child) -> None:
        """Restart the process each time it exits while the supervisor is not stopping."""
        while True:
            code = await child.exited()
            if self._stop.is_set():
                return
            ran_s = time.monotonic() - child.started_at_s
            if ran_s * 1000 >= PROCESS_STABLE_MS:
                child.backoff_ms = PROCESS_RESTART_BACKOFF_MS_MIN
            print_status(
                f"process {child.index} died",
                f"{child.settings.agent_id or (child.banner and child.banner.agent_id) or ''} "
                f"exited with code {code} after {ran_s:.1f} s; restarting in "
                f"{child.backoff_ms / 1000:.1f} s",
            )
            await asyncio.sleep(child.backoff_ms / 1000)
            child.backoff_ms = min(2 * child.backoff_ms, PROCESS_RESTART_BACKOFF_MS_MAX)
            child.restarts += 1
            child.start(self._body)
            banner = await child.serving()
            if banner is not None:
                print_status(
                    f"process {child.index} restarted",
                    f"{banner.agent_id} kafka {banner.kafka} ({banner.recovered})",
                    style="yellow",
                )

    async def _stop_all(self) -> int:
        """SIGTERM every running process, wait (killing any that outlast the bound); the
        first failing exit code, else 0."""
        running = [child for child in self._children if child.running]
        for child in running:
            assert child.process is not None
            child.process.terminate()
        codes: list[int] = []
        try:
            async with asyncio.timeout(PROCESS_STOP_TIMEOUT_MS / 1000):
                codes = [await child.exited() for child in running]
        except TimeoutError:
            for child in running:
                if child.running and child.process is not None:
                    print_status(
                        f"process {child.index} killed",
                        f"still running {PROCESS_STOP_TIMEOUT_MS} ms after SIGTERM",
                    )
                    child.process.kill()
            codes = [await child.exited() for child in running]
        return next((code for code in codes if code != 0), 0)
