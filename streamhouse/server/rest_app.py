"""The REST proxy door: Confluent REST Proxy's API (v2 and v3) over the engine services, served
under uvicorn in the agent's loop (default 127.0.0.1:8082, OpenAPI at /docs).

This module builds the app and runs it: it installs the v2 and v3 routes, answers every
refusal in Confluent's shape `{"error_code": ..., "message": ...}` (a 401 with
CHALLENGE_HEADERS when credentials are required and missing; a body FastAPI cannot match to a
route's parameters is a 422; an unknown path a 404), and serves each route with or without a
trailing slash. The routes only translate: every rule is an engine service's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from streamhouse.server.http_api import HttpListener
from streamhouse.server.http_auth import CHALLENGE_HEADERS, Unauthenticated
from streamhouse.server.rest_common import (
    UNAUTHENTICATED,
    UNPROCESSABLE,
    RestError,
    RestServices,
)
from streamhouse.server.rest_v2 import install_v2
from streamhouse.server.rest_v2_consumers import install_v2_consumers
from streamhouse.server.rest_v3 import install_v3
from streamhouse.server.rest_v3_groups import install_v3_groups
from streamhouse.server.rest_v3_records import install_v3_records

REST_DESCRIPTION = """Confluent REST Proxy API v2 and v3 over StreamHouse.

**Ack modes.** Every produce route (v2 `POST /topics/{topic}`, `POST
/topics/{topic}/partitions/{partition}`, v3 `POST .../topics/{topic}/records`) takes the
query parameter `ack=none|leader|durable` (or the header `X-Streamhouse-Ack`; the query
parameter wins). `durable` (the default) answers once the records are in the object store
and committed in metadata; `leader` once the agent's write-ahead log is fsynced; `none` once
they are queued (the offsets are still reported).

**Auth.** With authentication required, send an API key as HTTP Basic credentials (key id
as user name, secret as password); each request acts in the key's org and is checked
against its ACLs.
"""

Scope = MutableMapping[str, Any]
Asgi = Callable[[Scope, Any, Any], Awaitable[None]]


class TrailingSlashes:
    """ASGI middleware: `/topics/` is served as `/topics` (no redirect, which POST bodies and
    some clients do not survive)."""

    def __init__(self, app: Asgi) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope.get("type") == "http" and len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/") or "/"}
            scope["raw_path"] = scope["path"].encode()
        await self._app(scope, receive, send)


def build_rest_app(services: RestServices) -> FastAPI:
    """The door's app (OpenAPI at /docs)."""
    app = FastAPI(
        title="StreamHouse REST proxy",
        description=REST_DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        redirect_slashes=False,
        dependencies=[Depends(services.authenticate)],
    )
    _install_error_answers(app)
    install_v2(app, services)
    install_v2_consumers(app, services)
    install_v3(app, services)
    install_v3_groups(app, services)
    install_v3_records(app, services)
    app.add_middleware(TrailingSlashes)
    return app


def _refusal(status: int, error_code: int, message: str, **headers: str) -> JSONResponse:
    body = {"error_code": error_code, "message": message}
    return JSONResponse(body, status_code=status, headers=headers or None)


def _install_error_answers(app: FastAPI) -> None:
    @app.exception_handler(RestError)
    async def refused(_: Request, error: RestError) -> JSONResponse:
        return _refusal(error.status, error.error_code, error.message)

    @app.exception_handler(Unauthenticated)
    async def unauthenticated(_: Request, error: Unauthenticated) -> JSONResponse:
        return _refusal(401, UNAUTHENTICATED, str(error), **CHALLENGE_HEADERS)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return _refusal(error.status_code, error.status_code, f"HTTP {error.detail}")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', ()))}: {item.get('msg', item)}"
            for item in error.errors()
        )
        return _refusal(UNPROCESSABLE, UNPROCESSABLE, problems)


@dataclass
class RestDoor:
    """The running REST proxy door of an agent."""

    listener: HttpListener
    port: int

    async def close(self) -> None:
        await self.listener.close()


async def start_rest_door(host: str, port: int, services: RestServices) -> RestDoor:
    """Serve the REST proxy on `host:port` (0: any free port)."""
    listener = HttpListener(build_rest_app(services))
    bound = await listener.start(host, port)
    return RestDoor(listener, bound)
