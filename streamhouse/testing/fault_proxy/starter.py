"""`running_fault_proxy()`: a toxiproxy server for a test, driven through toxiproxy-python.
Ours is started as a subprocess, unless TOXIPROXY_URL names a real toxiproxy to use instead."""

from __future__ import annotations

import os
import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import NotFound
from toxiproxy.proxy import Proxy

from streamhouse.testing.network import LOOPBACK
from streamhouse.testing.server_process import start_http_server, stop_process

TOXIPROXY_URL_ENV = "TOXIPROXY_URL"


@dataclass
class FaultProxy:
    """A toxiproxy API at `url` and a client pointed at it. toxiproxy-python keeps its server
    address on the class (APIConsumer), so one FaultProxy at a time per process."""

    url: str  # http://host:port of the API
    real: bool  # True when TOXIPROXY_URL named a real toxiproxy server
    client: toxiproxy.Toxiproxy  # APIConsumer already pointed at url
    created: list[str] = field(default_factory=list)  # proxy names made through proxy()

    def proxy(self, name: str, upstream: str) -> Proxy:
        """A new proxy on a loopback port the server picks; its `.listen` is the real address."""
        proxy = self.client.create(upstream=upstream, name=name, listen=f"{LOOPBACK}:0")
        self.created.append(name)
        return proxy

    def listen_port(self, proxy: Proxy) -> int:
        return int(str(proxy.listen).rpartition(":")[2])

    # toxiproxy-python 0.1.1 has no call for these documented endpoints; they go through its
    # own APIConsumer, so the status checks it does apply.

    def update_toxic(
        self,
        proxy: Proxy,
        toxic_name: str,
        attributes: dict[str, int],
        toxicity: float | None = None,
    ) -> dict[str, Any]:
        """POST /proxies/{proxy}/toxics/{toxic}: change a live toxic's attributes (merged)."""
        body: dict[str, Any] = {"attributes": attributes}
        if toxicity is not None:
            body["toxicity"] = toxicity
        path = f"/proxies/{proxy.name}/toxics/{toxic_name}"
        answer: dict[str, Any] = APIConsumer.post(path, json=body).json()
        return answer

    def populate(self, proxies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST /populate (toxiproxy-python's populate() creates proxies one by one instead)."""
        answer = APIConsumer.post("/populate", json=proxies)
        _raise_for_other_errors(answer)
        populated: list[dict[str, Any]] = answer.json()["proxies"]
        return populated

    def destroy_created(self) -> None:
        for name in self.created:
            with suppress(NotFound):
                APIConsumer.delete(f"/proxies/{name}")
        self.created.clear()


def _raise_for_other_errors(answer: requests.Response) -> None:
    # toxiproxy-python raises only for 400, 404 and 409 and passes any other failure on.
    if answer.status_code >= 400:
        raise RuntimeError(f"toxiproxy answered {answer.status_code}: {answer.text}")


@contextmanager
def running_fault_proxy(log_dir: Path | None = None) -> Iterator[FaultProxy]:
    """A FaultProxy until the block ends. With TOXIPROXY_URL set, that server, and the proxies
    made through `proxy()` are destroyed at the end; otherwise our server as a subprocess (log
    under `log_dir` if given), all its proxies destroyed and the process stopped at the end."""
    real_url = os.environ.get(TOXIPROXY_URL_ENV)
    process = None
    if real_url:
        url = real_url.rstrip("/")
    else:
        process, url = start_http_server("fault-proxy", _command, log_dir, probe_path="/version")
    previous_address = (APIConsumer.host, APIConsumer.port)
    fault_proxy = FaultProxy(url=url, real=bool(real_url), client=_client(url))
    try:
        yield fault_proxy
    finally:
        try:
            _clean_up(fault_proxy)
        finally:
            APIConsumer.host, APIConsumer.port = previous_address
            if process is not None:
                stop_process(process)


def _client(url: str) -> toxiproxy.Toxiproxy:
    parts = urllib.parse.urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"{TOXIPROXY_URL_ENV} must look like http://host:port, got {url!r}")
    client = toxiproxy.Toxiproxy()
    client.update_api_consumer(parts.hostname, parts.port)
    return client


def _clean_up(fault_proxy: FaultProxy) -> None:
    if fault_proxy.real:
        fault_proxy.destroy_created()
        return
    # Our own server goes away next; a crashed one has nothing left to destroy.
    with suppress(requests.RequestException):
        fault_proxy.client.destroy_all()


def _command(port: int) -> list[str]:
    module = "streamhouse.testing.fault_proxy"
    return [sys.executable, "-m", module, "--host", LOOPBACK, "--port", str(port)]
