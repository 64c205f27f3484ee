"""The agent's HTTP door: liveness, readiness and Prometheus metrics (uvicorn in the agent's loop).

`/health` answers 200 while the process serves HTTP at all. `/ready` answers 200 only when the
agent can take traffic (recovered, Kafka listener accepting, metadata store reachable, no
background service failed, not shutting down) and 503 with the reasons otherwise, so load
balancers and orchestrators route around it. `/metrics` is Prometheus' text format.
`/api/v1/topics/{name}/partitions` answers each partition's storage as the admin service has
it (log start, durable end, bytes in the bucket, objects) for the caller's org's topic `name`
(another org's topic is as unknown as a missing one); a refusal carries Kafka's error code and
name (404 for an unknown topic, 503 when the metadata store fails). With authentication
required, /api/v1 asks for an API key as HTTP Basic credentials (http_auth) and answers 401
without one; /health, /ready and /metrics stay open for probes and scrapers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from streamhouse.engine.admin import PartitionStorage
from streamhouse.errors import ErrorCode, StorageError, StreamHouseError, UnknownTopicOrPartition
from streamhouse.server.http_auth import CHALLENGE_HEADERS, HttpAuth, Unauthenticated
from streamhouse.tenancy.names import scoped

READINESS_PROBE_TIMEOUT_MS = 2_000
HTTP_SHUTDOWN_TIMEOUT_MS = 5_000
HTTP_BACKLOG_MAX = 128
HTTP_START_POLL_MS = 5
HTTP_START_POLLS_MAX = 2_000


@dataclass(frozen=True)
class AgentIdentity:
    """What /health reports about the agent."""

    agent_id: str
    version: str
    kafka_address: str


ReadinessProbe = Callable[[], Awaitable[list[str]]]
"""Returns why the agent cannot take traffic; an empty list means ready."""

TopicStorage = Callable[[str], Awaitable[list[PartitionStorage]]]
"""A topic's partitions as stored (the admin service's describe_storage)."""


def build_app(
    identity: AgentIdentity,
    readiness: ReadinessProbe,
    registry: CollectorRegistry,
    topic_storage: TopicStorage | None = None,
    routes: Sequence[Callable[[FastAPI], None]] = (),
    auth: HttpAuth | None = None,
) -> FastAPI:
    """The app; `routes` add more of /api/v1 (orgs and keys); `auth`: who calls /api/v1 (None:
    authentication is off)."""
    app = FastAPI(title="StreamHouse agent", version=identity.version, docs_url=None)
    for install in routes:
        install(app)

    @app.exception_handler(Unauthenticated)
    async def unauthenticated(_: Request, error: Unauthenticated) -> JSONResponse:
        body = {"error": "UNAUTHENTICATED", "message": str(error)}
        return JSONResponse(body, status_code=401, headers=CHALLENGE_HEADERS)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "agent_id": identity.agent_id, "version": identity.version}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        try:
            async with asyncio.timeout(READINESS_PROBE_TIMEOUT_MS / 1000):
                problems = await readiness()
        except TimeoutError:
            problems = [f"readiness probe took over {READINESS_PROBE_TIMEOUT_MS} ms"]
        body = {
            "status": "ready" if not problems else "not ready",
            "problems": problems,
            "kafka": identity.kafka_address,
        }
        return JSONResponse(body, status_code=503 if problems else 200)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    if topic_storage is not None:
        _topic_routes(app, topic_storage, auth or HttpAuth(None))
    return app


def _topic_routes(app: FastAPI, storage: TopicStorage, auth: HttpAuth) -> None:
    @app.get("/api/v1/topics/{name}/partitions")
    async def topic_partitions(name: str, request: Request) -> JSONResponse:
        org = await auth.org(request)
        try:
            partitions = await storage(_internal_topic(org, name))
        except UnknownTopicOrPartition:  # named as the caller knows it, not as kept inside
            return _refusal(UnknownTopicOrPartition(f"topic {name!r} does not exist"))
        except StreamHouseError as error:
            return _refusal(error)
        body = {"topic": name, "partitions": [asdict(shown) for shown in partitions]}
        return JSONResponse(body)


def _internal_topic(org: str, name: str) -> str:
    """The org's topic `name` as the engine keeps it; a default-org name that would read as
    another org's names no topic of the caller's, so it is as unknown as a missing one."""
    try:
        return scoped(org, name)
    except ValueError:
        raise UnknownTopicOrPartition(name) from None


def _refusal(error: StreamHouseError) -> JSONResponse:
    """A refused API call: Kafka's error code and name, and an HTTP status to match."""
    status = 400
    if isinstance(error, UnknownTopicOrPartition):
        status = 404
    elif isinstance(error, StorageError):
        status = 503
    body = {"error_code": int(error.code), "error": error.code.name, "message": str(error)}
    return JSONResponse(body, status_code=status)


class HttpListenFailed(StreamHouseError):
    """The HTTP port could not be bound."""

    code = ErrorCode.UNKNOWN_SERVER_ERROR


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the agent owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpListener:
    """Runs the app under uvicorn inside the running event loop."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = _EmbeddedServer(config)
        self._serving: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> int:
        """Bind and serve; returns the bound port (useful when `port` is 0)."""
        sock = _bound_socket(host, port)
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]), name="http")
        for _ in range(HTTP_START_POLLS_MAX):
            if self._server.started or self._serving.done():
                break
            await asyncio.sleep(HTTP_START_POLL_MS / 1000)
        if not self._server.started:
            await self.close()
            raise HttpListenFailed(f"the HTTP server on {host}:{port} did not start")
        bound: int = sock.getsockname()[1]
        return bound

    async def close(self) -> None:
        if self._serving is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HTTP_SHUTDOWN_TIMEOUT_MS / 1000):
                await asyncio.shield(self._serving)
        self._server.force_exit = True
        await self._serving


def _bound_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise HttpListenFailed(
            f"cannot listen for HTTP on {host}:{port}: {error.strerror}"
        ) from None
    sock.listen(HTTP_BACKLOG_MAX)
    sock.setblocking(False)
    return sock


@dataclass
class AgentHttp:
    """The running HTTP door of an agent."""

    listener: HttpListener
    port: int

    async def close(self) -> None:
        await self.listener.close()


async def start_agent_http(
    host: str,
    port: int,
    identity: AgentIdentity,
    readiness: ReadinessProbe,
    registry: CollectorRegistry,
    topic_storage: TopicStorage | None = None,
    routes: Sequence[Callable[[FastAPI], None]] = (),
    auth: HttpAuth | None = None,
) -> AgentHttp:
    """Serve health, readiness, metrics and the API on `host:port` (0: any free port)."""
    app = build_app(identity, readiness, registry, topic_storage, routes, auth)
    listener = HttpListener(app)
    bound = await listener.start(host, port)
    return AgentHttp(listener, bound)
