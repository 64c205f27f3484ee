"""Whether a JSON Schema reader accepts every document a writer schema accepts.

Compatibility asks one question, the writer's documents against the reader: is every document
valid under the writer schema valid under the reader schema? The check proves it rule by rule
(Confluent's JSON Schema rules are the model); whatever it cannot prove is reported as a
problem, so a "compatible" verdict is sound, never a guess:
- `type`: the reader accepts every type the writer allows (widening, e.g. integer to number,
  is fine; narrowing is TYPE_NARROWED). A writer with no `type` allows every type.
- `enum` / `const` in the writer: its (writer-valid) values are validated by the reader — exact.
  `enum` / `const` in the reader with an open writer: ENUM_ARRAY_NARROWED.
- numbers: `minimum`/`exclusiveMinimum`/`maximum`/`exclusiveMaximum` (draft 4's boolean form
  too) may loosen, not tighten or appear; `multipleOf` may stay or become a divisor of an
  integral writer `multipleOf`.
- strings: `minLength`/`maxLength` may loosen, not tighten or appear; `pattern` and `format`
  may be dropped, not added or changed.
- arrays: items position by position (tuple forms, `additionalItems`, 2020-12 `prefixItems`),
  `minItems`/`maxItems`, `uniqueItems` (not added), `contains` with `minContains`/`maxContains`
  (unchanged or dropped).
- objects: `required` may lose names, not gain them (REQUIRED_ATTRIBUTE_ADDED); each property
  is compared under the schema each side gives it (its `properties` entry, else matching
  `patternProperties`, else `additionalProperties`), which is Confluent's content model:
  a property added to a reader is fine when the writer was closed (additionalProperties false)
  or its open schema for that name is readable by the new property's schema, and is
  PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL otherwise; a property removed from a closed reader is
  PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL; `additionalProperties` may widen, not narrow.
  `minProperties`/`maxProperties` loosen only; `dependencies`/`dependentRequired` may lose
  names; `propertyNames` and `dependentSchemas` unchanged or dropped.
- nested schemas recursively; `$ref` followed on both sides (a pair under comparison counts as
  compatible when met again, and depth is bounded: too deep is a problem).
- combinators: a reader `allOf` holds when every part does; a writer `anyOf`/`oneOf` when
  every branch is read; a reader `anyOf` when some branch reads the writer; a reader `oneOf`
  when some branch reads the writer and every other branch's types are disjoint from the
  writer's (or the writer has the identical `oneOf`); a reader `not` when its types are
  disjoint from the writer's or the writer has the identical `not`; a reader `if`/`then`/`else`
  only if the writer's are identical. Writer-side `allOf`, `not`, `if`/`then`/`else` only
  narrow the writer and are used where a part alone suffices or else ignored.
- keywords the check does not know: a reader value that differs from the writer's is
  UNKNOWN_KEYWORD_CHANGED (we cannot prove what it means to a validator that knows it);
  `unevaluatedProperties`/`unevaluatedItems` in the reader count as unknown.
"""

from __future__ import annotations

import json
import re
from typing import Any

import referencing.exceptions

from streamhouse.schemas.json_node import DRAFT2020, SchemaNode
from streamhouse.schemas.model import Problem

MAX_DEPTH = 48
ALL_TYPES = frozenset({"null", "boolean", "object", "array", "number", "integer", "string"})
ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "id",
        "$anchor",
        "$comment",
        "$defs",
        "definitions",
        "title",
        "description",
        "default",
        "examples",
        "readOnly",
        "writeOnly",
        "deprecated",
        "$vocabulary",
        "contentMediaType",
        "contentEncoding",
        "contentSchema",
    }
)
COMBINATORS = frozenset({"$ref", "allOf", "anyOf", "oneOf", "not", "if", "then", "else"})
NUMERIC = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"})
STRING = frozenset({"minLength", "maxLength", "pattern", "format"})
ARRAY = frozenset(
    {
        "items",
        "additionalItems",
        "prefixItems",
        "minItems",
        "maxItems",
        "uniqueItems",
        "contains",
        "minContains",
        "maxContains",
    }
)
OBJECT = frozenset(
    {
        "properties",
        "patternProperties",
        "additionalProperties",
        "required",
        "minProperties",
        "maxProperties",
        "dependencies",
        "dependentRequired",
        "dependentSchemas",
        "propertyNames",
    }
)
KNOWN = ANNOTATIONS | COMBINATORS | NUMERIC | STRING | ARRAY | OBJECT | {"type", "enum", "const"}
UNCHECKABLE = frozenset(
    {"unevaluatedProperties", "unevaluatedItems", "$dynamicRef", "$recursiveRef"}
)


