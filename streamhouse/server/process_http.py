"""The HTTP door of `--processes N`: /health, /ready and /metrics for every agent process.

The supervisor serves them from what each process's own HTTP door (on a loopback port) says:
`/health` is 200 while the supervisor serves and lists every process (its pid, agent id, Kafka
address, whether it runs, how often it was restarted); `/ready` is 200 only when every process
runs and its own /ready is 200, else 503 with each process's reasons; `/metrics` is every
process's metrics, each sample labelled `process="<index>"`, plus the supervisor's own
`streamhouse_process_up` and `streamhouse_process_restarts_total`. `/api/v1/...` is asked of
the first process that runs (every process answers it alike, from the metadata store) and its
answer passed on; so is `POST /api/v1/sql` (its body, credentials and Accept header too: any
process reads every partition, forwarding to the leader, so any one answers the query).
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample

from streamhouse.server.http_api import AgentHttp, HttpListener
from streamhouse.server.http_sql import SQL_BODY_BYTES_MAX
from streamhouse.server.rest_common import RestError, body_bytes

PROCESS_PROBE_TIMEOUT_MS = 2_000
PROCESS_LABEL = "process"


@dataclass(frozen=True)
class ProcessView:
    """What the supervisor knows of one agent process."""

    index: int
    pid: int | None
    running: bool  # started and serving
    agent_id: str
    kafka: str  # advertised host:port; empty until it serves
    http: str | None  # base URL of its own HTTP door
    restarts: int


ProcessesView = Callable[[], list[ProcessView]]


def _get(url: str) -> tuple[int, str]:
    """Status and body of a GET (blocking); 503 and the reason when it cannot be asked."""
    try:
        with urllib.request.urlopen(url, timeout=PROCESS_PROBE_TIMEOUT_MS / 1000) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 503, json.dumps({"problems": [f"{url} did not answer: {error}"]})


async def _ask(url: str) -> tuple[int, str]:
    return await asyncio.to_thread(_get, url)


PASSED_HEADERS = ("authorization", "accept", "content-type")
SQL_FORWARD_TIMEOUT_MS = 120_000  # above any sql_query_timeout_ms a process is likely to have


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
    """Status, body and content type of a POST (blocking); 503 when it cannot be asked."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=SQL_FORWARD_TIMEOUT_MS / 1000) as answer:
            return answer.status, answer.read(), answer.headers.get("content-type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("content-type", "")
    except OSError as error:
        text = json.dumps({"error_code": 503, "message": f"{url} did not answer: {error}"})
        return 503, text.encode(), "application/json"


async def _process_problems(view: ProcessView) -> list[str]:
    """Why one process cannot take traffic; empty when it can."""
    if not view.running or view.http is None:
        return [f"process {view.index} is not running (restarts: {view.restarts})"]
    status, body = await _ask(view.http + "/ready")
    if status == 200:
        return []
    try:
        problems = list(json.loads(body).get("problems") or [f"/ready answered {status}"])
    except (ValueError, AttributeError):
        problems = [f"/ready answered {status}"]
    return [f"process {view.index} ({view.agent_id}): {problem}" for problem in problems]


def labelled(text: str, index: int) -> Iterator[Metric]:
    """The metric families of one process's exposition, each sample labelled with it."""
    for family in text_string_to_metric_families(text):
        family.samples = [
            Sample(s.name, {**s.labels, PROCESS_LABEL: str(index)}, s.value, s.timestamp)
            for s in family.samples
        ]
        yield family


def merged(families: Iterable[Metric]) -> list[Metric]:
    """Families of one name (one per process) as one family holding every sample."""
    by_name: dict[str, Metric] = {}
    for family in families:
        if family.name in by_name:
            by_name[family.name].samples.extend(family.samples)
        else:
            by_name[family.name] = family
    return list(by_name.values())


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _supervisor_families(views: list[ProcessView]) -> list[Metric]:
    up = GaugeMetricFamily(
        "streamhouse_process_up", "1 while the agent process serves", labels=[PROCESS_LABEL]
    )
    restarts = CounterMetricFamily(
        "streamhouse_process_restarts",
        "Times the supervisor restarted the agent process after it died",
        labels=[PROCESS_LABEL],
    )
    for view in views:
        up.add_metric([str(view.index)], 1 if view.running else 0)
        restarts.add_metric([str(view.index)], view.restarts)
    return [up, restarts]


async def _metrics_text(views: list[ProcessView]) -> bytes:
    served = [view for view in views if view.running and view.http is not None]
    answers = await asyncio.gather(*(_ask(f"{view.http}/metrics") for view in served))
    families = _supervisor_families(views)
    for view, (status, text) in zip(served, answers, strict=True):
        if status == 200:
            families += labelled(text, view.index)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(merged(families)))
    return generate_latest(registry)


def build_processes_app(version: str, processes: ProcessesView) -> FastAPI:
    app = FastAPI(title="StreamHouse agent processes", version=version, docs_url=None)

    @app.get("/health")
    async def health() -> dict[str, object]:
        views = processes()
        return {"status": "ok", "version": version, "processes": [asdict(v) for v in views]}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        views = processes()
        found = await asyncio.gather(*(_process_problems(view) for view in views))
        problems = [problem for some in found for problem in some]
        body = {
            "status": "ready" if not problems else "not ready",
            "problems": problems,
            "kafka": [view.kafka for view in views],
        }
        return JSONResponse(body, status_code=503 if problems else 200)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(await _metrics_text(processes()), media_type=CONTENT_TYPE_LATEST)

    @app.post("/api/v1/sql")
    async def sql(request: Request) -> Response:
        served = [view for view in processes() if view.running and view.http is not None]
        if not served:
            body = {"error_code": 503, "message": "no agent process is running"}
            return JSONResponse(body, status_code=503)
        headers = {k: v for k, v in request.headers.items() if k.lower() in PASSED_HEADERS}
        url = f"{served[0].http}/api/v1/sql"
        try:
            sent = await body_bytes(request, SQL_BODY_BYTES_MAX)
        except RestError as error:
            return JSONResponse(error.body(), status_code=error.status)
        status, raw, media = await asyncio.to_thread(_post, url, sent, headers)
        return Response(raw, status_code=status, media_type=media or None)

    @app.get("/api/v1/{path:path}")
    async def api(path: str) -> Response:
        served = [view for view in processes() if view.running and view.http is not None]
        if not served:
            body = {"error": "no agent process is running", "processes": len(processes())}
            return JSONResponse(body, status_code=503)
        status, text = await _ask(f"{served[0].http}/api/v1/{path}")
        return Response(text, status_code=status, media_type="application/json")

    return app


async def start_processes_http(
    host: str, port: int, version: str, processes: ProcessesView
) -> AgentHttp:
    """Serve the processes' health, readiness and metrics on `host:port` (0: any free port)."""
    listener = HttpListener(build_processes_app(version, processes))
    bound = await listener.start(host, port)
    return AgentHttp(listener, bound)
