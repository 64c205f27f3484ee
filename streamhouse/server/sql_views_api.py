"""The HTTP door's continuous view routes under /api/v1/sql (what `streamctl sql views` calls).

`GET /api/v1/sql/views` lists the caller's org's views with their progress;
`DELETE /api/v1/sql/views/{name}` drops one (204; 404 when unknown). `CREATE MATERIALIZED
VIEW` and `DROP MATERIALIZED VIEW` statements come through `POST /api/v1/sql` and are handed
to the same service (`view_statement`). Each call acts in its caller's org with its ACL grant
(as the REST door's). The views service lives in sql/, above this floor: it is reached
through the ContinuousViews protocol, wired by the composition root. A refusal answers its
status with `{"error_code": <status>, "message": ...}`. /metrics gets each view's late records.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any, Protocol

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from streamhouse.engine.acls import AclService, Grant
from streamhouse.server.http_auth import HttpAuth
from streamhouse.server.rest_common import caller_of

SQL_PATH = "/api/v1/sql"
VIEWS_PATH = SQL_PATH + "/views"


class HttpRefusal(Exception):
    """A call refused with `http_status` and a message the caller can act on."""

    def __init__(self, http_status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message


class ContinuousViews(Protocol):
    """The views service as the door calls it (sql/views.py ViewService)."""

    async def execute(self, text: str, org: str, grant: Grant) -> dict[str, Any]: ...

    async def views(self, org: str) -> Sequence[Any]: ...  # dataclasses, shown as objects

    async def drop(self, org: str, name: str, grant: Grant, *, if_exists: bool = False) -> bool: ...

    def late_records(self) -> dict[str, int]: ...


def refusal_answer(error: HttpRefusal) -> JSONResponse:
    return JSONResponse(
        {"error_code": error.http_status, "message": error.message}, status_code=error.http_status
    )


def install_view_routes(
    app: FastAPI,
    views: ContinuousViews,
    auth: HttpAuth,
    acls: AclService,
    *,
    serve_statements: bool = True,
) -> None:
    """Add the view routes to the agent's app; `serve_statements`: POST /api/v1/sql too, for
    view statements only (until the batch query door takes that route and hands them here)."""
    if serve_statements:

        @app.post(SQL_PATH)
        async def statement(request: Request) -> Response:
            body = await request.json()
            text = body.get("sql") if isinstance(body, dict) else None
            if not isinstance(text, str):
                return refusal_answer(HttpRefusal(400, 'the body is {"sql": "..."}'))
            return await view_statement(views, text, request, auth, acls)

    @app.get(VIEWS_PATH)
    async def list_views(request: Request) -> Response:
        caller = await caller_of(request, auth, acls)
        try:
            shown = await views.views(caller.org)
        except HttpRefusal as error:
            return refusal_answer(error)
        return JSONResponse({"views": [asdict(view) for view in shown]})

    @app.delete(VIEWS_PATH + "/{name}")
    async def drop_view(name: str, request: Request) -> Response:
        caller = await caller_of(request, auth, acls)
        try:
            await views.drop(caller.org, name, caller.grant)
        except HttpRefusal as error:
            return refusal_answer(error)
        return Response(status_code=204)


async def view_statement(
    views: ContinuousViews, text: str, request: Request, auth: HttpAuth, acls: AclService
) -> JSONResponse:
    """A CREATE / DROP MATERIALIZED VIEW statement's answer, in POST /api/v1/sql's shape."""
    caller = await caller_of(request, auth, acls)
    try:
        done = await views.execute(text, caller.org, caller.grant)
    except HttpRefusal as error:
        return refusal_answer(error)
    columns = [{"name": name, "type": type(value).__name__} for name, value in done.items()]
    return JSONResponse({"columns": columns, "rows": [list(done.values())]})


class ViewsCollector(Collector):
    """Late records of the views this agent runs, as a Prometheus counter."""

    def __init__(self, views: ContinuousViews) -> None:
        self._views = views

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "streamhouse_view_late_records",
            "Records that arrived for windows a continuous view had already emitted.",
            labels=["view"],
        )
        for name, count in sorted(self._views.late_records().items()):
            family.add_metric([name], count)
        yield family
