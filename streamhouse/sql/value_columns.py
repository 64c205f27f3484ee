"""Which columns a topic's values decode into, with their Arrow types: from a registered schema
(Avro, JSON Schema, Protobuf) or inferred from a sample of JSON objects.

Each column converts one field of a decoded value (the JSON value `DatumCodec.decode` answers,
the same a REST consumer receives) into what its Arrow type holds; a value that does not fit
its column's type is NULL. The rules:
- Avro: a record's fields are the columns (a schema whose root is not a record gives one column
  `value`). boolean, int (INT32), long (INT64), float, double, string, enum (text), bytes and
  fixed (BINARY); a union of null and one type is that type, nullable; timestamp-millis and
  timestamp-micros are TIMESTAMP (UTC), date is DATE; records, arrays, maps and other unions are
  their JSON text (DuckDB's json functions read it).
- JSON Schema: the root object's `properties`; integer (INT64), number (DOUBLE), string, boolean,
  a type list of null and one of those; anything else is JSON text.
- Protobuf: the fields of the schema's first message, by their JSON names (as REST consumers see
  them): integer types, float, double, bool, string, bytes (BINARY), enums (their names);
  messages, repeated and map fields are JSON text.
- Plain JSON objects (no schema registered): the top-level keys of the sample, in order of first
  appearance. A key whose sampled values are all integers is INT64, integers and floats DOUBLE,
  all text VARCHAR, all booleans BOOLEAN, only nulls VARCHAR; objects, arrays and mixed kinds
  are JSON text. The columns are fixed by the sample: later keys not among them are dropped
  (they stay in `_value`), a later value of another kind is NULL.
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from streamhouse.schemas import ParsedSchema
from streamhouse.schemas.avro_schema import AvroSchema
from streamhouse.schemas.json_schema import JsonSchema
from streamhouse.schemas.protobuf_schema import ProtobufSchema

TIMESTAMP = pa.timestamp("us")  # UTC, without a zone: the engine needs no time zone data
ROOT_VALUE_COLUMN = "value"  # the column of a schema whose root is not a record or object
INT64_RANGE = (-(2**63), 2**63 - 1)
UINT64_MAX = 2**64 - 1
Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class ValueColumn:
    """One column decoded from the value: its name, Arrow type, and the conversion of the
    field's JSON value to what the type holds (None: NULL)."""

    name: str
    arrow_type: pa.DataType
    convert: Convert

    def array(self, items: list[Any]) -> pa.Array:
        """The column of the fields' JSON values `items` (None: a missing field or value).
        When every item is of a type the conversion keeps as it is, pyarrow takes the list
        whole (one call, not one per item); one it cannot hold (an integer past INT64, one a
        double would round) sends the list through the conversion, which makes it NULL."""
        kept = _KEPT_AS_THEY_ARE.get(self.convert)
        if kept is not None and {type(item) for item in items} <= kept:
            try:
                return pa.array(items, self.arrow_type)
            except (pa.ArrowInvalid, OverflowError):
                pass
        return pa.array([self.convert(item) for item in items], self.arrow_type)


def schema_columns(schema: ParsedSchema) -> list[ValueColumn]:
    """The columns of a registered value schema."""
    if isinstance(schema, AvroSchema):
        return _avro_columns(schema)
    if isinstance(schema, JsonSchema):
        return _json_schema_columns(schema.root.raw)
    assert isinstance(schema, ProtobufSchema), schema.schema_type
    return _protobuf_columns(schema)


def inferred_columns(values: Iterable[Any]) -> list[ValueColumn]:
    """The columns of a sample of JSON values (only its objects count)."""
    kinds: dict[str, set[str]] = {}
    for value in values:
        if not isinstance(value, dict):
            continue
        for key, item in value.items():
            found = kinds.setdefault(key, set())
            if item is not None:
                found.add(_kind(item))
    return [_inferred(name, found) for name, found in kinds.items()]


# --- plain JSON ------------------------------------------------------------------------------


def _kind(item: Any) -> str:
    if isinstance(item, bool):
        return "boolean"
    if isinstance(item, int):
        return "integer"
    if isinstance(item, float):
        return "number"
    if isinstance(item, str):
        return "string"
    return "json"


def _inferred(name: str, kinds: set[str]) -> ValueColumn:
    if not kinds:
        return ValueColumn(name, pa.string(), _text)
    if kinds == {"integer", "number"}:
        return ValueColumn(name, pa.float64(), _double)
    if len(kinds) == 1 and "json" not in kinds:
        (kind,) = kinds
        arrow_type, convert = _JSON_KINDS[kind]
        return ValueColumn(name, arrow_type, convert)
    return ValueColumn(name, pa.string(), _json_text)


