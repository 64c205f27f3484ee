"""A topic's records as Arrow record batches: the meta columns every topic has, then the columns
decoded from its values. Batch queries and continuous views both decode through this class, so
they see the same table.

Meta columns: `_partition` INT32, `_offset` INT64, `_timestamp` TIMESTAMP (microseconds, UTC, no
zone), `_key` and `_value` BINARY (NULL for a null key or value), `_headers`
LIST<STRUCT<key VARCHAR, value BLOB>>.

Value columns (value_columns.py has each type's rule): when the org's registry has a subject
`<topic>-value` (the topic as the org names it), its latest schema fixes the columns; each value
in Confluent's wire format is decoded by the schema its id names (any schema the org can see, so
records written with older versions decode too) and its fields are taken by name; a value that
is not framed, names a schema the org cannot see or does not decode has NULL value columns.
Without such a subject, values that are JSON objects give columns inferred from the first batch
decoded (or a sample given up front) and fixed from then on; other values give none.

A decoded column named like a meta column is left out (the meta column keeps its name; the
field is still in `_value`).
"""

from __future__ import annotations

import asyncio
import json
import json.scanner
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import pyarrow as pa

from streamhouse.engine.consume import ConsumedRecord
from streamhouse.engine.org_registry import OrgRegistry
from streamhouse.engine.schema_registry import RegistryError, SchemaRegistry
from streamhouse.schemas import UndecodableDatum
from streamhouse.schemas.datum_codecs import DatumCodec
from streamhouse.schemas.wire_format import schema_id_of, unframe
from streamhouse.sql.value_columns import TIMESTAMP, ValueColumn, inferred_columns, schema_columns

LATEST = "latest"
HEADER_TYPE = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))
META_FIELDS = (
    pa.field("_partition", pa.int32(), nullable=False),
    pa.field("_offset", pa.int64(), nullable=False),
    pa.field("_timestamp", TIMESTAMP, nullable=False),
    pa.field("_key", pa.binary()),
    pa.field("_value", pa.binary()),
    pa.field("_headers", HEADER_TYPE),
)
META_COLUMNS = frozenset(field.name for field in META_FIELDS)
MICROS_PER_MILLI = 1000
# the scanner json.loads uses (typeshed names make_scanner's argument wrongly)
_SCAN_ONCE: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    cast(Any, json.JSONDecoder())
)