def reader_problems(reader: SchemaNode, writer: SchemaNode) -> list[Problem]:
    """Why documents valid under `writer` may be invalid under `reader`; empty when none can."""
    return _Check().reads(reader, writer, "", 0)


def _has_ref(schema: Any) -> bool:
    text = json.dumps(schema)
    return '"$ref"' in text or '"$dynamicRef"' in text or '"$recursiveRef"' in text


def _same(one: Any, other: Any) -> bool:
    """JSON-equal and free of references (whose targets could differ between the sides)."""
    return _json(one) == _json(other) and not _has_ref(one)


def _json(value: Any) -> str:
    """A value's JSON spelling: equal spellings are equal JSON (Python's == says True == 1)."""
    return json.dumps(value, sort_keys=True)


def _same_node(reader: SchemaNode, writer: SchemaNode) -> bool:
    return reader.root.validator_class is writer.root.validator_class and _same(
        reader.schema, writer.schema
    )


def _types(node: SchemaNode) -> frozenset[str]:
    """The types a subschema's own `type` keyword allows (integer inside number)."""
    declared = node.keyword("type")
    if declared is None:
        return ALL_TYPES
    found = frozenset([declared] if isinstance(declared, str) else declared)
    return found | {"integer"} if "number" in found else found


def _disjoint(one: SchemaNode, other: SchemaNode) -> bool:
    return not _types(one) & _types(other)


def _trivial(node: SchemaNode) -> bool:
    return node.schema is True or (
        isinstance(node.schema, dict) and set(node.schema) <= ANNOTATIONS
    )


def _empty(node: SchemaNode) -> bool:
    if node.schema is False:
        return True
    return (
        isinstance(node.schema, dict)
        and "not" in node.schema
        and _trivial(node.child(node.schema["not"]))
    )


def _conjuncts(node: SchemaNode, unresolved: bool) -> list[SchemaNode]:
    """The node as an intersection: itself without `$ref`/`allOf` first, then the `$ref`
    target and the `allOf` parts. A reference that does not resolve stands for `unresolved`."""
    schema = node.schema
    if not isinstance(schema, dict) or ("$ref" not in schema and "allOf" not in schema):
        return [node]
    parts: list[SchemaNode] = []
    if "$ref" in schema and not node.ref_has_siblings():
        return [node.with_schema({}), _referred(node, unresolved)]
    if "$ref" in schema:
        parts.append(_referred(node, unresolved))
    parts += [node.child(part) for part in schema.get("allOf", [])]
    rest = {key: value for key, value in schema.items() if key not in ("$ref", "allOf")}
    return [node.with_schema(rest), *parts]


def _referred(node: SchemaNode, unresolved: bool) -> SchemaNode:
    try:
        resolved = node.resolver.lookup(node.schema["$ref"])
    except referencing.exceptions.Unresolvable:
        return node.with_schema(unresolved)
    return SchemaNode(resolved.contents, resolved.resolver, node.root)


def _plain(node: SchemaNode) -> SchemaNode:
    """The node without its combinators (a writer so loosened writes at least as much)."""
    if "$ref" in node.schema and not node.ref_has_siblings():
        return node.with_schema({})
    return node.with_schema(
        {key: value for key, value in node.schema.items() if key not in COMBINATORS}
    )