# --- conversions ------------------------------------------------------------------------------


def _text(item: Any) -> Any:
    return item if isinstance(item, str) else None


def _boolean(item: Any) -> Any:
    return item if isinstance(item, bool) else None


def _integer_in(low: int, high: int) -> Convert:
    """Integers in [low, high], given as such or as decimal text (Protobuf's JSON mapping
    writes 64-bit ones so)."""

    def convert(item: Any) -> Any:
        if isinstance(item, str):
            try:
                item = int(item)
            except ValueError:
                return None
        if isinstance(item, bool) or not isinstance(item, int):
            return None
        return item if low <= item <= high else None

    return convert


_integer = _integer_in(*INT64_RANGE)
_unsigned = _integer_in(0, UINT64_MAX)


def _double(item: Any) -> Any:
    if isinstance(item, str):  # NaN and the infinities, as JSON encodings write them
        try:
            return float(item)
        except ValueError:
            return None
    if isinstance(item, bool) or not isinstance(item, (int, float)):
        return None
    return float(item)


def _json_text(item: Any) -> Any:
    return None if item is None else json.dumps(item, ensure_ascii=False, separators=(",", ":"))


def _latin1_bytes(item: Any) -> Any:
    """Avro's JSON encoding of bytes: one code point 0-255 per byte."""
    try:
        return item.encode("latin-1") if isinstance(item, str) else None
    except UnicodeEncodeError:
        return None


def _base64_bytes(item: Any) -> Any:
    try:
        return base64.b64decode(item, validate=True) if isinstance(item, str) else None
    except ValueError:  # binascii.Error, or text that is not ASCII at all
        return None


def _scaled_integer(factor: int) -> Convert:
    def convert(item: Any) -> Any:
        found = _integer(item)
        return None if found is None else found * factor

    return convert


def _date(item: Any) -> Any:
    found = _integer(item)
    if found is None:
        return None
    try:
        return datetime.date(1970, 1, 1) + datetime.timedelta(days=found)
    except OverflowError:
        return None


# The exact types each conversion answers unchanged (bool is not int here), with NoneType.
_KEPT_AS_THEY_ARE: dict[Convert, frozenset[type]] = {
    _text: frozenset((str, type(None))),
    _boolean: frozenset((bool, type(None))),
    _integer: frozenset((int, type(None))),
    _double: frozenset((float, int, type(None))),
}

_JSON_KINDS: dict[str, tuple[pa.DataType, Convert]] = {
    "boolean": (pa.bool_(), _boolean),
    "integer": (pa.int64(), _integer),
    "number": (pa.float64(), _double),
    "string": (pa.string(), _text),
}


# --- Avro ---------------------------------------------------------------------------------


def _avro_columns(schema: AvroSchema) -> list[ValueColumn]:
    root = _avro_resolved(schema.parsed, schema.named)
    if not (isinstance(root, dict) and root.get("type") in ("record", "error")):
        arrow_type, convert = _avro_type(root, schema.named)
        return [ValueColumn(ROOT_VALUE_COLUMN, arrow_type, convert)]
    columns = []
    for field in root["fields"]:
        arrow_type, convert = _avro_type(field["type"], schema.named)
        columns.append(ValueColumn(field["name"], arrow_type, convert))
    return columns


def _avro_resolved(avro: Any, named: Mapping[str, Any]) -> Any:
    """A named type's definition in place of its name."""
    if isinstance(avro, str) and avro in named:
        return named[avro]
    return avro


_AVRO_PRIMITIVES: dict[str, tuple[pa.DataType, Convert]] = {
    "null": (pa.string(), lambda _: None),
    "boolean": (pa.bool_(), _boolean),
    "int": (pa.int32(), _integer),
    "long": (pa.int64(), _integer),
    "float": (pa.float32(), _double),
    "double": (pa.float64(), _double),
    "string": (pa.string(), _text),
    "bytes": (pa.binary(), _latin1_bytes),
}
_AVRO_LOGICAL: dict[str, tuple[pa.DataType, Convert]] = {
    "timestamp-millis": (TIMESTAMP, _scaled_integer(1000)),
    "timestamp-micros": (TIMESTAMP, _scaled_integer(1)),
    "date": (pa.date32(), _date),
}


