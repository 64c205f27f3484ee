"""toxiproxy's HTTP API over a `Registry`: its paths, JSON shapes and status codes (201 made,
204 deleted, 400 bad input, 404 missing, 409 exists), errors as `{"error": ..., "status": ...}`."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from streamhouse.testing.fault_proxy.proxies import ApiError, Proxy, Registry
from streamhouse.testing.fault_proxy.toxics import Toxic

VERSION = "2.12.0-streamhouse"  # the toxiproxy API generation we follow, and who we are
BODY_BYTES_MAX = 1024 * 1024


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


async def _body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > BODY_BYTES_MAX:
        raise ApiError(f"request body over {BODY_BYTES_MAX} bytes", 413)
    try:
        return json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(f"bad request body: not JSON ({error})", 400) from error


async def _apply(
    registry: Registry,
    request: Request,
    operation: Callable[[Any], Awaitable[Proxy | Toxic]],
    status: int = 200,
) -> Response:
    """Read the request's JSON body and answer with what `operation(body)` made or changed."""
    body = await _body(request)
    async with registry.lock:
        return JSONResponse((await operation(body)).as_json(), status_code=status)


def build_app(registry: Registry) -> FastAPI:
    """The API app; every handler runs on the loop that runs the proxies, under the lock."""
    app = FastAPI(title="streamhouse fault proxy", docs_url=None, redoc_url=None)
    _add_error_handlers(app)
    _add_server_routes(app, registry)
    _add_proxy_routes(app, registry)
    _add_toxic_routes(app, registry)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return _error(error.message, error.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        # Unknown paths and methods answer in toxiproxy's error shape too.
        return _error(str(error.detail), error.status_code)


def _add_server_routes(app: FastAPI, registry: Registry) -> None:
    @app.get("/version")
    async def version() -> Response:
        return JSONResponse({"version": VERSION})

    @app.post("/reset")
    async def reset() -> Response:
        async with registry.lock:
            await registry.reset()
        return Response(status_code=204)

    @app.post("/populate")
    async def populate(request: Request) -> Response:
        body = await _body(request)
        async with registry.lock:
            proxies = await registry.populate(body)
            return JSONResponse(
                {"proxies": [proxy.as_json() for proxy in proxies]}, status_code=201
            )


def _add_proxy_routes(app: FastAPI, registry: Registry) -> None:
    @app.get("/proxies")
    async def list_proxies() -> Response:
        async with registry.lock:
            return JSONResponse({name: p.as_json() for name, p in registry.proxies.items()})

    @app.post("/proxies")
    async def create_proxy(request: Request) -> Response:
        return await _apply(registry, request, registry.create, status=201)

    @app.get("/proxies/{proxy}")
    async def show_proxy(proxy: str) -> Response:
        async with registry.lock:
            return JSONResponse(registry.get(proxy).as_json())

    @app.post("/proxies/{proxy}")
    @app.patch("/proxies/{proxy}")
    async def update_proxy(proxy: str, request: Request) -> Response:
        return await _apply(registry, request, lambda body: registry.update(proxy, body))

    @app.delete("/proxies/{proxy}")
    async def delete_proxy(proxy: str) -> Response:
        async with registry.lock:
            await registry.delete(proxy)
        return Response(status_code=204)


def _add_toxic_routes(app: FastAPI, registry: Registry) -> None:
    @app.get("/proxies/{proxy}/toxics")
    async def list_toxics(proxy: str) -> Response:
        async with registry.lock:
            toxics = registry.get(proxy).toxics.values()
            return JSONResponse([toxic.as_json() for toxic in toxics])

    @app.post("/proxies/{proxy}/toxics")
    async def create_toxic(proxy: str, request: Request) -> Response:
        return await _apply(registry, request, lambda body: registry.add_toxic(proxy, body))

    @app.get("/proxies/{proxy}/toxics/{toxic}")
    async def show_toxic(proxy: str, toxic: str) -> Response:
        async with registry.lock:
            return JSONResponse(registry.get_toxic(proxy, toxic).as_json())

    @app.post("/proxies/{proxy}/toxics/{toxic}")
    @app.patch("/proxies/{proxy}/toxics/{toxic}")
    async def update_toxic(proxy: str, toxic: str, request: Request) -> Response:
        return await _apply(
            registry, request, lambda body: registry.update_toxic(proxy, toxic, body)
        )

    @app.delete("/proxies/{proxy}/toxics/{toxic}")
    async def delete_toxic(proxy: str, toxic: str) -> Response:
        async with registry.lock:
            await registry.remove_toxic(proxy, toxic)
        return Response(status_code=204)
