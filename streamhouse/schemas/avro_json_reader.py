"""Avro's binary encoding read straight into Avro's JSON encoding (see avro_datums), so a union
is rendered by the branch the writer chose, and logical types as their underlying type, as
Confluent's REST Proxy renders them. A float is written with the fewest digits that read back
as the same 32-bit value; NaN and the infinities as the strings `NaN`, `Infinity`,
`-Infinity`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Mapping
from typing import Any

from streamhouse.kafka.varint import VARLONG_BYTES_MAX, decode_zigzag
from streamhouse.schemas.avro_schema import NAMED
from streamhouse.schemas.model import UndecodableDatum

ITEMS_MAX = 1_000_000  # array and map items one datum may hold (a null item takes no bytes)
FLOAT_DIGITS_MAX = 9  # enough for any 32-bit float
_FLOAT = struct.Struct("<f")
_DOUBLE = struct.Struct("<d")
_INT_RANGE = (-(2**31), 2**31 - 1)


def read_avro_json(schema: Any, named: Mapping[str, Any], data: bytes) -> Any:
    """The datum `data` holds, in Avro's JSON encoding; UndecodableDatum if it holds none."""
    reader = _Reader(data, named)
    try:
        value = reader.read(schema)
    except RecursionError:
        raise UndecodableDatum("the Avro datum nests too deeply to read") from None
    if reader.position != len(data):
        raise UndecodableDatum(
            f"the Avro datum ends at byte {reader.position} of {len(data)}: bytes left over"
        )
    return value


class _Reader:
    def __init__(self, data: bytes, named: Mapping[str, Any]) -> None:
        self._data = data
        self._named = named
        self.position = 0
        self._items_left = ITEMS_MAX

    def read(self, schema: Any) -> Any:
        if isinstance(schema, str):
            if schema in self._named:
                return self.read(self._named[schema])
            return self._primitive(schema)
        if isinstance(schema, list):
            return self._union(schema)
        kind = schema["type"]
        if kind in ("record", "error"):
            return {field["name"]: self.read(field["type"]) for field in schema["fields"]}
        if kind == "enum":
            return self._pick(schema["symbols"], "enum symbol")
        if kind == "fixed":
            return self._take(schema["size"]).decode("latin-1")
        if kind == "array":
            return [self.read(schema["items"]) for _ in self._items()]
        if kind == "map":
            return {self._primitive("string"): self.read(schema["values"]) for _ in self._items()}
        return self._primitive(kind)

    def _union(self, branches: list[Any]) -> Any:
        branch = self._pick(branches, "union branch")
        value = self.read(branch)
        if branch == "null":
            return None
        return {branch_name(branch): value}

    def _primitive(self, kind: str) -> Any:
        if kind == "null":
            return None
        if kind == "boolean":
            (byte,) = self._take(1)
            if byte > 1:
                raise UndecodableDatum(f"byte {self.position - 1} is {byte}, not a boolean")
            return byte == 1
        if kind in ("int", "long"):
            value = self._long()
            if kind == "int" and not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
                raise UndecodableDatum(f"Avro int {value} at byte {self.position} exceeds 32 bits")
            return value
        if kind == "float":
            return _float_json(self._take(_FLOAT.size))
        if kind == "double":
            return _finite_or_named(_DOUBLE.unpack(self._take(_DOUBLE.size))[0])
        data = self._take(self._length())
        if kind == "bytes":
            return data.decode("latin-1")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise UndecodableDatum(f"an Avro string is not UTF-8: {error}") from None

    def _items(self) -> Iterator[None]:
        """Once per item of an array or map, read block by block (each a count, negative
        when followed by the block's size in bytes, which is not needed here; 0 ends)."""
        while count := self._long():
            if count < 0:
                count = -count
                self._long()
            self._items_left -= count
            if self._items_left < 0:
                raise UndecodableDatum(f"the Avro datum holds more than {ITEMS_MAX} items")
            for _ in range(count):
                yield

    def _pick(self, choices: list[Any], what: str) -> Any:
        index = self._long()
        if not 0 <= index < len(choices):
            raise UndecodableDatum(f"{what} {index} at byte {self.position} does not exist")
        return choices[index]

    def _length(self) -> int:
        length = self._long()
        if length < 0:
            raise UndecodableDatum(f"negative length {length} at byte {self.position}")
        return length

    def _long(self) -> int:
        value, self.position = decode_zigzag(
            self._data, self.position, len(self._data), VARLONG_BYTES_MAX, 64, UndecodableDatum
        )
        return value

    def _take(self, count: int) -> bytes:
        end = self.position + count
        if end > len(self._data):
            raise UndecodableDatum(
                f"the Avro datum is cut short: {count} bytes wanted at {self.position}"
            )
        taken = self._data[self.position : end]
        self.position = end
        return taken


def branch_name(branch: Any) -> str:
    """The name Avro's JSON encoding tags a union value with (fastavro's parsed schemas hold
    full names)."""
    if isinstance(branch, str):
        return branch
    if branch["type"] in NAMED:
        return str(branch["name"])
    return str(branch["type"])


def _float_json(data: bytes) -> float | str:
    (value,) = _FLOAT.unpack(data)
    if not math.isfinite(value):
        return _finite_or_named(value)
    for digits in range(1, FLOAT_DIGITS_MAX + 1):
        shortest = float(f"{value:.{digits}g}")
        if _FLOAT.pack(shortest) == data:
            return shortest
    return float(value)


def _finite_or_named(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value