class _Check:
    """One reader-against-writer proof; remembers the pairs under comparison."""

    def __init__(self) -> None:
        self._in_progress: set[tuple[int, int]] = set()

    def reads(self, reader: SchemaNode, writer: SchemaNode, path: str, depth: int) -> list[Problem]:
        if _trivial(reader) or _empty(writer) or _same_node(reader, writer):
            return []
        if depth > MAX_DEPTH:
            return [Problem("TOO_DEEP", path or "/", "nesting too deep to prove compatible")]
        pair = (id(reader.schema), id(writer.schema))
        if pair in self._in_progress:
            return []
        self._in_progress.add(pair)
        try:
            return self._reads(reader, writer, path, depth + 1)
        finally:
            self._in_progress.discard(pair)

    def _reads(
        self, reader: SchemaNode, writer: SchemaNode, path: str, depth: int
    ) -> list[Problem]:
        if reader.schema is False:
            return [Problem("SCHEMA_NARROWED", path or "/", "the reader accepts nothing")]
        if writer.schema is True:
            return [
                Problem(
                    "SCHEMA_NARROWED",
                    path or "/",
                    "the reader does not accept everything the writer did",
                )
            ]
        if "enum" in writer.schema or "const" in writer.schema:
            return self._finite_writer(reader, writer, path)
        reader_parts = _conjuncts(reader, unresolved=False)
        if len(reader_parts) > 1:
            problems: list[Problem] = []
            for part in reader_parts:
                problems += self.reads(part, writer, path, depth)
            return problems
        return self._split_writer(reader, writer, path, depth)

    def _finite_writer(self, reader: SchemaNode, writer: SchemaNode, path: str) -> list[Problem]:
        """A writer with `enum`/`const` writes only those values: ask the reader of each."""
        values = list(writer.schema.get("enum", []))
        if "const" in writer.schema:
            values.append(writer.schema["const"])
        where = f"{path}/enum" if "enum" in writer.schema else f"{path}/const"
        return [
            Problem(
                "ENUM_ARRAY_NARROWED",
                where,
                f"the reader rejects the writer's value {json.dumps(value)}",
            )
            for value in values
            if writer.is_valid(value) and not reader.is_valid(value)
        ]

    def _split_writer(
        self, reader: SchemaNode, writer: SchemaNode, path: str, depth: int
    ) -> list[Problem]:
        """A writer union is read when each branch is; a writer with parts is read when one
        part alone is, or when the writer without its combinators is."""
        attempts: list[list[Problem]] = []
        for keyword in ("anyOf", "oneOf"):
            branches = writer.keyword(keyword)
            if branches is None or _same(reader.keyword(keyword), branches):
                continue
            attempt: list[Problem] = []
            for index, branch in enumerate(branches):
                attempt += self.reads(
                    reader, writer.child(branch), f"{path}/{keyword}/{index}", depth
                )
            if not attempt:
                return []
            attempts.append(attempt)
        for part in _conjuncts(writer, unresolved=True)[1:]:
            attempt = self.reads(reader, part, path, depth)
            if not attempt:
                return []
            attempts.append(attempt)
        attempt = self._plain_reads(reader, writer, path, depth)
        if not attempt:
            return []
        attempts.append(attempt)
        return min(attempts, key=len)

    def _plain_reads(
        self, reader: SchemaNode, full_writer: SchemaNode, path: str, depth: int
    ) -> list[Problem]:
        """The reader (no `$ref`/`allOf` left) against the writer without its combinators."""
        writer = _plain(full_writer)
        problems = self._reader_combinators(reader, full_writer, path, depth)
        problems += _type_problems(reader, writer, path)
        problems += _unknown_keyword_problems(reader, writer, path)
        if "enum" in reader.schema or "const" in reader.schema:
            problems.append(
                Problem(
                    "ENUM_ARRAY_NARROWED",
                    path or "/",
                    "the reader limits values to a list the writer did not",
                )
            )
        writer_types = _types(writer)
        if writer_types & {"number", "integer"}:
            problems += _numeric_problems(reader, writer, path)
        if "string" in writer_types:
            problems += _string_problems(reader, writer, path)
        if "array" in writer_types:
            problems += self._array_problems(reader, writer, path, depth)
        if "object" in writer_types:
            problems += self._object_problems(reader, writer, path, depth)
        return problems

    def _reader_combinators(
        self, reader: SchemaNode, writer: SchemaNode, path: str, depth: int
    ) -> list[Problem]:
        problems: list[Problem] = []
        if "anyOf" in reader.schema:
            problems += self._reader_any_of(reader, writer, path, depth)
        if "oneOf" in reader.schema:
            problems += self._reader_one_of(reader, writer, path, depth)
        if "not" in reader.schema:
            excluded = reader.child(reader.schema["not"])
            if not (
                _same(reader.schema["not"], writer.keyword("not")) or _disjoint(excluded, writer)
            ):
                problems.append(
                    Problem(
                        "NOT_TYPE_EXTENDED",
                        f"{path}/not",
                        "the reader's not may exclude what the writer wrote",
                    )
                )
        conditional = [reader.schema.get(key) for key in ("if", "then", "else")]
        if conditional != [None, None, None] and not _same(
            conditional, [writer.keyword(key) for key in ("if", "then", "else")]
        ):
            problems.append(
                Problem(
                    "COMBINED_TYPE_SUBSCHEMAS_CHANGED",
                    f"{path}/if",
                    "the reader's if/then/else differs from the writer's",
                )
            )
        return problems

    def _reader_any_of(
        self, reader: SchemaNode, writer: SchemaNode, path: str, depth: int
    ) -> list[Problem]:
        if _same(reader.schema["anyOf"], writer.keyword("anyOf")):
            return []
        for branch in reader.schema["anyOf"]:
            if not self.reads(reader.child(branch), writer, path, depth):
                return []
        return [
            Problem(
                "SUM_TYPE_NARROWED",
                f"{path}/anyOf",
                "no branch of the reader's anyOf reads the writer",
            )
        ]

    def _reader_one_of(
        self, reader: SchemaNode, writer: SchemaNode, path: str, depth: int
    ) -> list[Problem]:
        if _same(reader.schema["oneOf"], writer.keyword("oneOf")):
            return []
        nodes = [reader.child(branch) for branch in reader.schema["oneOf"]]
        for index, node in enumerate(nodes):
            others = nodes[:index] + nodes[index + 1 :]
            if all(_disjoint(other, writer) for other in others) and not self.reads(
                node, writer, path, depth
            ):
                return []
        return [
            Problem(
                "SUM_TYPE_NARROWED",
                f"{path}/oneOf",
                "cannot prove exactly one branch of the reader's oneOf accepts the writer's data",
            )
        ]

    def _array_problems(
        self, reader: SchemaNode, writer: SchemaNode, path: str, depth: int
    ) -> list[Problem]:
        problems = _count_problems(reader, writer, path, "minItems", "maxItems", "ITEMS")
        if reader.keyword("uniqueItems") is True and writer.keyword("uniqueItems") is not True:
            problems.append(
                Problem(
                    "UNIQUE_ITEMS_ADDED", f"{path}/uniqueItems", "the reader demands unique items"
                )
            )
        contains = [reader.keyword(key) for key in ("contains", "minContains", "maxContains")]
        if contains[0] is not None and not _same(
            contains, [writer.keyword(key) for key in ("contains", "minContains", "maxContains")]
        ):
            problems.append(
                Problem(
                    "CONTAINS_CHANGED",
                    f"{path}/contains",
                    "the reader's contains differs from the writer's",
                )
            )
        reader_positions, reader_rest = _positional(reader)
        writer_positions, writer_rest = _positional(writer)
        for index in range(max(len(reader_positions), len(writer_positions))):
            reader_item = reader_positions[index] if index < len(reader_positions) else reader_rest
            writer_item = writer_positions[index] if index < len(writer_positions) else writer_rest
            problems += self.reads(
                reader.child(reader_item), writer.child(writer_item), f"{path}/items/{index}", depth
            )
        return problems + self.reads(
            reader.child(reader_rest), writer.child(writer_rest), f"{path}/items", depth
        )

    def _object_problems(
        self, reader: SchemaNode, writer: SchemaNode, path: str, depth: int
    ) -> list[Problem]:
        problems = _count_problems(
            reader, writer, path, "minProperties", "maxProperties", "PROPERTIES"
        )
        writer_required = set(writer.keyword("required", []))
        for name in reader.keyword("required", []):
            if name not in writer_required:
                problems.append(
                    Problem(
                        "REQUIRED_ATTRIBUTE_ADDED",
                        f"{path}/required",
                        f"the reader requires {name!r}, the writer did not",
                    )
                )
        problems += _dependency_problems(reader, writer, path)
        if reader.keyword("propertyNames") is not None and not _same(
            reader.keyword("propertyNames"), writer.keyword("propertyNames")
        ):
            problems.append(
                Problem(
                    "PROPERTY_NAMES_CHANGED",
                    f"{path}/propertyNames",
                    "the reader's propertyNames differs",
                )
            )
        names = dict.fromkeys(
            [*reader.keyword("properties", {}), *writer.keyword("properties", {})]
        )
        for name in names:
            problems += self._property_problems(
                reader, writer, name, f"{path}/properties/{name}", depth
            )
        return problems + self._other_property_problems(reader, writer, path, depth)

    def _property_problems(
        self, reader: SchemaNode, writer: SchemaNode, name: str, path: str, depth: int
    ) -> list[Problem]:
        writer_schemas = _schemas_for(writer, name)
        problems: list[Problem] = []
        for reader_schema in _schemas_for(reader, name):
            attempts = [
                self.reads(reader.child(reader_schema), writer.child(one), path, depth)
                for one in writer_schemas
            ]
            if all(attempts):
                problems += _named_property_problem(reader, writer, name, path) or attempts[0]
        return problems

    def _other_property_problems(
        self, reader: SchemaNode, writer: SchemaNode, path: str, depth: int
    ) -> list[Problem]:
        """Names neither side lists: under `patternProperties` or `additionalProperties`."""
        reader_patterns = reader.keyword("patternProperties", {})
        writer_patterns = writer.keyword("patternProperties", {})
        reader_rest = reader.keyword("additionalProperties", True)
        writer_rest = writer.keyword("additionalProperties", True)
        if _same(reader_patterns, writer_patterns) or not (reader_patterns or writer_patterns):
            pairs = [(reader_rest, writer_rest)]
        else:
            reader_all = [*reader_patterns.values(), reader_rest]
            writer_all = [*writer_patterns.values(), writer_rest]
            pairs = [(one, other) for one in reader_all for other in writer_all]
        problems: list[Problem] = []
        for reader_schema, writer_schema in pairs:
            found = self.reads(
                reader.child(reader_schema),
                writer.child(writer_schema),
                f"{path}/additionalProperties",
                depth,
            )
            if found:
                problems.append(
                    Problem(
                        "ADDITIONAL_PROPERTIES_NARROWED",
                        f"{path}/additionalProperties",
                        "the reader accepts fewer unlisted properties than the writer",
                    )
                )
        return problems


