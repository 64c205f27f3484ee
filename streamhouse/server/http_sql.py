"""`POST /api/v1/sql` on the agent's HTTP door: a query over the caller's topics.

The body is `{"sql": "..."}` (at most SQL_BODY_BYTES_MAX bytes, else 413; not JSON, not an
object or no text: 400). The caller is found as for the REST door (rest_common.caller_of: its
org and ACL grant; 401 without good credentials when authentication is required). The answer is
JSON by default, `{"columns": [{"name", "type"}], "rows": [[...]]}` with timestamps and dates as
ISO-8601 text, bytes as base64 and NaN / infinities as text; with `Accept:
application/vnd.apache.arrow.stream` it is the table as an Arrow IPC stream. A refusal answers
the query service's status with `{"error_code": <status>, "message": ...}`.

The door knows the query service only by the `SqlQueries` protocol (the service lives on the
floor above, streamhouse/sql); its refusals are `SqlRefused`s.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import decimal
import json
import math
from typing import Any, Protocol

import pyarrow as pa
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from streamhouse.engine.acls import AclService, Grant
from streamhouse.server.http_auth import HttpAuth
from streamhouse.server.rest_common import RestError, body_bytes, caller_of, json_object

SQL_BODY_BYTES_MAX = 1024 * 1024
ARROW_STREAM = "application/vnd.apache.arrow.stream"


class SqlRefused(Exception):
    """A query the service refused: the HTTP status to answer and why."""

    def __init__(self, http_status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message


class SqlAnswer(Protocol):
    @property
    def table(self) -> pa.Table: ...


class SqlQueries(Protocol):
    """What the door asks of the query service (streamhouse.sql.service.SqlService)."""

    async def query(self, text: str, grant: Grant | None = None, *, org: str = ...) -> SqlAnswer:
        """The answer, or SqlRefused."""
        ...


def install_sql_route(app: FastAPI, queries: SqlQueries, auth: HttpAuth, acls: AclService) -> None:
    @app.post("/api/v1/sql")
    async def sql(request: Request) -> Response:
        caller = await caller_of(request, auth, acls)
        try:
            text = _sql_text(await body_bytes(request, SQL_BODY_BYTES_MAX))
            answer = await queries.query(text, caller.grant, org=caller.org)
        except RestError as error:
            return _refusal(error.status, error.message)
        except SqlRefused as refused:
            return _refusal(refused.http_status, refused.message)
        if ARROW_STREAM in request.headers.get("accept", ""):
            return Response(
                await asyncio.to_thread(arrow_stream, answer.table), media_type=ARROW_STREAM
            )
        body = await asyncio.to_thread(json_answer, answer.table)
        return Response(body, media_type="application/json")


def _sql_text(raw: bytes) -> str:
    document = json_object(raw, status=400)
    text = document.get("sql")
    if not isinstance(text, str) or not text.strip():
        raise RestError(400, 400, 'the body must be {"sql": "<query text>"}')
    return text


def _refusal(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error_code": status, "message": message}, status_code=status)


def arrow_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def json_answer(table: pa.Table) -> bytes:
    columns = [{"name": f.name, "type": str(f.type)} for f in table.schema]
    rows = [[_json_value(value) for value in row.values()] for row in table.to_pylist()]
    return json.dumps({"columns": columns, "rows": rows}, allow_nan=False).encode()


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.standard_b64encode(value).decode("ascii")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("inf", "Infinity").replace("nan", "NaN")
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # a UUID, an interval of months, …
