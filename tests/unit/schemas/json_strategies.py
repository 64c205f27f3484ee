"""Hypothesis strategies for JSON Schema pairs (a writer, and a reader derived from it by the
edits evolution makes) and for documents shaped by a schema (filtered by jsonschema later)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

TYPES = ["null", "boolean", "integer", "number", "string", "object", "array"]
NAMES = ["a", "b", "c"]
SMALL_VALUES = [None, True, 0, 1, 2.5, -3, "", "x", "yy"]
PATTERNS = ["^x", "y$", "^[a-z]*$"]


@st.composite
def leaves(draw: st.DrawFn) -> dict[str, Any]:
    choice = draw(st.integers(0, 6))
    if choice == 0:
        return {"enum": draw(st.lists(st.sampled_from(SMALL_VALUES), min_size=1, max_size=4))}
    if choice == 1:
        return {"const": draw(st.sampled_from(SMALL_VALUES))}
    if choice == 2:
        return {
            "type": draw(st.lists(st.sampled_from(TYPES[:5]), min_size=1, max_size=3, unique=True))
        }
    if choice == 3:
        return _with_bounds(draw, {"type": draw(st.sampled_from(["integer", "number"]))})
    if choice == 4:
        return _with_string_limits(draw, {"type": "string"})
    return {"type": draw(st.sampled_from(TYPES[:5]))}


def _with_bounds(draw: st.DrawFn, schema: dict[str, Any]) -> dict[str, Any]:
    for keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
        if draw(st.integers(0, 3)) == 0:
            low = 1 if keyword == "multipleOf" else -3
            schema[keyword] = draw(st.integers(low, 3))
    return schema


def _with_string_limits(draw: st.DrawFn, schema: dict[str, Any]) -> dict[str, Any]:
    for keyword in ("minLength", "maxLength"):
        if draw(st.booleans()):
            schema[keyword] = draw(st.integers(0, 3))
    if draw(st.integers(0, 3)) == 0:
        schema["pattern"] = draw(st.sampled_from(PATTERNS))
    return schema


def schemas(depth: int) -> st.SearchStrategy[Any]:
    if depth <= 0:
        return leaves()
    inner = schemas(depth - 1)
    return st.one_of(
        leaves(),
        objects(depth - 1),
        arrays(depth - 1),
        st.lists(inner, min_size=1, max_size=3).map(lambda branches: {"anyOf": branches}),
        st.lists(inner, min_size=1, max_size=3).map(lambda branches: {"oneOf": branches}),
        st.sampled_from(TYPES).map(lambda name: {"not": {"type": name}}),
        st.booleans(),
    )


@st.composite
def objects(draw: st.DrawFn, depth: int) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(NAMES), max_size=3, unique=True))
    schema: dict[str, Any] = {"type": "object"}
    schema["properties"] = {name: draw(schemas(depth)) for name in names}
    required = draw(st.lists(st.sampled_from(NAMES), max_size=2, unique=True))
    if required:
        schema["required"] = required
    extra = draw(st.sampled_from([None, False, True, {"type": "string"}]))
    if extra is not None:
        schema["additionalProperties"] = extra
    return schema


@st.composite
def arrays(draw: st.DrawFn, depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array", "items": draw(schemas(depth))}
    for keyword in ("minItems", "maxItems"):
        if draw(st.integers(0, 2)) == 0:
            schema[keyword] = draw(st.integers(0, 3))
    if draw(st.integers(0, 3)) == 0:
        schema["uniqueItems"] = True
    return schema


@st.composite
def evolved(draw: st.DrawFn, schema: Any, depth: int = 2) -> Any:
    choice = draw(st.integers(0, 7))
    if choice <= 4 and isinstance(schema, dict):
        return _evolve_inside(draw, schema, depth)
    if choice == 5:
        return {"anyOf": [schema, draw(schemas(0))]}
    if choice == 6:
        return draw(schemas(1))
    return schema


def _evolve_inside(draw: st.DrawFn, schema: dict[str, Any], depth: int) -> dict[str, Any]:
    changed = dict(schema)
    if "properties" in schema:
        properties = {}
        for name, sub in schema["properties"].items():
            if draw(st.integers(0, 4)):
                properties[name] = draw(evolved(sub, depth - 1))
        for name in draw(st.lists(st.sampled_from(NAMES), max_size=1)):
            properties.setdefault(name, draw(schemas(0)))
        changed["properties"] = properties
        required = draw(st.lists(st.sampled_from(NAMES), max_size=2, unique=True))
        changed["required"] = required if draw(st.booleans()) else schema.get("required", [])
        changed["additionalProperties"] = draw(st.sampled_from([False, True, {"type": "string"}]))
    if "items" in schema:
        changed["items"] = draw(evolved(schema["items"], depth - 1))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            changed[key] = [draw(evolved(branch, depth - 1)) for branch in schema[key]]
            if draw(st.booleans()):
                changed[key] = changed[key] + [draw(schemas(0))]
    if schema.get("type") in ("integer", "number"):
        changed = _with_bounds(
            draw, {**changed, "type": draw(st.sampled_from(["integer", "number"]))}
        )
    if schema.get("type") == "string":
        changed = _with_string_limits(draw, {"type": "string"})
    if isinstance(schema.get("type"), str) and draw(st.integers(0, 3)) == 0:
        changed["type"] = [schema["type"], draw(st.sampled_from(TYPES))]
    if "enum" in schema:
        changed["enum"] = draw(st.lists(st.sampled_from(SMALL_VALUES), min_size=1, max_size=5))
    return changed


json_values = st.recursive(
    st.sampled_from(SMALL_VALUES) | st.integers(-5, 5) | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from([*NAMES, "z"]), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def documents(draw: st.DrawFn, schema: Any) -> Any:
    """A document shaped like `schema` wants (often, not always, valid under it)."""
    if not isinstance(schema, dict) or draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    if "enum" in schema:
        return draw(st.sampled_from(schema["enum"]))
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return draw(documents(draw(st.sampled_from(schema[key]))))
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = draw(st.sampled_from(kind))
    if kind == "object":
        found = {}
        for name, sub in schema.get("properties", {}).items():
            if name in schema.get("required", []) or draw(st.booleans()):
                found[name] = draw(documents(sub))
        if draw(st.booleans()):
            found["z"] = draw(json_values)
        return found
    if kind == "array":
        return draw(st.lists(documents(schema.get("items", True)), max_size=3))
    scalars = {
        "null": st.none(),
        "boolean": st.booleans(),
        "integer": st.integers(-6, 6),
        "number": st.integers(-6, 6) | st.floats(-6, 6, allow_nan=False),
        "string": st.text(alphabet="xyab", max_size=4),
    }
    return draw(scalars.get(kind, json_values))