def _avro_type(avro: Any, named: Mapping[str, Any]) -> tuple[pa.DataType, Convert]:
    avro = _avro_resolved(avro, named)
    if isinstance(avro, str):
        return _AVRO_PRIMITIVES[avro]
    if isinstance(avro, list):
        return _avro_union(avro, named)
    kind = avro["type"]
    if avro.get("logicalType") in _AVRO_LOGICAL and kind in ("int", "long"):
        return _AVRO_LOGICAL[avro["logicalType"]]
    if kind == "enum":
        return pa.string(), _text
    if kind == "fixed":
        return pa.binary(), _latin1_bytes
    if kind in _AVRO_PRIMITIVES:
        return _AVRO_PRIMITIVES[kind]
    return pa.string(), _json_text  # record, array, map


def _avro_union(branches: Sequence[Any], named: Mapping[str, Any]) -> tuple[pa.DataType, Convert]:
    others = [branch for branch in branches if branch != "null"]
    if len(others) != 1:
        return pa.string(), _json_text
    arrow_type, inner = _avro_type(others[0], named)

    def convert(item: Any) -> Any:
        # Avro's JSON encoding names the branch: {"long": 5}
        if not isinstance(item, dict) or len(item) != 1:
            return None
        return inner(next(iter(item.values())))

    return arrow_type, convert


# --- JSON Schema ------------------------------------------------------------------------------


def _json_schema_columns(raw: Any) -> list[ValueColumn]:
    properties = raw.get("properties") if isinstance(raw, dict) else None
    if not isinstance(properties, dict):
        return [ValueColumn(ROOT_VALUE_COLUMN, pa.string(), _json_text)]
    return [_json_schema_column(name, spec) for name, spec in properties.items()]


def _json_schema_column(name: str, spec: Any) -> ValueColumn:
    declared = spec.get("type") if isinstance(spec, dict) else None
    kinds = [declared] if isinstance(declared, str) else list(declared or [])
    kinds = [kind for kind in kinds if kind != "null"]
    if len(kinds) == 1 and kinds[0] in _JSON_KINDS:
        arrow_type, convert = _JSON_KINDS[kinds[0]]
        return ValueColumn(name, arrow_type, convert)
    return ValueColumn(name, pa.string(), _json_text)


# --- Protobuf ---------------------------------------------------------------------------------

_PROTOBUF_SCALARS: dict[int, tuple[pa.DataType, Convert]] = {
    FieldDescriptor.TYPE_INT32: (pa.int32(), _integer),
    FieldDescriptor.TYPE_SINT32: (pa.int32(), _integer),
    FieldDescriptor.TYPE_SFIXED32: (pa.int32(), _integer),
    FieldDescriptor.TYPE_UINT32: (pa.int64(), _integer),
    FieldDescriptor.TYPE_FIXED32: (pa.int64(), _integer),
    FieldDescriptor.TYPE_INT64: (pa.int64(), _integer),
    FieldDescriptor.TYPE_SINT64: (pa.int64(), _integer),
    FieldDescriptor.TYPE_SFIXED64: (pa.int64(), _integer),
    FieldDescriptor.TYPE_UINT64: (pa.uint64(), _integer),
    FieldDescriptor.TYPE_FIXED64: (pa.uint64(), _integer),
    FieldDescriptor.TYPE_FLOAT: (pa.float32(), _double),
    FieldDescriptor.TYPE_DOUBLE: (pa.float64(), _double),
    FieldDescriptor.TYPE_BOOL: (pa.bool_(), _boolean),
    FieldDescriptor.TYPE_STRING: (pa.string(), _text),
    FieldDescriptor.TYPE_BYTES: (pa.binary(), _base64_bytes),
    FieldDescriptor.TYPE_ENUM: (pa.string(), _text),
}


def _protobuf_columns(schema: ProtobufSchema) -> list[ValueColumn]:
    if not schema.descriptor.message_type:
        return []
    package = f"{schema.descriptor.package}." if schema.descriptor.package else ""
    first = schema.descriptor.message_type[0].name
    message: Descriptor = schema.pool.FindMessageTypeByName(package + first)
    return [_protobuf_column(field) for field in message.fields]


def _protobuf_column(field: FieldDescriptor) -> ValueColumn:
    repeated = field.is_repeated
    if repeated or field.type not in _PROTOBUF_SCALARS:
        return ValueColumn(field.json_name, pa.string(), _json_text)
    arrow_type, convert = _PROTOBUF_SCALARS[field.type]
    if field.type in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        convert = _unsigned
    return ValueColumn(field.json_name, arrow_type, convert)
