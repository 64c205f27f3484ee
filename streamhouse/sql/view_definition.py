"""Continuous view statements: `CREATE MATERIALIZED VIEW` and `DROP MATERIALIZED VIEW` read into
a ViewDefinition (what a view computes, kept as JSON in the views catalog) or a ViewDrop.

A view is a windowed aggregate: its SELECT reads one `tumble(topic, ts, size)` or
`hop(topic, ts, slide, size)` and is grouped by `window_start` (and anything else). Its
output always carries `window_start` and `window_end` (added when the SELECT leaves them out:
`window_end` follows from `window_start`, so grouping by it changes nothing). SESSION windows
are refused: a session's end moves with every event, so a session cannot be emitted once a
watermark passes a fixed end. Anything else is a ViewRefused naming what is missing (400).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

import duckdb
import sqlglot
from sqlglot import exp

from streamhouse.server.http_sql import SqlRefused
from streamhouse.sql.statements import DIALECT

VIEW_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,199}")
CREATE_VIEW = re.compile(
    r"^\s*CREATE\s+MATERIALIZED\s+VIEW\s+(?P<name>\"[^\"]+\"|[^\s(]+)\s*"
    r"(?:WITH\s*\((?P<options>[^)]*)\)\s*)?AS\s+(?P<select>.+?)\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
DROP_VIEW = re.compile(
    r"^\s*DROP\s+MATERIALIZED\s+VIEW\s+(?P<exists>IF\s+EXISTS\s+)?(?P<name>\"[^\"]+\"|\S+?)\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
VIEW_STATEMENT = re.compile(r"^\s*(CREATE|DROP)\s+MATERIALIZED\s+VIEW\b", re.IGNORECASE)
OPTION = re.compile(r"^\s*(?P<key>[A-Za-z_]+)\s*=\s*'(?P<value>[^']*)'\s*$")
OPTIONS = frozenset({"allowed_lateness", "output_topic"})
WINDOW_KINDS = frozenset({"tumble", "hop"})
SESSION_CALL = re.compile(r"\bsession\s*\(", re.IGNORECASE)
SESSION_REFUSED = (
    "SESSION windows are not supported in a materialized view (a session's end moves with "
    "each event); use tumble or hop, or query session(...) in a batch query"
)
WINDOW_COLUMNS = ("window_start", "window_end")
DEFAULT_LATENESS_MS = 0
MS_PER_SECOND = 1000


class ViewRefused(SqlRefused):
    """A view statement that cannot be served; `http_status` says why (400 bad statement,
    404 unknown view or topic, 409 name taken, 403 not allowed)."""


@dataclass(frozen=True)
class ViewDefinition:
    """What a view computes. Topic names are as the org's clients name them."""

    name: str
    org: str
    view_id: str  # this incarnation of the name: progress of a dropped namesake is ignored
    sql: str  # the view's SELECT as written
    query: str  # the SELECT as evaluated (window_start and window_end in its output)
    input_topic: str
    time_column: str  # the SQL of the event-time expression
    window: str  # tumble | hop
    size_ms: int
    slide_ms: int  # == size_ms for a tumble
    allowed_lateness_ms: int
    output_topic: str
    key_columns: tuple[str, ...]  # output columns the view groups by: the output records' key

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ViewDefinition:
        fields = json.loads(raw)
        fields["key_columns"] = tuple(fields["key_columns"])
        return cls(**fields)

    def last_window_end_ms(self, event_ms: int) -> int:
        """The end of the last window an event at `event_ms` falls in (windows aligned to the
        Unix epoch, half-open)."""
        return (event_ms // self.slide_ms) * self.slide_ms + self.size_ms


@dataclass(frozen=True)
class ViewDrop:
    """`DROP MATERIALIZED VIEW [IF EXISTS] name`."""

    name: str
    if_exists: bool


def is_view_statement(text: str) -> bool:
    """Whether `text` creates or drops a materialized view (the rest is a batch query)."""
    return VIEW_STATEMENT.match(text) is not None


def parse_view_statement(text: str, org: str, view_id: str) -> ViewDefinition | ViewDrop:
    """The statement read, or ViewRefused(400) naming what is wrong with it."""
    dropped = DROP_VIEW.match(text)
    if dropped is not None:
        return ViewDrop(_view_name(dropped["name"]), dropped["exists"] is not None)
    created = CREATE_VIEW.match(text)
    if created is None:
        raise ViewRefused(
            400,
            "expected CREATE MATERIALIZED VIEW name [WITH (allowed_lateness = '...', "
            "output_topic = '...')] AS SELECT ... or DROP MATERIALIZED VIEW [IF EXISTS] name",
        )
    name = _view_name(created["name"])
    options = _options(created["options"] or "")
    return _definition(name, org, view_id, created["select"], options)


def _view_name(raw: str) -> str:
    name = raw.strip('"')
    if not VIEW_NAME.fullmatch(name):
        raise ViewRefused(
            400, f"invalid view name {name!r}: letters, digits, '_', '.', '-' (a topic name)"
        )
    return name


def _options(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in filter(str.strip, text.split(",")):
        matched = OPTION.match(part)
        if matched is None:
            raise ViewRefused(400, f"view option {part.strip()!r} is not key = 'value'")
        key = matched["key"].lower()
        if key not in OPTIONS:
            raise ViewRefused(
                400, f"unknown view option {key!r}; known: {', '.join(sorted(OPTIONS))}"
            )
        found[key] = matched["value"]
    return found


def _definition(
    name: str, org: str, view_id: str, select_sql: str, options: dict[str, str]
) -> ViewDefinition:
    if SESSION_CALL.search(select_sql):
        raise ViewRefused(400, SESSION_REFUSED)
    try:
        select = sqlglot.parse_one(select_sql, read=DIALECT)
    except sqlglot.errors.ParseError as error:
        reasons = "; ".join(str(found.get("description")) for found in error.errors)
        raise ViewRefused(400, f"the view's SELECT does not parse: {reasons}") from None
    if not isinstance(select, exp.Select):
        raise ViewRefused(400, "a materialized view is a single SELECT (no UNION, no WITH)")
    call = _window_call(select)
    kind = call.name.lower()
    arguments = call.expressions
    expected = 4 if kind == "hop" else 3
    if len(arguments) != expected:
        raise ViewRefused(400, f"{kind} takes {expected} arguments, got {len(arguments)}")
    topic = arguments[0]
    if not isinstance(topic, exp.Column) or topic.table:
        raise ViewRefused(400, f"the first argument of {kind} must name a topic")
    size_ms = interval_ms(arguments[-1], "size")
    slide_ms = interval_ms(arguments[2], "slide") if kind == "hop" else size_ms
    if slide_ms > size_ms:
        raise ViewRefused(400, "hop: slide must not be greater than size")
    group = _grouped_columns(select)
    _complete_window_columns(select, group)
    lateness = options.get("allowed_lateness")
    return ViewDefinition(
        name=name,
        org=org,
        view_id=view_id,
        sql=select_sql,
        query=select.sql(dialect=DIALECT),
        input_topic=topic.name,
        time_column=arguments[1].sql(dialect=DIALECT),
        window=kind,
        size_ms=size_ms,
        slide_ms=slide_ms,
        allowed_lateness_ms=(
            DEFAULT_LATENESS_MS
            if lateness is None
            else interval_ms_of(lateness, "allowed_lateness")
        ),
        output_topic=options.get("output_topic", name),
        key_columns=tuple(column for column in group if column in _output_names(select)),
    )


def _window_call(select: exp.Select) -> exp.Anonymous:
    source = select.args.get("from_")
    if source is None or select.args.get("joins"):
        raise ViewRefused(400, "a materialized view reads FROM one tumble(...) or hop(...)")
    table = source.this
    call = table.this if isinstance(table, exp.Table) else None
    if not isinstance(call, exp.Anonymous) or call.name.lower() not in WINDOW_KINDS | {"session"}:
        raise ViewRefused(
            400, "a materialized view reads FROM tumble(topic, ts, size) or hop(...): missing"
        )
    if call.name.lower() == "session":
        raise ViewRefused(400, SESSION_REFUSED)
    return call


def _grouped_columns(select: exp.Select) -> list[str]:
    group = select.args.get("group")
    columns = [g.name for g in group.expressions if isinstance(g, exp.Column)] if group else []
    if "window_start" not in columns:
        raise ViewRefused(400, "a materialized view must GROUP BY window_start: missing")
    return columns


def _complete_window_columns(select: exp.Select, group: list[str]) -> None:
    """Add window_start / window_end to the output (and window_end to GROUP BY) if absent."""
    if "window_end" not in group:
        select.group_by("window_end", copy=False)
        group.append("window_end")
    present = _output_names(select)
    for column in WINDOW_COLUMNS:
        if column not in present:
            select.select(column, copy=False)


def _output_names(select: exp.Select) -> list[str]:
    return [projection.alias_or_name for projection in select.expressions]


def interval_ms(argument: exp.Expression, what: str) -> int:
    """An interval argument in whole milliseconds; ViewRefused naming `what` otherwise."""
    return _evaluate_interval(argument.sql(dialect=DIALECT), what)


def interval_ms_of(text: str, what: str) -> int:
    """An interval written as text ('5 seconds') in whole milliseconds."""
    return _evaluate_interval("INTERVAL '" + text.replace("'", "''") + "'", what)


def _evaluate_interval(sql: str, what: str) -> int:
    connection = duckdb.connect()
    try:
        row = connection.execute(
            f"SELECT epoch(CAST(({sql}) AS INTERVAL)), datepart('month', CAST(({sql}) AS INTERVAL))"
        ).fetchone()
    except duckdb.Error:
        raise ViewRefused(400, f"{what}: {sql} is not an interval") from None
    finally:
        connection.close()
    assert row is not None
    seconds, months = row
    milliseconds = round(float(seconds) * MS_PER_SECOND)
    smallest = 0 if what == "allowed_lateness" else 1  # no lateness is fine, no size is not
    if months or milliseconds < smallest:
        raise ViewRefused(400, f"{what} must be a positive interval of days or less, got {sql}")
    return int(milliseconds)
