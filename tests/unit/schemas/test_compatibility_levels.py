"""What each compatibility level asks of a new schema: the direction (BACKWARD: the new schema
reads the old data; FORWARD: the old schema reads the new data; FULL: both) and the versions
(the latest only, or with *_TRANSITIVE every earlier one)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.schemas import (
    CompatibilityLevel,
    ParsedSchema,
    SchemaType,
    incompatibilities,
    parse_schema,
)
from tests.property_budget import examples

Level = CompatibilityLevel


def _record(*fields: dict[str, Any]) -> ParsedSchema:
    schema = {"type": "record", "name": "User", "fields": list(fields)}
    return parse_schema(SchemaType.AVRO, json.dumps(schema))


A = {"name": "a", "type": "string"}
B_DEFAULT = {"name": "b", "type": "string", "default": ""}
B = {"name": "b", "type": "string"}

V1 = _record(A)
V2 = _record(A, B_DEFAULT)
V3 = _record(B_DEFAULT)  # drops a: reads any old data (b has a default); old readers need a
ONLY_B_REQUIRED = _record(B)


def test_none_and_no_earlier_versions_are_always_compatible() -> None:
    assert incompatibilities(Level.NONE, ONLY_B_REQUIRED, [V1]) == []
    for level in Level:
        assert incompatibilities(level, ONLY_B_REQUIRED, []) == []


def test_backward_is_the_new_schema_reading_old_data() -> None:
    # a new field without a default: the new reader cannot read old records
    problems = incompatibilities(Level.BACKWARD, _record(A, B), [V1])
    assert len(problems) == 1
    assert problems[0].startswith("READER_FIELD_MISSING_DEFAULT_VALUE at /fields/1")
    assert "earlier version #0" in problems[0]
    # the same change seen forward: the old reader skips the new field
    assert incompatibilities(Level.FORWARD, _record(A, B), [V1]) == []


def test_forward_is_the_old_schema_reading_new_data() -> None:
    # dropping a field the old reader needs (no default there)
    assert incompatibilities(Level.BACKWARD, V3, [V1]) == []
    problems = incompatibilities(Level.FORWARD, V3, [V1])
    assert len(problems) == 1 and "READER_FIELD_MISSING_DEFAULT_VALUE" in problems[0]


def test_full_is_both() -> None:
    assert len(incompatibilities(Level.FULL, _record(A, B), [V1])) == 1
    assert len(incompatibilities(Level.FULL, V3, [V1])) == 1
    assert incompatibilities(Level.FULL, V2, [V1]) == []


def test_transitive_levels_check_every_version_the_others_only_the_latest() -> None:
    # v1 {a}, v2 {a, b=""}: v3 {b} without a default for b reads v2's data, not v1's
    earlier = [V1, V2]
    assert incompatibilities(Level.BACKWARD, ONLY_B_REQUIRED, earlier) == []
    transitive = incompatibilities(Level.BACKWARD_TRANSITIVE, ONLY_B_REQUIRED, earlier)
    assert len(transitive) == 1 and "earlier version #0" in transitive[0]
    # FORWARD: v1 and v2 must read {b}-only data: both need a, which is gone without a default
    assert len(incompatibilities(Level.FORWARD, V3, earlier)) == 1
    assert len(incompatibilities(Level.FORWARD_TRANSITIVE, V3, earlier)) == 2
    assert len(incompatibilities(Level.FULL_TRANSITIVE, ONLY_B_REQUIRED, earlier)) == 3


def test_messages_name_version_numbers_when_given() -> None:
    problems = incompatibilities(
        Level.BACKWARD_TRANSITIVE, ONLY_B_REQUIRED, [V1, V2], versions=[3, 5]
    )
    assert len(problems) == 1 and "version 3's schema" in problems[0]
    with pytest.raises(ValueError):
        incompatibilities(Level.BACKWARD, ONLY_B_REQUIRED, [V1, V2], versions=[3])


def test_a_schema_of_another_type_is_incompatible() -> None:
    json_schema = parse_schema(SchemaType.JSON, '{"type": "object"}')
    problems = incompatibilities(Level.BACKWARD, json_schema, [V1])
    assert len(problems) == 1 and "JSON" in problems[0] and "AVRO" in problems[0]


@pytest.mark.parametrize("schema_type", list(SchemaType))
def test_every_type_answers_every_level(schema_type: SchemaType) -> None:
    text = {
        SchemaType.AVRO: '"string"',
        SchemaType.JSON: '{"type": "string"}',
        SchemaType.PROTOBUF: 'syntax = "proto3"; message M { string a = 1; }',
    }[schema_type]
    schema = parse_schema(schema_type, text)
    for level in Level:
        assert incompatibilities(level, schema, [schema, schema]) == []


PRIMITIVES = ["int", "long", "float", "double", "string", "bytes"]


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.sampled_from(PRIMITIVES), min_size=1, max_size=4), st.sampled_from(PRIMITIVES))
def test_levels_compose_from_directions_and_versions(
    earlier_types: list[str], new_type: str
) -> None:
    """FULL = BACKWARD + FORWARD; transitive = the union over versions; non-transitive = latest."""
    earlier = [parse_schema(SchemaType.AVRO, json.dumps(name)) for name in earlier_types]
    new = parse_schema(SchemaType.AVRO, json.dumps(new_type))

    def count(level: Level, versions: list[ParsedSchema]) -> int:
        return len(incompatibilities(level, new, versions))

    for plain, transitive, direction_sum in (
        (Level.BACKWARD, Level.BACKWARD_TRANSITIVE, None),
        (Level.FORWARD, Level.FORWARD_TRANSITIVE, None),
        (Level.FULL, Level.FULL_TRANSITIVE, (Level.BACKWARD, Level.FORWARD)),
    ):
        assert count(plain, earlier) == count(plain, earlier[-1:])
        assert count(transitive, earlier) == sum(count(plain, [one]) for one in earlier)
        if direction_sum:
            assert count(plain, earlier) == sum(count(level, earlier) for level in direction_sum)
