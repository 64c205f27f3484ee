"""Avro datums to and from Avro's JSON encoding, the form Confluent's REST Proxy embeds.

Avro's JSON encoding (the specification's "JSON Encoding"): a union value is null or an object
with one key, the branch's type name (a primitive's name, a named type's full name, `array`,
`map`) whose value is the datum; `bytes` and `fixed` are strings whose code points 0-255 are the
bytes; an enum is its symbol. Logical types travel as their underlying type (a timestamp-millis
is a long).

Writing walks the schema and the JSON value together, so a mismatch names the field where it is
(`address.city`); a record field left out takes its default, one the schema lacks is refused.
The walk hands fastavro a datum with every union branch named (its tuple notation), so the branch
written is the one asked for even where another would accept the value (a long in [int, long]).
Reading is avro_json_reader's.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from typing import Any, NoReturn

import fastavro
import fastavro.schema

from streamhouse.schemas.avro_json_reader import branch_name, read_avro_json
from streamhouse.schemas.avro_schema import PRIMITIVES, AvroSchema
from streamhouse.schemas.model import DatumMismatch

INT_RANGE = (-(2**31), 2**31 - 1)
LONG_RANGE = (-(2**63), 2**63 - 1)
BYTE_CODE_POINT_MAX = 255
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class AvroDatums:
    """Datums of one Avro schema."""

    def __init__(self, schema: AvroSchema) -> None:
        named = dict(schema.named)  # parsing adds the schema's own named types
        self._writer = fastavro.schema.parse_schema(schema.parsed, named_schemas=named)
        self._named: Mapping[str, Any] = named

    def encode(self, value: Any) -> bytes:
        datum = self._datum(self._writer, value, "")
        out = io.BytesIO()
        try:
            fastavro.schemaless_writer(out, self._writer, datum, strict_allow_default=True)
        except (ValueError, TypeError, OverflowError) as error:  # a logical type's own check
            raise DatumMismatch(f"the value does not fit the Avro schema: {error}") from None
        return out.getvalue()

    def decode(self, data: bytes) -> Any:
        return read_avro_json(self._writer, self._named, data)

    # --- JSON encoding to fastavro's datum --------------------------------------------------

    def _datum(self, schema: Any, value: Any, path: str) -> Any:
        if isinstance(schema, str):
            if schema in self._named:
                return self._datum(self._named[schema], value, path)
            return _primitive(schema, value, path)
        if isinstance(schema, list):
            return self._union(schema, value, path)
        kind = schema["type"]
        if kind in ("record", "error"):
            return self._record(schema, value, path)
        if kind == "array":
            return self._array(schema["items"], value, path)
        if kind == "map":
            return self._map(schema["values"], value, path)
        if kind == "enum":
            if value not in schema["symbols"]:
                _refuse(path, f"one of the symbols {schema['symbols']}", value)
            return value
        if kind == "fixed":
            return _fixed(schema["size"], value, path)
        return _primitive(kind, value, path)  # a primitive with attributes (a logical type)

    def _array(self, items: Any, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            _refuse(path, "an array", value)
        return [self._datum(items, item, f"{path}[{i}]") for i, item in enumerate(value)]

    def _map(self, values: Any, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            _refuse(path, "a map (a JSON object)", value)
        return {key: self._datum(values, item, _child(path, key)) for key, item in value.items()}

    def _record(self, schema: Mapping[str, Any], value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            _refuse(path, f"a record {schema['name']} (a JSON object)", value)
        names = {field["name"] for field in schema["fields"]}
        unknown = sorted(set(value) - names)
        if unknown:
            raise DatumMismatch(
                f"{_where(path)}record {schema['name']} has no field '{unknown[0]}'"
            )
        datum = {}
        for field in schema["fields"]:
            name = field["name"]
            if name in value:
                datum[name] = self._datum(field["type"], value[name], _child(path, name))
            elif "default" not in field:
                raise DatumMismatch(f"field '{_child(path, name)}' is missing and has no default")
        return datum

    def _union(self, branches: list[Any], value: Any, path: str) -> Any:
        names = [branch_name(branch) for branch in branches]
        if value is None:
            if "null" not in names:
                _refuse(path, f"one of the union branches {names}", value)
            return None
        if not isinstance(value, dict) or len(value) != 1:
            _refuse(path, f"null or an object naming one union branch of {names}", value)
        ((name, inner),) = value.items()
        if name not in names or name == "null":
            _refuse(path, f"one of the union branches {names}", name)
        return (name, self._datum(branches[names.index(name)], inner, path))


def _primitive(kind: str, value: Any, path: str) -> Any:
    assert kind in PRIMITIVES, kind  # a parsed schema names no other type
    if kind == "null":
        if value is not None:
            _refuse(path, "null", value)
        return None
    if kind == "boolean":
        if not isinstance(value, bool):
            _refuse(path, "a boolean", value)
        return value
    if kind in ("int", "long"):
        low, high = INT_RANGE if kind == "int" else LONG_RANGE
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            _refuse(path, f"an Avro {kind} (an integer from {low} to {high})", value)
        return value
    if kind in ("float", "double"):
        if isinstance(value, str) and value in _NON_FINITE:
            return _NON_FINITE[value]
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            _refuse(path, f"an Avro {kind} (a number)", value)
        return float(value)
    if kind == "string":
        if not isinstance(value, str):
            _refuse(path, "a string", value)
        return value
    return _bytes(value, path)


def _bytes(value: Any, path: str) -> bytes:
    if not isinstance(value, str) or any(ord(char) > BYTE_CODE_POINT_MAX for char in value):
        _refuse(path, "bytes (a string of code points 0-255, one per byte)", value)
    return value.encode("latin-1")


def _fixed(size: int, value: Any, path: str) -> bytes:
    data = _bytes(value, path)
    if len(data) != size:
        raise DatumMismatch(f"{_where(path)}a fixed of {size} bytes was given {len(data)} bytes")
    return data


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _where(path: str) -> str:
    return f"field '{path}': " if path else ""


def _refuse(path: str, expected: str, value: Any) -> NoReturn:
    shown = json.dumps(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    subject = f"field '{path}'" if path else "the value"
    raise DatumMismatch(f"{subject} must be {expected}, not {shown}")
