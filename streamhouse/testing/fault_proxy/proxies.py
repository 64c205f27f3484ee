"""The proxies a fault-proxy server runs: listening, accepting, connecting upstream, and the
toxiproxy operations on them (create, update, populate, reset, toxics), raising `ApiError`s
with toxiproxy's status codes for the HTTP layer to answer."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, TypeVar

from streamhouse.testing.fault_proxy.links import Connection
from streamhouse.testing.fault_proxy.toxics import STREAMS, BadInput, Toxic, toxic_from_json

CONNECTIONS_PER_PROXY_MAX = 1024  # beyond this a new client is closed at once
UPSTREAM_CONNECT_TIMEOUT_S = 5.0
DEFAULT_LISTEN = "127.0.0.1:0"  # toxiproxy's default is every interface; loopback is safer


class ApiError(Exception):
    """A refusal the API answers with `status` and `{"error": message, "status": status}`."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def split_address(text: Any, what: str) -> tuple[str, int]:
    """`host:port` (IPv6 hosts in brackets) into its parts; ApiError 400 when malformed."""
    if not isinstance(text, str) or ":" not in text:
        raise ApiError(f"{what} must be a string 'host:port', got {text!r}", 400)
    host, _, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ApiError(f"{what} has no valid port: {text!r}", 400)
    return host, int(port_text)


