"""Runs the fault proxy's HTTP API and its proxies on one event loop until SIGTERM or SIGINT,
then closes every proxy and returns (exit status 0)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from streamhouse.testing.fault_proxy.api import build_app
from streamhouse.testing.fault_proxy.proxies import Registry

DEFAULT_PORT = 8474  # toxiproxy's


class _Server(uvicorn.Server):
    # uvicorn re-raises a captured SIGTERM after shutdown, which would kill the process before
    # the proxies close; we handle the signals on the loop and return normally instead.
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        stop_signals = (signal.SIGTERM, signal.SIGINT)
        for number in stop_signals:
            loop.add_signal_handler(number, self._request_exit)
        try:
            yield
        finally:
            for number in stop_signals:
                loop.remove_signal_handler(number)

    def _request_exit(self) -> None:
        self.should_exit = True


async def serve(host: str, port: int) -> None:
    registry = Registry()
    config = uvicorn.Config(build_app(registry), host=host, port=port, log_level="warning")
    server = _Server(config)
    try:
        await server.serve()
    finally:
        await registry.close()
    if not server.started:
        raise SystemExit(f"fault proxy: could not serve the API on {host}:{port}")
