"""The HTTP door's continuous view routes under /api/v1/sql (what `streamctl sql views` calls).

`GET /api/v1/sql/views` lists the caller's org's views with their progress;
`DELETE /api/v1/sql/views/{name}` drops one (204; 404 when unknown). `CREATE MATERIALIZED
VIEW` and `DROP MATERIALIZED VIEW` statements come through `POST /api/v1/sql` (http_sql), whose
service hands them to the same views service. Each call acts in its caller's org with its ACL grant
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
from streamhouse.server.http_sql import SqlRefused
from streamhouse.server.rest_common import caller_of

VIEWS_PATH = "/api/v1/sql/views"


class ContinuousViews(Protocol):
    """The views service as the door calls it (sql/views.py ViewService)."""

    async def views(self, org: str) -> Sequence[Any]: ...  # dataclasses, shown as objects

    async def drop(self, org: str, name: str, grant: Grant, *, if_exists: bool = False) -> bool: ...

    def late_records(self) -> dict[str, int]: ...


def refusal_answer(error: SqlRefused) -> JSONResponse:
    return JSONResponse(
        {"error_code": error.http_status, "message": error.message}, status_code=error.http_status
    )


def install_view_routes(
    app: FastAPI, views: ContinuousViews, auth: HttpAuth, acls: AclService
) -> None:
    """Add the view routes to the agent's app."""

    @app.get(VIEWS_PATH)
    async def list_views(request: Request) -> Response:
        caller = await caller_of(request, auth, acls)
        try:
            shown = await views.views(caller.org)
        except SqlRefused as error:
            return refusal_answer(error)
        return JSONResponse({"views": [asdict(view) for view in shown]})

    @app.delete(VIEWS_PATH + "/{name}")
    async def drop_view(name: str, request: Request) -> Response:
        caller = await caller_of(request, auth, acls)
        try:
            await views.drop(caller.org, name, caller.grant)
        except SqlRefused as error:
            return refusal_answer(error)
        return Response(status_code=204)


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