def _join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Proxy:
    """One listening address forwarding to one upstream, with its toxics and connections."""

    def __init__(self, name: str, listen: str, upstream: str, rng: random.Random) -> None:
        self.name, self.listen, self.upstream = name, listen, upstream
        self.enabled = False
        self.toxics: dict[str, Toxic] = {}
        self._connections: set[Connection] = set()
        self._server: asyncio.Server | None = None
        self._rng = rng

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [toxic.as_json() for toxic in self.toxics.values()],
        }

    async def start(self) -> None:
        """Listen; with port 0 the OS picks one and `listen` becomes the real address, which
        later restarts reuse (as toxiproxy does). ApiError 409 if the address is taken."""
        host, port = split_address(self.listen, "listen")
        try:
            server = await asyncio.start_server(self._accept, host or None, port)
        except OSError as error:
            raise ApiError(f"cannot listen on {self.listen}: {error.strerror}", 409) from error
        # The bound address, not the name asked for (as toxiproxy): "localhost:0" may resolve
        # to several addresses, and a restart must bind exactly this one again.
        bound_host, bound_port = server.sockets[0].getsockname()[:2]
        self._server, self.enabled = server, True
        self.listen = _join_address(bound_host, bound_port)

    async def stop(self) -> None:
        """Stop listening (new connections are refused) and close every connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for connection in list(self._connections):
            connection.close()
        self.enabled = False

    def chain(self, stream: str) -> list[Toxic]:
        return [toxic for toxic in self.toxics.values() if toxic.stream == stream]

    async def apply_toxics(self, streams: tuple[str, ...] = STREAMS) -> None:
        """Rebuild the chains of every open connection (toxics apply to existing ones too)."""
        for connection in list(self._connections):
            for stream in streams:
                if not connection.closed:
                    await connection.links[stream].rebuild(self.chain(stream))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= CONNECTIONS_PER_PROXY_MAX:
            writer.close()
            return
        host, port = split_address(self.upstream, "upstream")
        try:
            upstream = await asyncio.wait_for(
                asyncio.open_connection(host, port), UPSTREAM_CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            writer.close()  # as toxiproxy: an unreachable upstream closes the client
            return
        if self._server is None:  # disabled while we were connecting
            writer.close()
            upstream[1].close()
            return
        connection = Connection((reader, writer), upstream, self._connections.discard, self._rng)
        self._connections.add(connection)
        connection.start({stream: self.chain(stream) for stream in STREAMS})


class Registry:
    """Every proxy of one server by name; all operations hold one lock, so API requests that
    arrive together apply one after another."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.proxies: dict[str, Proxy] = {}
        self.lock = asyncio.Lock()
        self._rng = rng or random.Random()

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ApiError("proxy not found", 404)
        return proxy

    async def create(self, body: Any) -> Proxy:
        name, listen, upstream, enabled = _proxy_fields(body)
        if name in self.proxies:
            raise ApiError("proxy already exists", 409)
        proxy = Proxy(name, listen, upstream, self._rng)
        if enabled:
            await proxy.start()
        self.proxies[name] = proxy
        return proxy

    async def populate(self, body: Any) -> list[Proxy]:
        """Create or replace each proxy given; one whose listen and upstream match is kept."""
        entries = body.get("proxies") if isinstance(body, dict) else body
        if not isinstance(entries, list):
            raise ApiError("bad request body: populate takes a JSON array of proxies", 400)
        checked = [_proxy_fields(entry) for entry in entries]  # all valid before any change
        populated = []
        for name, listen, upstream, enabled in checked:
            existing = self.proxies.get(name)
            if existing is not None and (existing.listen, existing.upstream) == (listen, upstream):
                populated.append(existing)
                continue
            if existing is not None:
                await self.delete(name)
            populated.append(await self.create(_fields_json(name, listen, upstream, enabled)))
        return populated

    async def update(self, name: str, body: Any) -> Proxy:
        """Change listen, upstream or enabled; a new address restarts the proxy."""
        proxy = self.get(name)
        if not isinstance(body, dict):
            raise ApiError("bad request body: a proxy update is a JSON object", 400)
        listen = body.get("listen", proxy.listen)
        upstream = body.get("upstream", proxy.upstream)
        enabled = body.get("enabled", proxy.enabled)
        split_address(listen, "listen")
        split_address(upstream, "upstream")
        if not isinstance(enabled, bool):
            raise ApiError("enabled must be true or false", 400)
        if proxy.enabled and (not enabled or (listen, upstream) != (proxy.listen, proxy.upstream)):
            await proxy.stop()
        proxy.listen, proxy.upstream = listen, upstream
        if enabled and not proxy.enabled:
            await proxy.start()
        return proxy

    async def delete(self, name: str) -> None:
        await self.get(name).stop()
        del self.proxies[name]

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        for proxy in self.proxies.values():
            proxy.toxics.clear()
            await proxy.apply_toxics()
            if not proxy.enabled:
                await proxy.start()

    async def close(self) -> None:
        for proxy in self.proxies.values():
            await proxy.stop()

    async def add_toxic(self, proxy_name: str, body: Any) -> Toxic:
        proxy = self.get(proxy_name)
        toxic = _checked(toxic_from_json, body)
        if toxic.name in proxy.toxics:
            raise ApiError("toxic already exists", 409)
        proxy.toxics[toxic.name] = toxic
        await proxy.apply_toxics((toxic.stream,))
        return toxic

    def get_toxic(self, proxy_name: str, toxic_name: str) -> Toxic:
        toxic = self.get(proxy_name).toxics.get(toxic_name)
        if toxic is None:
            raise ApiError("toxic not found", 404)
        return toxic

    async def update_toxic(self, proxy_name: str, toxic_name: str, body: Any) -> Toxic:
        toxic = self.get_toxic(proxy_name, toxic_name)
        if not isinstance(body, dict):
            raise ApiError("bad request body: a toxic update is a JSON object", 400)
        _checked(toxic.update, body)
        await self.get(proxy_name).apply_toxics((toxic.stream,))
        return toxic

    async def remove_toxic(self, proxy_name: str, toxic_name: str) -> None:
        toxic = self.get_toxic(proxy_name, toxic_name)
        proxy = self.get(proxy_name)
        del proxy.toxics[toxic_name]
        await proxy.apply_toxics((toxic.stream,))


_Result = TypeVar("_Result")


def _checked(function: Callable[[Any], _Result], body: Any) -> _Result:
    try:
        return function(body)
    except BadInput as error:
        raise ApiError(str(error), 400) from error


def _proxy_fields(body: Any) -> tuple[str, str, str, bool]:
    if not isinstance(body, dict):
        raise ApiError("bad request body: a proxy is a JSON object", 400)
    name, upstream = body.get("name"), body.get("upstream")
    listen = body.get("listen") or DEFAULT_LISTEN
    enabled = body.get("enabled", True)
    if not isinstance(name, str) or not name:
        raise ApiError("missing required field: name", 400)
    if not upstream:
        raise ApiError("missing required field: upstream", 400)
    split_address(listen, "listen")
    split_address(upstream, "upstream")
    if not isinstance(enabled, bool):
        raise ApiError("enabled must be true or false", 400)
    return name, listen, upstream, enabled


def _fields_json(name: str, listen: str, upstream: str, enabled: bool) -> dict[str, Any]:
    return {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