class TopicDecoder:
    """Records of one topic to record batches of one schema.

    Build it with `topic_decoder` (which asks the registry for the topic's value schema); then
    `decode` (async: it looks up the schema ids it meets) any number of record lists."""

    def __init__(self, registry: OrgRegistry, columns: list[ValueColumn] | None) -> None:
        self._registry = registry
        self._registered = columns is not None  # False: plain JSON, columns inferred
        self._columns: list[ValueColumn] | None = None
        self._codecs: dict[int, DatumCodec | None] = {}  # None: the org cannot read that id
        if columns is not None:
            self._fix(columns)

    @property
    def registered(self) -> bool:
        """Whether the columns come from a registered schema (else: inferred from JSON)."""
        return self._registered

    @property
    def schema(self) -> pa.Schema | None:
        """The batches' schema; None until the columns are fixed (the first decode)."""
        if self._columns is None:
            return None
        return pa.schema([*META_FIELDS, *(pa.field(c.name, c.arrow_type) for c in self._columns)])

    def infer(self, sample: Iterable[ConsumedRecord]) -> None:
        """Fix the inferred columns from `sample` (plain JSON values; no-op once fixed)."""
        if self._columns is None:
            self._fix(inferred_columns(_json_value(record.value) for record in sample))

    async def decode(self, records: Sequence[ConsumedRecord]) -> pa.RecordBatch:
        """The records as one batch (the work runs in a worker thread)."""
        self.infer(records)
        if self._registered:
            await self._load_codecs(records)
        return await asyncio.to_thread(self.decode_loaded, records)

    def decode_loaded(self, records: Sequence[ConsumedRecord]) -> pa.RecordBatch:
        """`decode` without the registry lookups: every schema id among the records must have
        been met by `decode` (or `load_codecs`) before."""
        self.infer(records)
        schema = self.schema
        assert schema is not None and self._columns is not None
        values = [self._value(record.value) for record in records]
        arrays = _meta_arrays(records)
        for column in self._columns:
            name = column.name
            arrays.append(column.array([None if v is None else v.get(name) for v in values]))
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    async def load_codecs(self, records: Sequence[ConsumedRecord]) -> None:
        """Look up the schemas the records' values name (for `decode_loaded`)."""
        if self._registered:
            await self._load_codecs(records)

    def _fix(self, columns: list[ValueColumn]) -> None:
        self._columns = [column for column in columns if column.name not in META_COLUMNS]

    async def _load_codecs(self, records: Sequence[ConsumedRecord]) -> None:
        for record in records:
            schema_id = None if record.value is None else schema_id_of(record.value)
            if schema_id is None or schema_id in self._codecs:
                continue
            try:
                self._codecs[schema_id] = DatumCodec(await self._registry.parsed_schema(schema_id))
            except RegistryError:
                self._codecs[schema_id] = None

    def _value(self, data: bytes | None) -> dict[str, Any] | None:
        """The decoded value when it is an object (a record, a message); else None."""
        if data is None:
            return None
        value = self._framed_value(data) if self._registered else _json_value(data)
        return value if isinstance(value, dict) else None

    def _framed_value(self, data: bytes) -> Any:
        schema_id = schema_id_of(data)
        codec = None if schema_id is None else self._codecs.get(schema_id)
        if codec is None:
            return None
        _, body = unframe(data)
        try:
            value = codec.decode(body)
        except UndecodableDatum:
            return None
        if self._columns is not None and len(self._columns) == 1 and not isinstance(value, dict):
            return {self._columns[0].name: value}  # a schema whose root is not a record
        return value


async def topic_decoder(registry: SchemaRegistry, org: str, topic: str) -> TopicDecoder:
    """The decoder of the org's topic `topic` (as the org names it): by the latest schema of
    subject `<topic>-value` when there is one, else by inference from plain JSON."""
    scoped_registry = OrgRegistry(registry, org)
    try:
        latest = await scoped_registry.version(f"{topic}-value", LATEST, deleted=False)
        parsed = await scoped_registry.parsed_schema(latest.schema_id)
    except RegistryError:
        return TopicDecoder(scoped_registry, None)
    return TopicDecoder(scoped_registry, schema_columns(parsed))


def is_framed(value: bytes | None) -> bool:
    """Whether `value` is in Confluent's wire format (a JSON text never is)."""
    return value is not None and schema_id_of(value) is not None


def _json_value(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        if data[:1] == b"{" and data[1:2] != b"\x00":
            return _json_object(data.decode("utf-8", "surrogatepass"))
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def _json_object(text: str) -> Any:
    """json.loads(text) for a text in UTF-8 starting with `{`, by the scanner json.loads ends
    in, without its encoding detection and whitespace matching when nothing follows the
    object (anything else, a failure too, goes through json.loads for its answer)."""
    try:
        found, end = _SCAN_ONCE(text, 0)
    except StopIteration:
        end = -1
    return found if end == len(text) else json.loads(text)


def _meta_arrays(records: Sequence[ConsumedRecord]) -> list[pa.Array]:
    return [
        pa.array([r.partition for r in records], pa.int32()),
        pa.array([r.offset for r in records], pa.int64()),
        pa.array([r.timestamp_ms * MICROS_PER_MILLI for r in records], TIMESTAMP),
        pa.array([r.key for r in records], pa.binary()),
        pa.array([r.value for r in records], pa.binary()),
        _headers_array(records),
    ]


def _headers_array(records: Sequence[ConsumedRecord]) -> pa.Array:
    if not any(r.headers for r in records):  # the usual case: an empty list each, built at once
        empty = pa.array([], HEADER_TYPE.value_type)
        return pa.ListArray.from_arrays(pa.array([0] * (len(records) + 1), pa.int32()), empty)
    headers = [[{"key": key, "value": value} for key, value in r.headers] for r in records]
    return pa.array(headers, HEADER_TYPE)
