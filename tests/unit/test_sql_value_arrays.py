"""The shortcuts of SQL decoding answer what the plain rules answer: a column built from a
whole list of JSON values equals the one built value by value through its conversion (types
it keeps, types it refuses, integers past INT64 or past a double's exact range, NULLs), and a
value read as JSON without encoding detection equals json.loads of its bytes (whole, cut
short or followed by more)."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from streamhouse.sql.decoding import _json_value
from streamhouse.sql.value_columns import inferred_columns

KIND_SAMPLES = {"boolean": True, "integer": 1, "number": 1.5, "string": "s", "mixed": 2}
json_items = st.none() | st.booleans() | st.text(max_size=5) | st.floats() | st.integers()
json_items |= st.sampled_from((2**53 + 1, 2**63, -(2**63) - 1, "12", "NaN", 1.0, [1], {"a": 1}))


@given(st.sampled_from(sorted(KIND_SAMPLES)), st.lists(json_items, max_size=20))
def test_a_column_of_a_whole_list_equals_one_converted_value_by_value(
    kind: str, items: list[Any]
) -> None:
    samples = [{"c": KIND_SAMPLES[kind]}] + ([{"c": 2.5}] if kind == "mixed" else [])
    (column,) = inferred_columns(samples)
    expected = pa.array([column.convert(item) for item in items], column.arrow_type)
    found = column.array(items)
    assert found.type == expected.type
    assert repr(found.to_pylist()) == repr(expected.to_pylist())  # NaN equals NaN here


documents = st.recursive(
    json_items.filter(lambda item: not isinstance(item, float) or item == item),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)
encodings = st.sampled_from(("utf-8", "utf-16-le", "utf-16-be", "utf-32"))


@given(documents, encodings, st.sampled_from(("", " ", "x", "\x00", "}")), st.booleans())
def test_json_values_read_as_json_loads_reads_them(
    document: Any, encoding: str, trailer: str, cut: bool
) -> None:
    text = json.dumps(document) + trailer
    data = (text[: len(text) // 2] if cut else text).encode(encoding)
    try:
        expected = json.loads(data)
    except (ValueError, RecursionError):
        expected = None
    assert _json_value(data) == expected
