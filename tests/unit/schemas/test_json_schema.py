"""JSON Schema: parsing and canonical text, each compatibility rule by hand, and the soundness
property: when the checker says a reader reads a writer, every document the writer accepts
(jsonschema decides) is accepted by the reader."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from streamhouse.schemas import Dependency, InvalidSchema, SchemaType, parse_schema
from tests.property_budget import examples
from tests.unit.schemas.json_strategies import documents, evolved, schemas


def _parse(schema: Any, *dependencies: Dependency) -> Any:
    return parse_schema(SchemaType.JSON, json.dumps(schema), dependencies)


def _problems(reader: Any, writer: Any) -> list[str]:
    return [problem.kind for problem in _parse(reader).reader_problems(_parse(writer))]


def _object(properties: dict[str, Any], **keywords: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, **keywords}


STRING = {"type": "string"}
INTEGER = {"type": "integer"}


# --- parsing and canonical text


def test_the_canonical_text_is_compact_in_the_given_order_and_normalize_sorts() -> None:
    text = '{ "type": "object",\n "properties": {"b": {"type": "string"}, "a": {}} }'
    assert _parse(json.loads(text)).canonical_text() == (
        '{"type":"object","properties":{"b":{"type":"string"},"a":{}}}'
    )
    normalized = parse_schema(SchemaType.JSON, text, normalize=True).canonical_text()
    assert normalized == '{"properties":{"a":{},"b":{"type":"string"}},"type":"object"}'


@pytest.mark.parametrize(
    "text",
    ["{", "[1]", '{"type": 5}', '{"minLength": -1}', '{"$ref": "missing.json"}'],
)
def test_invalid_schemas_are_refused(text: str) -> None:
    with pytest.raises(InvalidSchema) as refused:
        parse_schema(SchemaType.JSON, text)
    assert str(refused.value)


def test_the_draft_follows_dollar_schema() -> None:
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "exclusiveMinimum": True}
    with pytest.raises(InvalidSchema):
        _parse(draft4)  # draft 4's boolean exclusiveMinimum needs a minimum
    _parse({**draft4, "minimum": 0})
    with pytest.raises(InvalidSchema):
        _parse({"exclusiveMinimum": True})  # draft 7, the default: a number


def test_references_to_dependencies_resolve_and_take_part() -> None:
    url = "https://example.com/address.json"
    narrow = Dependency(url, SchemaType.JSON, json.dumps(INTEGER))
    wide = Dependency(url, SchemaType.JSON, json.dumps({"type": "number"}))
    schema = _object({"home": {"$ref": url}})
    reader, writer = _parse(schema, wide), _parse(schema, narrow)
    assert reader.reader_problems(writer) == []
    assert [problem.kind for problem in writer.reader_problems(reader)] == ["TYPE_NARROWED"]


# --- rules


def test_types_may_widen_not_narrow() -> None:
    assert _problems({"type": "number"}, INTEGER) == []
    assert _problems({"type": ["string", "null"]}, STRING) == []
    assert _problems(INTEGER, {"type": "number"}) == ["TYPE_NARROWED"]
    assert _problems(STRING, {}) == ["TYPE_NARROWED"]


def test_enum_and_const() -> None:
    assert _problems({"enum": ["a", "b", "c"]}, {"enum": ["a", "b"]}) == []
    assert _problems({"enum": ["a"]}, {"enum": ["a", "b"]}) == ["ENUM_ARRAY_NARROWED"]
    assert _problems(STRING, {"const": "a"}) == []
    assert _problems({"const": "a"}, STRING) == ["ENUM_ARRAY_NARROWED"]


def test_required_may_shrink_not_grow() -> None:
    writer = _object({"a": STRING}, required=["a"])
    assert _problems(_object({"a": STRING}), writer) == []
    assert _problems(_object({"a": STRING}, required=["a", "b"]), writer) == [
        "REQUIRED_ATTRIBUTE_ADDED"
    ]


def test_the_content_model() -> None:
    closed = _object({"a": STRING}, additionalProperties=False)
    open_ = _object({"a": STRING})
    # a property added to a reader: fine over a closed writer, not over an open one
    assert _problems(_object({"a": STRING, "b": INTEGER}), closed) == []
    assert _problems(_object({"a": STRING, "b": INTEGER}), open_) == [
        "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"
    ]
    # unless the writer's open model already promised that schema for unlisted names
    typed_open = _object({"a": STRING}, additionalProperties=INTEGER)
    assert _problems(_object({"a": STRING, "b": INTEGER}), typed_open) == []
    # a property removed from a closed reader
    both = _object({"a": STRING, "b": INTEGER})
    assert "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL" in _problems(closed, both)
    assert _problems(open_, both) == []
    # additionalProperties may widen, not narrow
    assert _problems(open_, closed) == []
    assert _problems(closed, open_) == ["ADDITIONAL_PROPERTIES_NARROWED"]


@pytest.mark.parametrize(
    ("reader", "writer", "kind"),
    [
        ({"maximum": 5}, {"maximum": 10}, "MAXIMUM_DECREASED"),
        ({"minimum": 5}, {"minimum": 0}, "MINIMUM_INCREASED"),
        ({"minimum": 0}, {}, "MINIMUM_ADDED"),
        ({"exclusiveMinimum": 0}, {"minimum": 0}, "MINIMUM_INCREASED"),
        ({"multipleOf": 4}, {"multipleOf": 2}, "MULTIPLE_OF_CHANGED"),
    ],
)
def test_numeric_bounds_may_loosen_not_tighten(
    reader: dict[str, Any], writer: dict[str, Any], kind: str
) -> None:
    assert _problems({"type": "number", **reader}, {"type": "number", **writer}) == [kind]
    assert _problems({"type": "number", **writer}, {"type": "number", **reader}) == []


def test_draft4_exclusive_bounds_are_booleans() -> None:
    draft4 = "http://json-schema.org/draft-04/schema#"
    exclusive = {"$schema": draft4, "type": "number", "minimum": 0, "exclusiveMinimum": True}
    inclusive = {"$schema": draft4, "type": "number", "minimum": 0}
    assert _problems(inclusive, exclusive) == []
    assert _problems(exclusive, inclusive) == ["MINIMUM_INCREASED"]


def test_string_limits() -> None:
    assert _problems({**STRING, "maxLength": 3}, {**STRING, "maxLength": 5}) == [
        "MAX_LENGTH_DECREASED"
    ]
    assert _problems({**STRING, "minLength": 1}, STRING) == ["MIN_LENGTH_INCREASED"]
    assert _problems({**STRING, "pattern": "^a"}, STRING) == ["PATTERN_CHANGED"]
    assert _problems(STRING, {**STRING, "pattern": "^a", "maxLength": 2}) == []


def test_arrays() -> None:
    def array(items: Any, **keywords: Any) -> dict[str, Any]:
        return {"type": "array", "items": items, **keywords}

    assert _problems(array({"type": "number"}), array(INTEGER)) == []
    assert _problems(array(INTEGER), array({"type": "number"})) == ["TYPE_NARROWED"]
    assert _problems(array(STRING, maxItems=2), array(STRING)) == ["MAX_ITEMS_DECREASED"]
    assert _problems(array(STRING, uniqueItems=True), array(STRING)) == ["UNIQUE_ITEMS_ADDED"]
    tuple_reader = {"type": "array", "items": [STRING, {"type": "number"}]}
    tuple_writer = {"type": "array", "items": [STRING, INTEGER], "additionalItems": False}
    assert _problems(tuple_reader, tuple_writer) == []
    assert _problems(tuple_writer, tuple_reader) != []


def test_nested_objects_are_compared_recursively() -> None:
    inner_wide = _object({"x": {"type": "number"}})
    inner_narrow = _object({"x": INTEGER})
    assert _problems(_object({"p": inner_wide}), _object({"p": inner_narrow})) == []
    problems = _parse(_object({"p": inner_narrow})).reader_problems(
        _parse(_object({"p": inner_wide}))
    )
    assert [(problem.kind, problem.path) for problem in problems] == [
        ("TYPE_NARROWED", "/properties/p/properties/x/type")
    ]


def test_combinators() -> None:
    assert _problems({"anyOf": [STRING, INTEGER]}, STRING) == []
    assert _problems({"anyOf": [STRING, INTEGER]}, {"anyOf": [STRING]}) == []
    assert _problems({"anyOf": [STRING]}, {"anyOf": [STRING, INTEGER]}) == ["SUM_TYPE_NARROWED"]
    assert _problems({"oneOf": [STRING, INTEGER]}, STRING) == []
    assert _problems({"oneOf": [STRING, {"type": "number"}]}, INTEGER) == []
    assert _problems({"oneOf": [INTEGER, {"type": "number"}]}, INTEGER) == ["SUM_TYPE_NARROWED"]
    assert _problems({"allOf": [STRING, {"maxLength": 3}]}, {**STRING, "maxLength": 2}) == []
    assert _problems({"not": STRING}, INTEGER) == []
    assert _problems({"not": STRING}, {}) == ["NOT_TYPE_EXTENDED"]


def test_recursive_references_end() -> None:
    def tree(leaf: str) -> dict[str, Any]:
        node = _object(
            {"value": {"type": leaf}, "children": {"type": "array", "items": {"$ref": "#"}}}
        )
        return node

    assert _problems(tree("number"), tree("integer")) == []
    assert "TYPE_NARROWED" in _problems(tree("integer"), tree("number"))


def test_unknown_keywords_may_not_change() -> None:
    assert _problems({"x-rule": 1}, {"x-rule": 1}) == []
    assert _problems({"x-rule": 2}, {"x-rule": 1}) == ["UNKNOWN_KEYWORD_CHANGED"]


def test_pattern_properties_and_dependencies() -> None:
    patterned = _object({}, patternProperties={"^x_": STRING}, additionalProperties=False)
    assert _problems(_object({}, patternProperties={"^x_": STRING}), patterned) == []
    assert _problems(patterned, _object({})) != []
    needs_b = _object({}, dependencies={"a": ["b"]})
    assert _problems(_object({}), needs_b) == []
    assert _problems(needs_b, _object({})) == ["DEPENDENCY_ADDED"]


def test_conditionals_and_writer_parts() -> None:
    conditional = {"if": INTEGER, "then": {"minimum": 0}}
    assert _problems(conditional, conditional) == []
    assert _problems(conditional, INTEGER) == ["COMBINED_TYPE_SUBSCHEMAS_CHANGED"]
    assert _problems(STRING, {"allOf": [STRING, {"maxLength": 3}]}) == []


def test_draft4_ids_and_a_property_called_id() -> None:
    draft4 = "http://json-schema.org/draft-04/schema#"
    schema = {"$schema": draft4, "type": "object", "properties": {"id": INTEGER}}
    assert _problems(schema, schema) == []
    wider = {**schema, "properties": {"id": {"type": "number"}}}
    assert _problems(wider, schema) == []


def test_depth_is_bounded() -> None:
    def nested(depth: int, leaf: str) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": leaf}
        for _ in range(depth):
            schema = _object({"x": schema})
        return schema

    assert _problems(nested(10, "number"), nested(10, "integer")) == []
    assert _problems(nested(80, "number"), nested(80, "integer")) == ["TOO_DEEP"]


def test_a_dependency_is_found_by_its_own_id_too() -> None:
    url = "https://example.com/schemas/address.json"
    address = Dependency("address.json", SchemaType.JSON, json.dumps({"$id": url, **STRING}))
    schema = {"$id": "https://example.com/schemas/customer.json", "$ref": "address.json"}
    assert _parse(schema, address).reader_problems(_parse(schema, address)) == []


# --- the soundness property


@st.composite
def pairs_with_documents(draw: st.DrawFn) -> tuple[Any, Any, list[Any]]:
    writer = draw(schemas(2))
    reader = draw(evolved(writer))
    found = draw(st.lists(documents(writer), min_size=1, max_size=6))
    return reader, writer, found


@settings(
    max_examples=examples(1200),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(pairs_with_documents())
def test_a_reader_called_compatible_accepts_every_writer_document(
    case: tuple[Any, Any, list[Any]],
) -> None:
    reader, writer, found = case
    try:
        parsed_reader, parsed_writer = _parse(reader), _parse(writer)
    except InvalidSchema:
        assume(False)
    compatible = parsed_reader.reader_problems(parsed_writer) == []
    event("compatible" if compatible else "incompatible")
    if not compatible:
        return
    if reader != writer:
        event("compatible, and the reader differs")
    writer_validator = jsonschema.Draft7Validator(writer)
    reader_validator = jsonschema.Draft7Validator(reader)
    for document in found:
        if writer_validator.is_valid(document):
            event("a writer document checked" + (" (different reader)" if reader != writer else ""))
            assert reader_validator.is_valid(document), (reader, writer, document)
