"""Schema registry benchmark: registration and lookup latency through the agent's REST door.

One agent process on a local bucket and its SQLite file; one HTTP/1.1 connection, calls one
after another, as a serializer makes them. Measured: registering a new Avro schema under a new
subject (no compatibility check), a new version of one subject (checked BACKWARD against the
latest), looking a schema up under its subject (what a serializer with auto-registration off
does), and fetching a schema by id (what every deserializer does once per id).
"""

from __future__ import annotations

import http.client
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamhouse.testing.agent_process import start_agent_process

CALLS = 300
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def _schema(index: int) -> str:
    fields = [{"name": "id", "type": "long"}]
    fields += [{"name": f"f{i}", "type": "string", "default": ""} for i in range(index % 50)]
    return json.dumps({"type": "record", "name": f"Event{index}", "fields": fields})


def _version(index: int) -> str:
    fields = [{"name": "id", "type": "long"}]
    fields += [{"name": f"f{i}", "type": "string", "default": ""} for i in range(index)]
    return json.dumps({"type": "record", "name": "Evolving", "fields": fields})


class _Registry:
    def __init__(self, port: int) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": CONTENT_TYPE}
        self._connection.request(method, path, body=data, headers=headers)
        answer = self._connection.getresponse()
        payload = answer.read()
        assert answer.status == 200, (answer.status, payload)
        return json.loads(payload)


def _timed(calls: int, call: Callable[[int], Any]) -> dict[str, float]:
    latencies_ms = []
    started = time.perf_counter()
    for index in range(calls):
        before = time.perf_counter()
        call(index)
        latencies_ms.append((time.perf_counter() - before) * 1000)
    elapsed_s = time.perf_counter() - started
    latencies_ms.sort()
    return {
        "calls": calls,
        "per_s": round(calls / elapsed_s, 1),
        "p50_ms": round(statistics.median(latencies_ms), 2),
        "p99_ms": round(latencies_ms[int(len(latencies_ms) * 0.99) - 1], 2),
    }


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as scratch:
        return _measure(Path(scratch) / "data")


def _measure(data_dir: Path) -> dict[str, Any]:
    with start_agent_process(data_dir) as agent:
        registry = _Registry(agent.registry_port)
        ids: list[int] = []

        def register_new(index: int) -> None:
            answer = registry.call(
                "POST", f"/subjects/new-{index}/versions", {"schema": _schema(index)}
            )
            ids.append(answer["id"])

        def register_version(index: int) -> None:
            registry.call("POST", "/subjects/evolving/versions", {"schema": _version(index)})

        def lookup(index: int) -> None:
            registry.call("POST", f"/subjects/new-{index}", {"schema": _schema(index)})

        def by_id(index: int) -> None:
            registry.call("GET", f"/schemas/ids/{ids[index]}")

        results = {
            "register_new_subject": _timed(CALLS, register_new),
            "register_new_version_backward": _timed(CALLS, register_version),
            "lookup_under_subject": _timed(CALLS, lookup),
            "schema_by_id": _timed(CALLS, by_id),
        }
        agent.stop_cleanly()
        return results
