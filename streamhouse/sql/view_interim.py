"""Stand-ins, until the batch query pieces land, for what continuous views borrow from them:
the window table macros (windows.py) and the decoding of a topic's records to Arrow
(JSON values only). Replaced by those modules once merged."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from streamhouse.engine.consume import ConsumedRecord

EPOCH = "TIMESTAMP '1970-01-01'"
TUMBLE_MACRO = f"""
CREATE OR REPLACE MACRO tumble(t, ts, size) AS TABLE
SELECT *, time_bucket(size, CAST(ts AS TIMESTAMP), {EPOCH}) AS window_start,
       time_bucket(size, CAST(ts AS TIMESTAMP), {EPOCH}) + size AS window_end
FROM query_table(t)
"""
HOP_MACRO = f"""
CREATE OR REPLACE MACRO hop(t, ts, slide, size) AS TABLE
SELECT * EXCLUDE (__window), __window AS window_start, __window + size AS window_end FROM (
  SELECT *, unnest(generate_series(
      time_bucket(slide, CAST(ts AS TIMESTAMP), {EPOCH}) - size + slide,
      time_bucket(slide, CAST(ts AS TIMESTAMP), {EPOCH}), slide)) AS __window
  FROM query_table(t))
"""


def install_window_functions(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute(TUMBLE_MACRO)
    connection.execute(HOP_MACRO)


def records_to_batch(records: Sequence[ConsumedRecord]) -> pa.RecordBatch:
    """The records with their meta columns and the fields of their JSON object values."""
    decoded = [_json_object(record.value) for record in records]
    meta = {
        "_partition": pa.array([r.partition for r in records], pa.int32()),
        "_offset": pa.array([r.offset for r in records], pa.int64()),
        "_timestamp": pa.array([r.timestamp_ms for r in records], pa.timestamp("ms", tz="UTC")),
        "_key": pa.array([r.key for r in records], pa.binary()),
        "_value": pa.array([r.value for r in records], pa.binary()),
    }
    fields = pa.Table.from_pylist(decoded) if any(decoded) else pa.table({})
    columns = dict(meta)
    for name in fields.column_names:
        columns[name] = fields.column(name).combine_chunks()
    return pa.RecordBatch.from_pydict(columns)


def _json_object(value: bytes | None) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
