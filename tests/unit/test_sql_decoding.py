"""Topics decoded into columns: values registered as Avro, JSON Schema and Protobuf (written
through our registry and produce service, as the REST door writes them) come out as typed
columns; plain JSON objects as inferred columns; other values, headers and nulls in the meta
columns; a field named like a meta column does not shadow it."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from streamhouse.engine.consume import ConsumedRecord
from streamhouse.engine.embedded_formats import EmbeddedFormat, EmbeddedFormats
from streamhouse.engine.org_registry import OrgRegistry
from streamhouse.engine.produce import Ack, NewRecord
from streamhouse.sql.decoding import TopicDecoder
from streamhouse.tenancy.names import DEFAULT_ORG
from tests.unit.sasl_world import AgentThread
from tests.unit.sql_world import flush, new_topic, produce, query, running_sql_agent

AVRO = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "item", "type": "string"},
            {"name": "price", "type": "double"},
            {"name": "note", "type": ["null", "string"], "default": None},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "tags", "type": {"type": "array", "items": "string"}},
            {"name": "_offset", "type": "int", "default": 0},
        ],
    }
)
JSON_SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "ok": {"type": "boolean"},
            "name": {"type": ["string", "null"]},
            "extra": {"type": "object"},
        },
    }
)
PROTOBUF = """syntax = "proto3";
package shop;
message Sale { int64 id = 1; string sku = 2; double amount = 3; bytes blob = 4;
  enum Kind { RETAIL = 0; BULK = 1; } Kind kind = 5; repeated int32 sizes = 6; }
"""


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    yield from running_sql_agent(tmp_path_factory, "sql-decoding")


def produce_encoded(
    agent: AgentThread, topic: str, fmt: EmbeddedFormat, schema: str, values: list[Any]
) -> None:
    """`values` written in `fmt` under subject `<topic>-value` (registered with `schema`)."""
    core = agent.agent
    assert core is not None

    async def write() -> None:
        formats = EmbeddedFormats(core.schema_registry)
        records = []
        for value in values:
            part = await formats.encode(DEFAULT_ORG, topic, fmt, "value", value, schema=schema)
            records.append(NewRecord(None, part.data, partition=0))
        answers = await core.produce.produce(topic, records, Ack.LEADER)
        assert all(answer.error is None for answer in answers)

    agent.call(write())


def rows(agent: AgentThread, text: str) -> pa.Table:
    return query(agent, text).table


def test_avro_values_are_typed_columns(agent: AgentThread) -> None:
    topic = new_topic(agent, prefix="avro")
    at_ms = 1_700_000_000_123
    values = [
        {
            "id": 1,
            "item": "tea",
            "price": 2.5,
            "note": {"string": "hot"},
            "at": at_ms,
            "tags": ["a"],
        },
        {
            "id": 2,
            "item": "cake",
            "price": 4.0,
            "note": None,
            "at": at_ms + 1,
            "tags": [],
            "_offset": 9,
        },
    ]
    produce_encoded(agent, topic, EmbeddedFormat.AVRO, AVRO, values)
    flush(agent)
    table = rows(agent, f"SELECT * FROM {topic} ORDER BY id")
    schema = table.schema
    assert schema.field("id").type == pa.int64() and schema.field("price").type == pa.float64()
    assert (
        schema.field("at").type == pa.timestamp("us") and schema.field("_offset").type == pa.int64()
    )
    found = table.to_pylist()
    assert [r["item"] for r in found] == ["tea", "cake"]
    assert [r["note"] for r in found] == ["hot", None]
    assert found[0]["at"] == datetime.datetime(2023, 11, 14, 22, 13, 20, 123000)
    assert json.loads(found[0]["tags"]) == ["a"]
    assert [r["_offset"] for r in found] == [0, 1]  # the meta column, not the field


def test_json_schema_values(agent: AgentThread) -> None:
    topic = new_topic(agent, prefix="jsonschema")
    values = [{"id": 7, "ok": True, "name": "x", "extra": {"k": [1]}}, {"id": 8, "ok": False}]
    produce_encoded(agent, topic, EmbeddedFormat.JSONSCHEMA, JSON_SCHEMA, values)
    table = rows(agent, f"SELECT id, ok, name, extra FROM {topic} ORDER BY id")
    assert table.schema.field("id").type == pa.int64()
    assert table.to_pylist() == [
        {"id": 7, "ok": True, "name": "x", "extra": '{"k":[1]}'},
        {"id": 8, "ok": False, "name": None, "extra": None},
    ]


def test_protobuf_values(agent: AgentThread) -> None:
    topic = new_topic(agent, prefix="proto")
    values = [
        {"id": "5", "sku": "s-1", "amount": 1.25, "blob": "AAE=", "kind": "BULK", "sizes": [1, 2]}
    ]
    produce_encoded(agent, topic, EmbeddedFormat.PROTOBUF, PROTOBUF, values)
    (found,) = rows(agent, f"SELECT id, sku, amount, blob, kind, sizes FROM {topic}").to_pylist()
    assert found == {
        "id": 5,
        "sku": "s-1",
        "amount": 1.25,
        "blob": b"\x00\x01",
        "kind": "BULK",
        "sizes": "[1,2]",
    }


def test_plain_json_other_values_headers_and_nulls(agent: AgentThread) -> None:
    topic = new_topic(agent, prefix="plain")
    values: list[bytes | None] = [
        b'{"a": 1, "b": "x", "c": 1.5, "_partition": 9}',
        b'{"a": "not a number", "d": true}',
        b"\xff\xfe not json",
        None,
        b"[1, 2]",
    ]
    produce(agent, topic, values, headers=[("h", b"\x00v")])
    table = rows(agent, f"SELECT * FROM {topic} ORDER BY _offset")
    assert table.column_names[:6] == [
        "_partition",
        "_offset",
        "_timestamp",
        "_key",
        "_value",
        "_headers",
    ]
    assert (
        table.schema.field("c").type == pa.float64() and table.schema.field("d").type == pa.bool_()
    )
    found = table.to_pylist()
    assert [r["a"] for r in found] == ["1", '"not a number"', None, None, None]  # mixed: JSON
    assert [r["_partition"] for r in found] == [0] * 5
    assert found[2]["_value"] == b"\xff\xfe not json" and found[3]["_value"] is None
    assert found[0]["_headers"] == [{"key": "h", "value": b"\x00v"}]
    assert found[0]["_key"] == b"k0"


def test_non_json_topic_has_only_meta_columns(agent: AgentThread) -> None:
    topic = new_topic(agent, prefix="raw")
    produce(agent, topic, [b"\x00\x01", b"plain text"])
    table = rows(agent, f"SELECT * FROM {topic}")
    assert table.column_names == [
        "_partition",
        "_offset",
        "_timestamp",
        "_key",
        "_value",
        "_headers",
    ]
    assert table.num_rows == 2


def test_inferred_columns_stay_fixed_across_batches(agent: AgentThread) -> None:
    assert agent.agent is not None
    decoder = TopicDecoder(OrgRegistry(agent.agent.schema_registry, DEFAULT_ORG), None)

    def record(offset: int, value: bytes) -> ConsumedRecord:
        return ConsumedRecord(0, offset, 1_000, None, value)

    first = decoder.decode_loaded([record(0, b'{"n": 1, "s": "a"}')])
    later = decoder.decode_loaded([record(1, b'{"n": "two", "s": "b", "new": 3}')])
    assert first.schema == later.schema and "new" not in later.schema.names
    assert later.column("n").to_pylist() == [None]  # another kind than the sample's: NULL
    assert later.column("s").to_pylist() == ["b"]
