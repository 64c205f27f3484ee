"""SQL over topics from Python (a notebook, a script): `connect(url).sql("SELECT …")` sends the
query to a running agent's HTTP API (`POST /api/v1/sql`) and answers a `pyarrow.Table`, read
from the Arrow IPC stream the agent answers with (`.to_pandas()` on it when pandas is
installed).

    from streamhouse.sql.client import connect
    sh = connect("http://127.0.0.1:8080")
    table = sh.sql("SELECT _partition, count(*) AS n FROM orders GROUP BY _partition")

The agent plans and runs the query; this module only speaks HTTP (urllib), so it needs neither
DuckDB nor the agent's code.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.ipc

SQL_PATH = "/api/v1/sql"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
# The agent bounds a query itself (its query_timeout_ms, answering 504 past it); the client
# waits longer than that by default so that the agent's message, not a socket timeout, is seen.
DEFAULT_TIMEOUT_S = 120.0


class SqlRequestError(Exception):
    """The agent refused the query: `status` is the HTTP status (400 bad SQL or window
    argument, 401 no or a wrong API key, 403 not allowed, 404 unknown topic, 413/422 a limit
    passed, 504 the time limit), `message` what the agent said."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class SqlUnreachable(ConnectionError):
    """No agent answered at the URL (not running, wrong address, or no answer in time)."""


@dataclass(frozen=True)
class SqlClient:
    """A running agent's SQL door, reached at `url` (its HTTP API, e.g. http://127.0.0.1:8080)
    with an API key when the agent requires one."""

    url: str
    api_key: str | None = None
    api_secret: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    def sql(self, text: str) -> pa.Table:
        """The answer to one SQL statement as a pyarrow.Table (EXPLAIN answers one too)."""
        request = urllib.request.Request(
            self.url.rstrip("/") + SQL_PATH,
            data=json.dumps({"sql": text}).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Accept": ARROW_STREAM, **self._auth()},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                body = answer.read()
        except urllib.error.HTTPError as error:
            raise SqlRequestError(error.code, _message(error.read(), error.code)) from None
        except OSError as error:
            raise SqlUnreachable(
                f"no answer from a StreamHouse agent's HTTP API at {self.url} "
                f"within {self.timeout_s:g} s: {error}"
            ) from error
        return pyarrow.ipc.open_stream(body).read_all()

    def _auth(self) -> dict[str, str]:
        """HTTP Basic credentials for the API key, as every /api/v1 route takes them."""
        if self.api_key is None:
            return {}
        if self.api_secret is None:
            raise ValueError("api_key needs api_secret")
        token = base64.b64encode(f"{self.api_key}:{self.api_secret}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


def _message(body: bytes, status: int) -> str:
    """The agent's message out of a refusal's JSON body (or the body itself if not JSON)."""
    try:
        refused: Any = json.loads(body)
        return str(refused["message"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip() or f"HTTP {status}"


def connect(
    url: str,
    api_key: str | None = None,
    api_secret: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> SqlClient:
    """A client of the agent whose HTTP API is at `url`; nothing is sent until `.sql()`."""
    return SqlClient(url, api_key, api_secret, timeout_s)
