"""`streamctl sql`: run a SQL query over topics on a running agent and print its answer (a Rich
table for people, JSON or CSV for scripts); `streamctl sql views list|drop` for the continuous
views the agent runs.

The query goes to the agent's HTTP API (`POST /api/v1/sql`, asking for JSON), which plans and
runs it (streamhouse.sql): streamctl only sends text and prints rows, so it needs neither DuckDB
nor Arrow. `streamctl sql "SELECT …"` and `streamctl sql query "SELECT …"` are the same command:
a first argument that names no subcommand is taken as the query.
"""

from __future__ import annotations

import base64
import binascii
import csv
import datetime
import enum
import json
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from streamhouse.cli.agent_client import (
    DEFAULT_HTTP,
    EXIT_FAILED,
    CommandError,
    Http,
    Key,
    Output,
    OutputFormat,
    Secret,
    call_json_api,
    console,
    errors,
    key_headers,
    say,
    show_rows,
)

QUERY_COMMAND = "query"
STDIN = "-"
NULL = "NULL"
# A query may scan a lot; the agent bounds it itself (its query_timeout_ms) and answers 504 past
# it, so streamctl waits longer than that by default rather than give up first.
DEFAULT_SQL_TIMEOUT_S = 120.0
SQL_PATH = "/api/v1/sql"
MS_PER_S = 1000
VIEWS_PATH = "/api/v1/sql/views"
VIEW_COLUMNS = (
    "name",
    "output_topic",
    "allowed_lateness_ms",
    "state",
    "watermark",
    "windows_emitted",
    "late_records",
    "invalid_records",
    "agent",
)  # and `sql`, in JSON: too wide for a table

SqlTimeoutS = Annotated[
    float,
    typer.Option(
        "--timeout",
        min=0.1,
        help="Seconds to wait for the answer (the agent also bounds a query by its own limit).",
    ),
]


class QueryFirstGroup(TyperGroup):
    """A group whose first argument, when it names no subcommand (nor asks for help), is the
    query: `streamctl sql "SELECT 1"` runs `streamctl sql query "SELECT 1"`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] != "--help":
            args = [QUERY_COMMAND, *args]
        parsed: list[str] = super().parse_args(ctx, args)
        return parsed


sql = typer.Typer(
    cls=QueryFirstGroup,
    help=(
        "Query topics with SQL on a running agent (its HTTP API), and manage continuous views.\n\n"
        "A topic is a table (_partition, _offset, _timestamp, _key, _value, _headers and the "
        "columns its registered schema or JSON gives); tumble(), hop() and session() window it. "
        "A first argument that is not a subcommand is the query.\n\n"
        "Examples:\n\n"
        '  streamctl sql "SELECT count(*) FROM orders"\n\n'
        '  streamctl sql -o json "SELECT window_start, count(*) AS n FROM '
        "tumble(orders, _timestamp, INTERVAL '1 minute') GROUP BY window_start\"\n\n"
        "  streamctl sql --file report.sql -o csv > report.csv\n\n"
        "  streamctl sql views list"
    ),
    no_args_is_help=True,
)
views = typer.Typer(
    help=(
        "Continuous views (CREATE MATERIALIZED VIEW … run with `streamctl sql`) the agent runs.\n\n"
        "Examples:\n\n"
        "  streamctl sql views list\n\n"
        "  streamctl sql views drop orders_per_minute"
    ),
    no_args_is_help=True,
)
sql.add_typer(views, name="views")


class SqlOutput(enum.StrEnum):
    """How a query's answer is printed."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"


class SqlApi:
    """JSON calls to the agent's SQL routes; a refusal (the server's message) or no answer is a
    CommandError."""

    def __init__(self, base: str, key: str | None, secret: str | None, timeout_s: float) -> None:
        self.base = base.rstrip("/")
        self.timeout_s = timeout_s
        self.headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            **key_headers(key, secret),
        }

    def call(self, method: str, path: str, body: Any = None) -> Any:
        unreachable = (
            f"cannot reach an agent's HTTP API at {self.base} (or no answer within "
            f"{self.timeout_s:g} s). Is `streamhouse agent` running there? "
            "Set --http or STREAMHOUSE_HTTP."
        )
        return call_json_api(
            method, self.base + path, body, self.headers, self.timeout_s, refusal, unreachable
        )


def refusal(refused: dict[str, Any], status: int) -> str:
    """What the agent said when it refused: its message, the HTTP status and, when it gives
    one, the error's name."""
    name = refused.get("error")
    named = f"{name}, " if isinstance(name, str) else ""
    return f"{refused['message']} ({named}HTTP {status})"


def run_api(
    client_args: tuple[str, str | None, str | None, float], work: Callable[[SqlApi], None]
) -> None:
    """Run `work` with a client of the SQL routes; a refusal is one line on stderr and exit 1."""
    try:
        work(SqlApi(*client_args))
    except CommandError as exc:
        errors.print(f"[red]error:[/red] {exc}", soft_wrap=True, markup=True, highlight=False)
        raise typer.Exit(EXIT_FAILED) from exc


def query_text(query: str | None, file: str | None) -> str:
    """The query from the argument, from --file, or from stdin (`-` for either); exactly one."""
    if (query is None) == (file is None):
        raise typer.BadParameter("give the query as an argument or with --file (not both)")
    if query is not None and query != STDIN:
        text = query
    elif query == STDIN or file == STDIN:
        text = sys.stdin.read()
    else:
        assert file is not None
        try:
            with open(file, encoding="utf-8") as opened:
                text = opened.read()
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {file}: {exc.strerror}", param_hint="--file"
            ) from exc
    if not text.strip():
        raise typer.BadParameter("the query is empty")
    return text


