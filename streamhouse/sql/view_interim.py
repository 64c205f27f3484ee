"""A stand-in, until the batch query scan lands, for the decoding of a topic's records to Arrow
(JSON object values only): replaced by the scan's decoder once merged."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from streamhouse.engine.consume import ConsumedRecord


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
