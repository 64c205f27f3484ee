"""A continuous view's SELECT evaluated with DuckDB over the rows it holds: the event time of
each newly read row, and the windows due (ending after what was emitted, at or before the
watermark) as output records (key: the grouped columns as JSON; value: the row as a JSON
object; timestamp: the window's end). The rows come decoded by the batch queries' decoder
(decoding.py), so a view sees the table a query sees."""

from __future__ import annotations

import base64
import datetime
import decimal
import json
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from streamhouse.sql.view_definition import ViewDefinition
from streamhouse.sql.windows import install_window_functions

NO_LOWER_BOUND_MS = -(2**62)
EVENT_TIME = "__event_ms"


@dataclass(frozen=True)
class OutputRecord:
    """One emitted window row as the output topic gets it."""

    key: bytes
    value: bytes
    timestamp_ms: int


def _connection(definition: ViewDefinition, rows: pa.RecordBatch) -> Any:
    connection = duckdb.connect()
    install_window_functions(connection)
    connection.register(definition.input_topic, pa.Table.from_batches([rows]))
    return connection


def event_times(definition: ViewDefinition, rows: pa.RecordBatch) -> list[int | None]:
    """Each decoded row's event time in ms (None when its time column is missing or is no
    time)."""
    if rows.num_rows == 0:
        return []
    connection = _connection(definition, rows)
    try:
        found = connection.execute(
            f"SELECT epoch_ms(({definition.time_column})) FROM {_quoted(definition.input_topic)}"
        ).fetchall()
    except (duckdb.BinderException, duckdb.ConversionException):  # missing, or not a time
        return [None] * rows.num_rows
    finally:
        connection.close()
    return [row[0] for row in found]


def due_windows(
    definition: ViewDefinition, rows: pa.RecordBatch, after_ms: int | None, through_ms: int
) -> list[OutputRecord]:
    """The view's rows of the windows ending in (after_ms, through_ms] over the decoded
    `rows`, ordered by window end then key, as output records."""
    if rows.num_rows == 0:
        return []
    connection = _connection(definition, rows)
    keys = ", ".join(_quoted(column) for column in definition.key_columns)
    lower = NO_LOWER_BOUND_MS if after_ms is None else after_ms
    try:
        cursor = connection.execute(
            f"SELECT * FROM ({definition.query}) AS __view "
            "WHERE epoch_ms(window_end) > $lower AND epoch_ms(window_end) <= $upper "
            f"ORDER BY window_end, {keys}",
            {"lower": lower, "upper": through_ms},
        )
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        connection.close()
    return [_output(definition, row) for row in rows]


def _output(definition: ViewDefinition, row: dict[str, Any]) -> OutputRecord:
    shown = {name: _json_value(value) for name, value in row.items()}
    key = {column: shown[column] for column in definition.key_columns}
    window_end = row["window_end"]
    assert isinstance(window_end, datetime.datetime), window_end
    return OutputRecord(
        key=json.dumps(key, separators=(",", ":")).encode(),
        value=json.dumps(shown, separators=(",", ":")).encode(),
        timestamp_ms=_epoch_ms(window_end),
    )


def _epoch_ms(moment: datetime.datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return round(moment.timestamp() * 1000)


def _json_value(value: Any) -> Any:
    """A DuckDB value as JSON shows it: timestamps ISO-8601 in UTC, bytes base64."""
    if isinstance(value, datetime.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
        shown = moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds")
        return shown.replace("+00:00", "Z")
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):  # SUM of integers is a HUGEINT, shown as one
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    return value


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