# ---------------------------------------------------------------- printing an answer


def column_names(answer: dict[str, Any]) -> list[str]:
    return [str(column["name"]) for column in answer["columns"]]


def as_text(value: Any) -> str:
    """A value as a table or CSV cell shows it: nested values as JSON, NULL as NULL."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def print_table(answer: dict[str, Any]) -> None:
    """Bytes (base64 in the answer) are shown as text when they are UTF-8, as a person reads
    keys and values; JSON and CSV keep them base64."""
    binary = [str(column["type"]).endswith("binary") for column in answer["columns"]]
    table = Table(*column_names(answer))
    for row in answer["rows"]:
        table.add_row(
            *(_cell(value, is_bytes) for value, is_bytes in zip(row, binary, strict=True))
        )
    console.print(table)
    count = len(answer["rows"])
    errors.print(f"({count} row{'' if count == 1 else 's'})", highlight=False)


def _cell(value: Any, is_bytes: bool) -> Text:
    if value is None:
        return Text(NULL, style="dim")
    if is_bytes and isinstance(value, str):
        try:
            return Text(base64.b64decode(value, validate=True).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError):
            return Text(value, style="italic")  # not text: base64, as the JSON answer has it
    return Text(as_text(value))


def print_json_rows(answer: dict[str, Any]) -> None:
    """One JSON array of objects, column name to value (as `--output json` of every listing)."""
    names = column_names(answer)
    typer.echo(json.dumps([dict(zip(names, row, strict=True)) for row in answer["rows"]], indent=2))


def print_csv(answer: dict[str, Any]) -> None:
    """A header line, then a line a row; NULL as an empty field."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(column_names(answer))
    for row in answer["rows"]:
        writer.writerow(["" if value is None else as_text(value) for value in row])


PRINTERS: dict[SqlOutput, Callable[[dict[str, Any]], None]] = {
    SqlOutput.TABLE: print_table,
    SqlOutput.JSON: print_json_rows,
    SqlOutput.CSV: print_csv,
}


def show_answer(answer: dict[str, Any], output: SqlOutput) -> None:
    PRINTERS[output](answer)


# ---------------------------------------------------------------- commands


@sql.command(QUERY_COMMAND)
def run_query(
    query: Annotated[
        str | None,
        typer.Argument(
            metavar="QUERY", help="The SQL text; `-` reads it from stdin.", show_default=False
        ),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option(
            "--file", "-f", help="Read the query from this file (`-`: stdin).", show_default=False
        ),
    ] = None,
    output: Annotated[
        SqlOutput,
        typer.Option("--output", "-o", help="table for people; json or csv for scripts."),
    ] = SqlOutput.TABLE,
    http: Http = DEFAULT_HTTP,
    key: Key = None,
    secret: Secret = None,
    timeout_s: SqlTimeoutS = DEFAULT_SQL_TIMEOUT_S,
) -> None:
    """Run one SQL statement (SELECT, EXPLAIN, CREATE MATERIALIZED VIEW …) and print its answer.

    Examples:

      streamctl sql "SELECT _partition, count(*) FROM orders GROUP BY ALL"

      streamctl sql query "EXPLAIN SELECT * FROM orders WHERE _timestamp >= '2026-01-01'"

      streamctl sql - -o json < hourly.sql

      streamctl sql -o csv "SELECT * FROM session(clicks, _timestamp, INTERVAL '30 minutes', who)"
    """
    text = query_text(query, file)

    def work(api: SqlApi) -> None:
        with errors.status("running the query…"):
            answer = api.call("POST", SQL_PATH, {"sql": text})
        show_answer(answer, output)

    run_api((http, key, secret, timeout_s), work)


@views.command("list")
def list_views(
    output: OutputFormat = Output.TABLE,
    http: Http = DEFAULT_HTTP,
    key: Key = None,
    secret: Secret = None,
    timeout_s: SqlTimeoutS = DEFAULT_SQL_TIMEOUT_S,
) -> None:
    """List the continuous views: their output topics, watermarks, windows emitted and late
    records.

    Example:

      streamctl sql views list -o json
    """

    def work(api: SqlApi) -> None:
        listed: Sequence[dict[str, Any]] = api.call("GET", VIEWS_PATH)["views"]
        if output is Output.JSON:
            show_rows(listed, (*VIEW_COLUMNS, "sql"), output)
            return
        show_rows(
            [{**view, "watermark": _event_time(view["watermark"])} for view in listed],
            VIEW_COLUMNS,
            output,
        )

    run_api((http, key, secret, timeout_s), work)


def _event_time(epoch_ms: int | None) -> str | None:
    """A watermark (ms since the epoch) as ISO 8601 UTC, for people."""
    if epoch_ms is None:
        return None
    moment = datetime.datetime.fromtimestamp(epoch_ms / MS_PER_S, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@views.command("drop")
def drop_view(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The view to stop and forget.")],
    http: Http = DEFAULT_HTTP,
    key: Key = None,
    secret: Secret = None,
    timeout_s: SqlTimeoutS = DEFAULT_SQL_TIMEOUT_S,
) -> None:
    """Stop a continuous view and forget it (its output topic and what it wrote stay).

    Example:

      streamctl sql views drop orders_per_minute
    """

    def work(api: SqlApi) -> None:
        api.call("DELETE", f"{VIEWS_PATH}/{urllib.parse.quote(name, safe='')}")
        say(f"dropped view {name}")

    run_api((http, key, secret, timeout_s), work)
