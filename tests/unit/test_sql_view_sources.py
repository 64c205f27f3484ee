"""Continuous views over other inputs, on a real agent read by real Kafka clients: a hop view
puts each event in two windows, a record whose first window went out counting in its second; a
view over Avro values (confluent-kafka's AvroSerializer against the agent's registry, which the
view's runner met only after it started) takes its event time from a field, counting a value
without one as invalid; partitions added to the input while the view runs are read."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from confluent_kafka.admin import AdminClient, NewPartitions
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests import views_world as world
from tests.fixtures.views_agent import (
    CLIENT_TIMEOUT_S,
    http_port,
    new_topic,
    views_door,
    wait_for_status,
)
from tests.unit.sasl_world import AgentThread
from tests.unit.test_sql_views import CLOSING, FIRST
from tests.views_world import Event

# A hop of 10 s every 5 s: each event lands in two windows
HOP_SLIDE_MS = 5_000
HOP_FIRST: list[Event] = [
    (0, 0, "a", 1),  # [-5 s, 5 s) and [0 s, 10 s)
    (1, 4_999, "a", 2),
    (0, 5_000, "b", 4),  # on a boundary: [0 s, 10 s) and [5 s, 15 s)
    (1, 10_000, "a", 8),
    (0, 14_999, "b", 16),
    (1, 17_000, "a", 32),  # watermark 15 s: the windows ending by 15 s
]
HOP_SECOND: list[Event] = [
    (0, 12_000, "a", 64),  # [5 s, 15 s) went out: it counts in [10 s, 20 s) only, not late
    (1, 3_000, "c", 128),  # both its windows went out: late
    (0, 30_000, "d", 1),  # watermark 28 s: the windows ending by 25 s
]


@pytest.mark.slow  # some 7 s each: part of make test-all, not of the inner loop
def test_hop_view_emits_each_window_once(views_agent: AgentThread) -> None:
    port = http_port(views_agent)
    topic = new_topic(views_agent, 2)
    name = f"hopping_{uuid.uuid4().hex[:6]}"
    assert world.sql(port, world.view_sql(name, topic, slide_ms=HOP_SLIDE_MS)).status == 200
    reader = world.output_reader(views_agent.bootstrap, name)
    world.produce(views_agent.bootstrap, topic, HOP_FIRST)
    first = world.expected_windows(HOP_FIRST, 15_000, slide_ms=HOP_SLIDE_MS)
    assert [start for start, *_ in first] == [-5_000, 0, 0, 5_000, 5_000]  # by hand
    assert world.read_windows(reader, len(first)) == first
    world.produce(views_agent.bootstrap, topic, HOP_SECOND)
    second = world.expected_windows(
        HOP_FIRST + HOP_SECOND, 28_000, after_ms=15_000, slide_ms=HOP_SLIDE_MS
    )
    assert second == [(10_000, "a", 3, 8 + 32 + 64), (10_000, "b", 1, 16), (15_000, "a", 1, 32)]
    assert world.read_windows(reader, len(second)) == second
    reader.close()
    shown = wait_for_status(port, name, "late_records", 1)
    assert shown["late_records"] == 1 and shown["windows_emitted"] == len(first) + len(second)


ORDER_SCHEMA = {
    "type": "record",
    "name": "Click",
    "fields": [
        {"name": "user_id", "type": "string"},
        {"name": "amount", "type": "long"},
        {"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
    ],
}
HOUR_MS = 3_600_000


def avro_encoder(views_agent: AgentThread, topic: str) -> Callable[[str, int, int], bytes]:
    """Values in Confluent's wire format, by confluent-kafka's AvroSerializer against the
    agent's registry; the event time in field `at` (none for user "nobody")."""
    registry = SchemaRegistryClient(
        {"url": f"http://127.0.0.1:{views_door(views_agent).registry.port}"}
    )
    serializer = AvroSerializer(registry, json.dumps(ORDER_SCHEMA))
    context = SerializationContext(topic, MessageField.VALUE)

    def encode(user: str, amount: int, event_ms: int) -> bytes:
        at = None if user == "nobody" else datetime.fromtimestamp(event_ms / 1000, UTC)
        encoded = serializer({"user_id": user, "amount": amount, "at": at}, context)
        assert encoded is not None
        return encoded

    return encode


@pytest.mark.slow  # some 7 s each: part of make test-all, not of the inner loop
def test_view_over_an_avro_topic_takes_event_time_from_a_field(views_agent: AgentThread) -> None:
    port = http_port(views_agent)
    topic = new_topic(views_agent, 3)
    name = f"avro_{uuid.uuid4().hex[:6]}"
    # made before the topic's schema is registered (the first world.produce registers it)
    assert world.sql(port, world.view_sql(name, topic, time_column="at")).status == 200
    assert wait_for_status(port, name, "state", "running")["state"] == "running"
    reader = world.output_reader(views_agent.bootstrap, name)
    encode = avro_encoder(views_agent, topic)
    timeless: list[Event] = [(1, 1_000, "nobody", 7)]
    # record timestamps an hour early: windows by _timestamp would all be long closed
    world.produce(views_agent.bootstrap, topic, FIRST + timeless + CLOSING, encode, -HOUR_MS)
    expected = world.expected_windows(FIRST + CLOSING, 38_000)
    assert world.read_windows(reader, len(expected)) == expected
    reader.close()
    shown = wait_for_status(port, name, "invalid_records", 1)
    assert shown["invalid_records"] == 1 and shown["late_records"] == 0
    assert shown["watermark"] == world.BASE_MS + 38_000


@pytest.mark.slow  # some 7 s each: part of make test-all, not of the inner loop
def test_view_reads_partitions_added_to_its_input(views_agent: AgentThread) -> None:
    port = http_port(views_agent)
    topic = new_topic(views_agent, 1)
    name = f"grown_{uuid.uuid4().hex[:6]}"
    assert world.sql(port, world.view_sql(name, topic)).status == 200
    reader = world.output_reader(views_agent.bootstrap, name)
    world.produce(views_agent.bootstrap, topic, [(0, 0, "a", 1)])
    wait_for_status(port, name, "watermark", world.BASE_MS - 2_000)  # the runner read partition 0
    admin = AdminClient({"bootstrap.servers": views_agent.bootstrap})
    admin.create_partitions([NewPartitions(topic, 2)])[topic].result(CLIENT_TIMEOUT_S)
    added: list[Event] = [(1, 5_000, "b", 2), (1, 20_000, "c", 4)]  # watermark 18 s
    world.produce(views_agent.bootstrap, topic, added)
    expected = world.expected_windows([(0, 0, "a", 1), *added], 18_000)
    assert expected == [(0, "a", 1, 1), (0, "b", 1, 2)]
    assert world.read_windows(reader, len(expected)) == expected
    reader.close()
