"""Hypothesis strategies for Avro schema pairs: a random writer schema, a reader derived from it
by the edits schema evolution makes (fields added or dropped, types promoted or changed, enum
symbols and defaults changed, unions wrapped or unwrapped), and values a writer can write."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

PRIMITIVES = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
SYMBOLS = ["A", "B", "C", "D"]
FIELD_NAMES = ["a", "b", "c", "d", "e"]
TYPE_NAMES = ["Alpha", "Beta", "Gamma"]
PROMOTION_TARGETS = {
    "int": ["long", "float", "double"],
    "long": ["float", "double", "int"],
    "float": ["double", "long"],
    "double": ["float"],
    "string": ["bytes"],
    "bytes": ["string"],
}


def default_for(schema: Any) -> Any:
    """A valid default value for a schema (for a union, of its first branch)."""
    if isinstance(schema, list):
        return default_for(schema[0])
    if isinstance(schema, str):
        return {
            "null": None,
            "boolean": False,
            "int": 0,
            "long": 0,
            "float": 0.0,
            "double": 0.0,
            "bytes": "",
            "string": "",
        }[schema]
    if schema["type"] == "enum":
        return schema["symbols"][0]
    if schema["type"] == "fixed":
        return "\u0000" * schema["size"]
    if schema["type"] == "array":
        return []
    if schema["type"] == "map":
        return {}
    return {item["name"]: default_for(item["type"]) for item in schema["fields"]}


def _field(name: str, schema: Any, with_default: bool) -> dict[str, Any]:
    field: dict[str, Any] = {"name": name, "type": schema}
    if with_default:
        field["default"] = default_for(schema)
    return field


@st.composite
def enums(draw: st.DrawFn) -> dict[str, Any]:
    symbols = draw(st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=4, unique=True))
    schema: dict[str, Any] = {"type": "enum", "name": draw(st.sampled_from(TYPE_NAMES))}
    schema.update(draw(namespaces()))
    schema["symbols"] = symbols
    if draw(st.booleans()):
        schema["default"] = draw(st.sampled_from(symbols))
    return schema


def namespaces() -> st.SearchStrategy[dict[str, str]]:
    """Mostly none: named types match by unqualified name, so a namespace should not matter."""
    return st.sampled_from([{}, {}, {"namespace": "north"}, {"namespace": "south.pole"}])


def fixeds() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda name, size, namespace: {"type": "fixed", "name": name, "size": size, **namespace},
        st.sampled_from(TYPE_NAMES),
        st.integers(1, 3),
        namespaces(),
    )


def _non_union(depth: int) -> st.SearchStrategy[Any]:
    leaves: st.SearchStrategy[Any] = st.one_of(st.sampled_from(PRIMITIVES), enums(), fixeds())
    if depth <= 0:
        return leaves
    inner = types(depth - 1)
    return st.one_of(
        leaves,
        inner.map(lambda items: {"type": "array", "items": items}),
        inner.map(lambda values: {"type": "map", "values": values}),
        records(depth - 1),
    )


@st.composite
def unions(draw: st.DrawFn, depth: int) -> list[Any]:
    branches = draw(st.lists(_non_union(depth), min_size=1, max_size=3))
    unique: list[Any] = []
    for branch in branches:
        if _branch_key(branch) not in {_branch_key(seen) for seen in unique}:
            unique.append(branch)
    return unique


def _branch_key(branch: Any) -> str:
    if isinstance(branch, str):
        return branch
    return branch.get("name", branch["type"])


def types(depth: int) -> st.SearchStrategy[Any]:
    return st.one_of(_non_union(depth), unions(depth))


@st.composite
def records(draw: st.DrawFn, depth: int) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(FIELD_NAMES), min_size=0, max_size=4, unique=True))
    fields = [_field(name, draw(types(depth)), draw(st.booleans())) for name in names]
    name = draw(st.sampled_from(TYPE_NAMES))
    return {"type": "record", "name": name, **draw(namespaces()), "fields": fields}


@st.composite
def evolved(draw: st.DrawFn, schema: Any, depth: int = 2) -> Any:
    """A schema derived from `schema` by one or more evolution edits, or `schema` itself."""
    choice = draw(st.integers(0, 9))
    if choice <= 3:
        return _evolve_inside(draw, schema, depth)
    if choice == 4 and isinstance(schema, str) and schema in PROMOTION_TARGETS:
        return draw(st.sampled_from(PROMOTION_TARGETS[schema]))
    if choice == 5 and not isinstance(schema, list):
        return ["null", schema] if schema != "null" else schema
    if choice == 6 and isinstance(schema, list):
        return draw(st.sampled_from(schema))
    if choice == 7:
        return draw(types(max(depth - 1, 0)))
    return schema


def _evolve_inside(draw: st.DrawFn, schema: Any, depth: int) -> Any:
    if isinstance(schema, list):
        return [draw(evolved(branch, depth - 1)) for branch in schema]
    if not isinstance(schema, dict):
        return schema
    if schema["type"] == "enum":
        return draw(enums().map(lambda other: {**other, "name": schema["name"]}))
    if "name" in schema and draw(st.integers(0, 5)) == 0:
        schema = {**schema, **draw(namespaces())}  # moved to another namespace
    if "namespace" in schema and draw(st.integers(0, 3)) == 0:
        # renamed, the old full name kept as an alias (fully qualified: see test_avro)
        old_name = f"{schema['namespace']}.{schema['name']}"
        schema = {**schema, "name": f"{schema['name']}Renamed", "aliases": [old_name]}
    if schema["type"] == "fixed":
        return {**schema, "size": draw(st.sampled_from([schema["size"], 4]))}
    if schema["type"] == "array":
        return {**schema, "items": draw(evolved(schema["items"], depth - 1))}
    if schema["type"] == "map":
        return {**schema, "values": draw(evolved(schema["values"], depth - 1))}
    return _evolve_record(draw, schema, depth)


def _evolve_record(draw: st.DrawFn, schema: dict[str, Any], depth: int) -> dict[str, Any]:
    fields = []
    for field in schema["fields"]:
        if draw(st.integers(0, 5)) == 0:
            continue  # dropped
        new_type = draw(evolved(field["type"], depth - 1))
        renamed = draw(st.integers(0, 7)) == 0
        name = field["name"] + "_new" if renamed else field["name"]
        item = _field(name, new_type, draw(st.booleans()))
        if renamed:
            item["aliases"] = [field["name"]]
        fields.append(item)
    taken = {field["name"] for field in fields} | {field["name"] for field in schema["fields"]}
    for name in draw(st.lists(st.sampled_from(FIELD_NAMES), max_size=2, unique=True)):
        if name not in taken:
            fields.append(_field(name, draw(types(0)), draw(st.booleans())))
    return {**schema, "fields": fields}


def deduplicate_names(schema: Any, seen: dict[str, int] | None = None) -> Any:
    """The schema with each named type defined at most once: a later definition of a name is
    renamed (Alpha, Alpha1, ...), as Avro forbids redefining a name."""
    seen = {} if seen is None else seen
    if isinstance(schema, list):
        return [deduplicate_names(branch, seen) for branch in schema]
    if not isinstance(schema, dict):
        return schema
    renamed = dict(schema)
    if "name" in schema:
        count = seen.get(schema["name"], 0)
        seen[schema["name"]] = count + 1
        if count:
            renamed["name"] = f"{schema['name']}{count}"
    if "items" in schema:
        renamed["items"] = deduplicate_names(schema["items"], seen)
    if "values" in schema:
        renamed["values"] = deduplicate_names(schema["values"], seen)
    if "fields" in schema:
        renamed["fields"] = [
            {**item, "type": deduplicate_names(item["type"], seen)} for item in schema["fields"]
        ]
    return renamed


@st.composite
def values(draw: st.DrawFn, schema: Any) -> Any:
    """A value a writer with `schema` (names not yet referenced, all inline) can write."""
    if isinstance(schema, list):
        return draw(values(draw(st.sampled_from(schema))))
    if isinstance(schema, str):
        return draw(_primitive_values(schema))
    kind = schema["type"]
    if kind == "enum":
        return draw(st.sampled_from(schema["symbols"]))
    if kind == "fixed":
        return draw(st.binary(min_size=schema["size"], max_size=schema["size"]))
    if kind == "array":
        return draw(st.lists(values(schema["items"]), max_size=2))
    if kind == "map":
        return draw(st.dictionaries(st.text(max_size=2), values(schema["values"]), max_size=2))
    return {item["name"]: draw(values(item["type"])) for item in schema["fields"]}


def _primitive_values(name: str) -> st.SearchStrategy[Any]:
    return {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(-(2**31), 2**31 - 1),
        "long": st.integers(-(2**63), 2**63 - 1),
        "float": st.floats(width=32, allow_nan=False),
        "double": st.floats(allow_nan=False),
        # UTF-8 only: Avro promotes bytes to string for a reader, and a string is UTF-8
        # (b"\x80" written as bytes cannot be read as a string by any reader)
        "bytes": st.text(max_size=4).map(str.encode),
        "string": st.text(max_size=4),
    }[name]