def _schemas_for(node: SchemaNode, name: str) -> list[Any]:
    """Every subschema a property called `name` must satisfy."""
    found = []
    if name in node.keyword("properties", {}):
        found.append(node.schema["properties"][name])
    for pattern, schema in node.keyword("patternProperties", {}).items():
        if _matches(pattern, name):
            found.append(schema)
    return found or [node.keyword("additionalProperties", True)]


def _matches(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return True  # a pattern we cannot read counts as matching: its schema then applies


def _named_property_problem(
    reader: SchemaNode, writer: SchemaNode, name: str, path: str
) -> list[Problem]:
    in_reader = name in reader.keyword("properties", {})
    in_writer = name in writer.keyword("properties", {})
    if in_reader and not in_writer:
        return [
            Problem(
                "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
                path,
                f"the reader adds {name!r} with a schema the writer's open model did not promise",
            )
        ]
    if in_writer and not in_reader:
        return [
            Problem(
                "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                path,
                f"the reader drops {name!r} and does not accept it as an unlisted property",
            )
        ]
    return []


def _dependency_problems(reader: SchemaNode, writer: SchemaNode, path: str) -> list[Problem]:
    writer_dependencies = _dependencies(writer)
    problems = []
    for name, needed in _dependencies(reader).items():
        theirs = writer_dependencies.get(name)
        if isinstance(needed, list):
            fine = isinstance(theirs, list) and set(needed) <= set(theirs)
        else:
            fine = _same(needed, theirs)
        if not fine:
            problems.append(
                Problem(
                    "DEPENDENCY_ADDED",
                    f"{path}/dependencies/{name}",
                    f"the reader adds a dependency for {name!r}",
                )
            )
    return problems


def _dependencies(node: SchemaNode) -> dict[str, Any]:
    return {
        **node.keyword("dependencies", {}),
        **node.keyword("dependentRequired", {}),
        **node.keyword("dependentSchemas", {}),
    }


def _positional(node: SchemaNode) -> tuple[list[Any], Any]:
    """An array schema's per-position item schemas and the schema of the items after them."""
    if node.draft() == DRAFT2020:
        return list(node.keyword("prefixItems", [])), node.keyword("items", True)
    items = node.keyword("items")
    if isinstance(items, list):
        return items, node.keyword("additionalItems", True)
    return [], True if items is None else items


def _type_problems(reader: SchemaNode, writer: SchemaNode, path: str) -> list[Problem]:
    missing = _types(writer) - _types(reader)
    if not missing:
        return []
    return [
        Problem("TYPE_NARROWED", f"{path}/type", f"the reader no longer accepts {sorted(missing)}")
    ]


def _unknown_keyword_problems(reader: SchemaNode, writer: SchemaNode, path: str) -> list[Problem]:
    problems = []
    for keyword, value in reader.schema.items():
        if keyword in UNCHECKABLE or (
            keyword not in KNOWN and not _same(value, writer.keyword(keyword))
        ):
            problems.append(
                Problem(
                    "UNKNOWN_KEYWORD_CHANGED",
                    f"{path}/{keyword}",
                    f"cannot prove the reader's {keyword!r} accepts what the writer wrote",
                )
            )
    return problems


def _numeric_problems(reader: SchemaNode, writer: SchemaNode, path: str) -> list[Problem]:
    problems = []
    for side, kind in (("minimum", "MINIMUM"), ("maximum", "MAXIMUM")):
        reader_bound, writer_bound = _bound(reader, side), _bound(writer, side)
        if reader_bound is None:
            continue
        if writer_bound is None:
            problems.append(Problem(f"{kind}_ADDED", f"{path}/{side}", f"the reader adds a {side}"))
        elif _stricter(reader_bound, writer_bound, side):
            change = "INCREASED" if side == "minimum" else "DECREASED"
            problems.append(
                Problem(f"{kind}_{change}", f"{path}/{side}", f"the reader's {side} is stricter")
            )
    divisor, multiple = reader.keyword("multipleOf"), writer.keyword("multipleOf")
    if divisor is not None and not _divides(divisor, multiple):
        problems.append(
            Problem(
                "MULTIPLE_OF_CHANGED",
                f"{path}/multipleOf",
                f"the reader's multipleOf {divisor} does not divide the writer's",
            )
        )
    return problems


def _bound(node: SchemaNode, side: str) -> tuple[float, bool] | None:
    """The tightest (value, exclusive) bound on one side, in the node's draft's spelling."""
    exclusive_key = "exclusiveMinimum" if side == "minimum" else "exclusiveMaximum"
    value, exclusive = node.keyword(side), node.keyword(exclusive_key)
    candidates: list[tuple[float, bool]] = []
    if value is not None:
        candidates.append((value, exclusive is True))
    if isinstance(exclusive, (int, float)) and not isinstance(exclusive, bool):
        candidates.append((exclusive, True))
    if not candidates:
        return None
    if side == "minimum":
        return max(candidates)
    return min(candidates, key=lambda bound: (bound[0], not bound[1]))


def _stricter(reader: tuple[float, bool], writer: tuple[float, bool], side: str) -> bool:
    (reader_value, reader_exclusive), (writer_value, writer_exclusive) = reader, writer
    if reader_value == writer_value:
        return reader_exclusive and not writer_exclusive
    return reader_value > writer_value if side == "minimum" else reader_value < writer_value


def _divides(divisor: Any, multiple: Any) -> bool:
    if multiple is None:
        return False
    if divisor == multiple:
        return True
    integral = all(
        isinstance(value, int) and not isinstance(value, bool) for value in (divisor, multiple)
    )
    return integral and multiple % divisor == 0


def _count_problems(
    reader: SchemaNode, writer: SchemaNode, path: str, low: str, high: str, what: str
) -> list[Problem]:
    problems = []
    if reader.keyword(low, 0) > writer.keyword(low, 0):
        problems.append(
            Problem(f"MIN_{what}_INCREASED", f"{path}/{low}", f"the reader's {low} is larger")
        )
    reader_high, writer_high = reader.keyword(high), writer.keyword(high)
    if reader_high is not None and (writer_high is None or reader_high < writer_high):
        problems.append(
            Problem(
                f"MAX_{what}_DECREASED", f"{path}/{high}", f"the reader's {high} is smaller or new"
            )
        )
    return problems


def _string_problems(reader: SchemaNode, writer: SchemaNode, path: str) -> list[Problem]:
    problems = _count_problems(reader, writer, path, "minLength", "maxLength", "LENGTH")
    for keyword in ("pattern", "format"):
        value = reader.keyword(keyword)
        if value is not None and value != writer.keyword(keyword):
            problems.append(
                Problem(
                    f"{keyword.upper()}_CHANGED",
                    f"{path}/{keyword}",
                    f"the reader's {keyword} differs",
                )
            )
    return problems
