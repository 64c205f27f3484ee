"""Avro schemas: parsing with fastavro (named types of registered dependencies resolve), the
canonical text, and the Avro specification's schema-resolution rules as a compatibility check.

Canonical text: the schema JSON as given, compact; every attribute is kept (doc, default,
logicalType, aliases, order) so a deserializer gets back a schema meaning exactly what was
registered. With `normalize`, names are written fully qualified (no `namespace` attribute),
named types defined once and referred to by full name after, and each object's attributes in
one fixed order (`type`, `name`, then the rest sorted): two spellings of one schema that differ
only in namespace style or attribute order normalize to the same text.

Compatibility (the specification's "Schema Resolution"), reader against writer:
- records, enums and fixed match when their unqualified names are equal or the writer's full
  name is one of the reader's aliases; fixed sizes must be equal;
- record fields match by name or by the reader field's aliases; a reader field the writer lacks
  needs a default; writer fields the reader lacks are skipped;
- an enum symbol the writer has and the reader lacks is an error unless the reader's enum has
  a default;
- promotions: int to long, float or double; long to float or double; float to double; string
  and bytes both ways;
- a writer union is readable when every branch is; a reader union reads a writer type when any
  branch does; arrays and maps by their items and values;
- recursive types: a pair of named types already being compared counts as compatible.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fastavro.schema

from streamhouse.schemas.model import Dependency, InvalidSchema, ParsedSchema, Problem, SchemaType

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})
PROMOTIONS: Mapping[str, frozenset[str]] = {
    "long": frozenset({"int"}),
    "float": frozenset({"int", "long"}),
    "double": frozenset({"int", "long", "float"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}
_FIRST_KEYS = ("type", "name")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, eq=False)
class AvroSchema(ParsedSchema):
    raw: Any  # the schema JSON as given
    parsed: Any  # fastavro's form: full names, named types referred to by name after the first
    named: Mapping[str, Any]  # every named type visible to it, by full name
    normalized: bool = False
    schema_type: SchemaType = field(default=SchemaType.AVRO, init=False)

    def canonical_text(self) -> str:
        if self.normalized:
            return _compact(_ordered(self.parsed))
        return _compact(self.raw)

    def reader_problems(self, writer: ParsedSchema) -> list[Problem]:
        assert isinstance(writer, AvroSchema)
        return _Resolution(self.named, writer.named).check(self.parsed, writer.parsed, "")


def parse_avro(text: str, dependencies: Sequence[Dependency], normalize: bool) -> AvroSchema:
    named: dict[str, Any] = {}
    for dependency in dependencies:
        _parse_into(named, _load(dependency.text, f"dependency {dependency.name!r}"))
    raw = _load(text, "schema")
    parsed = _parse_into(named, raw)
    return AvroSchema(raw=raw, parsed=parsed, named=dict(named), normalized=normalize)


def _load(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidSchema(f"the Avro {what} is not JSON: {error}") from error


def _parse_into(named: dict[str, Any], raw: Any) -> Any:
    try:
        parsed = fastavro.schema.parse_schema(raw, named, _write_hint=False)
    except fastavro.schema.UnknownType as error:
        raise InvalidSchema(f"invalid Avro schema: unknown type {error}") from error
    except Exception as error:  # fastavro raises several unrelated types for a bad schema
        raise InvalidSchema(f"invalid Avro schema: {error}") from error
    _check_structure(raw, "")
    return parsed


def _check_structure(schema: Any, path: str) -> None:
    """What the specification demands and fastavro lets pass: records have a list of uniquely
    named fields, names are identifiers, unions hold no union and no type twice."""
    if isinstance(schema, list):
        _check_union(schema, path)
        for index, branch in enumerate(schema):
            _check_structure(branch, f"{path}/{index}")
        return
    if not isinstance(schema, dict):
        return
    if "name" in schema:
        _check_name(schema["name"], path)
    if schema["type"] in ("record", "error"):
        _check_fields(schema, path)
    for key in ("items", "values"):
        if key in schema:
            _check_structure(schema[key], f"{path}/{key}")
    if isinstance(schema["type"], (dict, list)):
        _check_structure(schema["type"], f"{path}/type")


def _check_name(full_name: str, path: str) -> None:
    if not all(_NAME.fullmatch(part) for part in full_name.split(".")):
        raise InvalidSchema(f"invalid Avro schema: {full_name!r} at {path or '/'} is not a name")


def _check_fields(schema: Mapping[str, Any], path: str) -> None:
    fields = schema.get("fields")
    if not isinstance(fields, list):
        raise InvalidSchema(f"invalid Avro schema: the record at {path or '/'} has no fields list")
    seen: set[str] = set()
    for index, item in enumerate(fields):
        _check_name(item["name"], f"{path}/fields/{index}")
        if item["name"] in seen:
            raise InvalidSchema(f"invalid Avro schema: field {item['name']!r} appears twice")
        seen.add(item["name"])
        _check_structure(item["type"], f"{path}/fields/{index}/type")


def _check_union(branches: list[Any], path: str) -> None:
    seen: set[str] = set()
    for branch in branches:
        if isinstance(branch, list):
            raise InvalidSchema(f"invalid Avro schema: a union directly in a union at {path}")
        key = _branch_identity(branch)
        if key in seen:
            raise InvalidSchema(f"invalid Avro schema: the union at {path or '/'} has {key} twice")
        seen.add(key)


def _branch_identity(branch: Any) -> str:
    """What a union may hold only once: a named type's name, any other type's kind."""
    if isinstance(branch, str):
        return branch
    if isinstance(branch, dict) and "name" in branch:
        return str(branch["name"])
    return kind(branch)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _ordered(value: Any) -> Any:
    if isinstance(value, list):
        return [_ordered(item) for item in value]
    if not isinstance(value, dict):
        return value
    first = [key for key in _FIRST_KEYS if key in value]
    rest = sorted(key for key in value if key not in _FIRST_KEYS)
    return {key: _ordered(value[key]) for key in first + rest}


def kind(schema: Any) -> str:
    """The Avro type a (resolved) schema is: a primitive, record, enum, fixed, array, map or
    union."""
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        inner = schema["type"]
        if isinstance(inner, str) and inner == "error":
            return "record"
        return inner if isinstance(inner, str) else kind(inner)
    return str(schema)


def short_name(full_name: str) -> str:
    return full_name.rsplit(".", 1)[-1]


def qualified_aliases(schema: Mapping[str, Any]) -> set[str]:
    """A named type's aliases as full names: an alias without a dot is in the type's own
    namespace."""
    namespace = schema["name"].rpartition(".")[0]
    return {
        alias if "." in alias or not namespace else f"{namespace}.{alias}"
        for alias in schema.get("aliases", ())
    }


class _Resolution:
    """One reader-against-writer comparison; remembers named-type pairs under comparison so a
    recursive type ends instead of looping."""

    def __init__(self, reader_named: Mapping[str, Any], writer_named: Mapping[str, Any]) -> None:
        self._reader_named = reader_named
        self._writer_named = writer_named
        self._in_progress: set[tuple[str, str]] = set()

    def check(self, reader: Any, writer: Any, path: str) -> list[Problem]:
        reader = _resolve(reader, self._reader_named)
        writer = _resolve(writer, self._writer_named)
        reader_kind, writer_kind = kind(reader), kind(writer)
        if writer_kind == "union":
            return self._writer_union(reader, writer, path)
        if reader_kind == "union":
            return self._reader_union(reader, writer, path)
        if reader_kind == writer_kind:
            return self._same_kind(reader, writer, reader_kind, path)
        if writer_kind in PROMOTIONS.get(reader_kind, ()):
            return []
        return [
            Problem(
                "TYPE_MISMATCH",
                path or "/",
                f"the reader's type {reader_kind} cannot read the writer's {writer_kind}",
            )
        ]

    def _writer_union(self, reader: Any, writer: list[Any], path: str) -> list[Problem]:
        problems: list[Problem] = []
        for index, branch in enumerate(writer):
            if kind(reader) == "union":
                problems += self._reader_union(reader, branch, f"{path}/{index}")
            else:
                problems += self.check(reader, branch, f"{path}/{index}")
        return problems

    def _reader_union(self, reader: list[Any], writer: Any, path: str) -> list[Problem]:
        if any(not self._probe(branch, writer, path) for branch in reader):
            return []
        writer_kind = kind(_resolve(writer, self._writer_named))
        return [
            Problem(
                "MISSING_UNION_BRANCH",
                path or "/",
                f"the reader's union has no branch that reads the writer's {writer_kind}",
            )
        ]

    def _probe(self, reader: Any, writer: Any, path: str) -> list[Problem]:
        """Problems of one candidate pairing, leaving no trace of in-progress pairs behind."""
        saved = set(self._in_progress)
        try:
            return self.check(reader, writer, path)
        finally:
            self._in_progress = saved

    def _same_kind(self, reader: Any, writer: Any, type_kind: str, path: str) -> list[Problem]:
        if type_kind in PRIMITIVES:
            return []
        if type_kind == "array":
            return self.check(reader["items"], writer["items"], f"{path}/items")
        if type_kind == "map":
            return self.check(reader["values"], writer["values"], f"{path}/values")
        problems = _name_problems(reader, writer, path)
        if problems:
            return problems
        if type_kind == "fixed":
            return _fixed_problems(reader, writer, path)
        if type_kind == "enum":
            return _enum_problems(reader, writer, path)
        pair = (reader["name"], writer["name"])
        if pair in self._in_progress:
            return []
        self._in_progress.add(pair)
        return self._record_problems(reader, writer, path)

    def _record_problems(self, reader: Any, writer: Any, path: str) -> list[Problem]:
        writer_fields = {item["name"]: item for item in writer["fields"]}
        problems: list[Problem] = []
        for index, reader_field in enumerate(reader["fields"]):
            where = f"{path}/fields/{index}"
            writer_field = _matching_field(reader_field, writer_fields)
            if writer_field is not None:
                problems += self.check(reader_field["type"], writer_field["type"], where)
            elif "default" not in reader_field:
                problems.append(
                    Problem(
                        "READER_FIELD_MISSING_DEFAULT_VALUE",
                        where,
                        f"the reader's field {reader_field['name']!r} has no default"
                        " and the writer has no such field",
                    )
                )
        return problems


def _resolve(schema: Any, named: Mapping[str, Any]) -> Any:
    """A schema with a reference to a named type replaced by the type's definition, and a
    wrapper such as {"type": "long", "logicalType": ...} kept (its kind is its type's)."""
    while True:
        if isinstance(schema, str) and schema not in PRIMITIVES:
            schema = named[schema]
        elif isinstance(schema, dict) and isinstance(schema["type"], (dict, list)):
            schema = schema["type"]
        elif (
            isinstance(schema, dict)
            and isinstance(schema["type"], str)
            and schema["type"] not in PRIMITIVES | NAMED | {"array", "map"}
        ):
            schema = named[schema["type"]]
        else:
            return schema


def _matching_field(reader_field: Any, writer_fields: Mapping[str, Any]) -> Any:
    for name in [reader_field["name"], *reader_field.get("aliases", ())]:
        if name in writer_fields:
            return writer_fields[name]
    return None


def _name_problems(reader: Any, writer: Any, path: str) -> list[Problem]:
    if short_name(reader["name"]) == short_name(writer["name"]):
        return []
    if writer["name"] in qualified_aliases(reader):
        return []
    return [
        Problem(
            "NAME_MISMATCH",
            f"{path}/name",
            f"the reader's {reader['name']} does not match the writer's {writer['name']}",
        )
    ]


def _fixed_problems(reader: Any, writer: Any, path: str) -> list[Problem]:
    if reader["size"] == writer["size"]:
        return []
    return [
        Problem(
            "FIXED_SIZE_MISMATCH",
            f"{path}/size",
            f"the reader's size {reader['size']} differs from the writer's {writer['size']}",
        )
    ]


def _enum_problems(reader: Any, writer: Any, path: str) -> list[Problem]:
    missing = [symbol for symbol in writer["symbols"] if symbol not in reader["symbols"]]
    if not missing or reader.get("default") in reader["symbols"]:
        return []
    return [
        Problem(
            "MISSING_ENUM_SYMBOLS",
            f"{path}/symbols",
            f"the reader's enum lacks the writer's symbols {missing} and has no default",
        )
    ]
