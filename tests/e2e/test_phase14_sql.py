"""Phase 14, batch: SQL over topics answers hand-computed windows through every door.

Two topics of known events, with their answers worked out by hand and written here literally:
`clicks` (JSON values, 3 partitions) and `orders` (Avro values produced by confluent-kafka's
AvroSerializer against the agent's own schema registry, 2 partitions). Events sit exactly on
window boundaries, leave windows empty (which must give no row), arrive out of time order, and
spread over the partitions. The first half of each topic is flushed to objects (the agent runs
with a flush interval of an hour and is stopped, which flushes, then started again) and the
second half stays in the unflushed tail, so every answer needs both. Each query is asked through
`streamctl sql -o json`, the HTTP API as JSON and as an Arrow stream, and the notebook client;
EXPLAIN names the objects a query reads.

Times are minutes and seconds past T0 = 2026-01-01 00:00:00 UTC.

clicks: (partition, time, customer, amount), first half flushed, second half in the tail
    p0 00:00.000 ada 1     on a minute boundary
    p1 00:59.999 bob 2     the last instant of the first minute
    p2 01:00.000 ada 4     on the boundary: the second minute, not the first
    p0 03:20.000 bob 8
    ---- tail
    p1 00:30.000 ada 16    out of order: older than everything before it but one
    p2 02:00.000 ada 32    exactly one gap (1 minute) after ada's 01:00: a new session
    p0 03:59.999 bob 64
    p1 10:00.000 ada 128   after six empty minutes

orders: (partition, time, customer, amount)
    p0 00:00.000 ada 10
    p1 04:59.999 bob 20
    ---- tail
    p0 05:00.000 ada 30    on a 5-minute boundary, and exactly one gap after ada's 00:00
    p1 02:00.000 bob 40    out of order
    p0 15:00.000 ada 50    after an empty 5 minutes
"""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from streamhouse.sql.client import SqlRequestError, connect
from tests.e2e.conftest import Agent, start_agent

TIMEOUT_S = 30
FLUSH_INTERVAL_MS = "3600000"  # an hour: nothing is flushed but by the stop
T0_MS = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC
ARROW_STREAM = "application/vnd.apache.arrow.stream"

ORDER_SCHEMA = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "customer", "type": "string"}, {"name": "amount", "type": "long"}],
}

Event = tuple[int, str, str, int]  # partition, "MM:SS.fff" past T0, customer, amount

CLICKS_FLUSHED: list[Event] = [
    (0, "00:00.000", "ada", 1),
    (1, "00:59.999", "bob", 2),
    (2, "01:00.000", "ada", 4),
    (0, "03:20.000", "bob", 8),
]
CLICKS_TAIL: list[Event] = [
    (1, "00:30.000", "ada", 16),
    (2, "02:00.000", "ada", 32),
    (0, "03:59.999", "bob", 64),
    (1, "10:00.000", "ada", 128),
]
ORDERS_FLUSHED: list[Event] = [(0, "00:00.000", "ada", 10), (1, "04:59.999", "bob", 20)]
ORDERS_TAIL: list[Event] = [
    (0, "05:00.000", "ada", 30),
    (1, "02:00.000", "bob", 40),
    (0, "15:00.000", "ada", 50),
]


def ms(mm_ss: str) -> int:
    """Epoch milliseconds of "MM:SS.fff" past T0."""
    minutes, seconds = mm_ss.split(":")
    return T0_MS + int(minutes) * 60_000 + round(float(seconds) * 1000)


def at(mm_ss: str) -> datetime:
    """The moment "MM:SS.fff" past T0 (negative minutes: before T0), as answers compare."""
    sign = -1 if mm_ss.startswith("-") else 1
    minutes, seconds = mm_ss.lstrip("-").split(":")
    offset = timedelta(minutes=int(minutes), seconds=float(seconds))
    return datetime(2026, 1, 1, tzinfo=UTC) + sign * offset


# ---------------------------------------------------------------- the queries and their answers

CLICKS_TUMBLE = """
SELECT window_start, window_end, count(*) AS n, sum(amount)::BIGINT AS total
FROM tumble(clicks, _timestamp, INTERVAL '1 minute')
GROUP BY window_start, window_end ORDER BY window_start"""
CLICKS_TUMBLE_ROWS = [
    # 00:00.000, 00:59.999 and the late 00:30.000; 01:00.000 is the next minute's
    (at("00:00"), at("01:00"), 3, 19),
    (at("01:00"), at("02:00"), 1, 4),
    (at("02:00"), at("03:00"), 1, 32),
    (at("03:00"), at("04:00"), 2, 72),
    # minutes 4 to 9 hold nothing: no rows
    (at("10:00"), at("11:00"), 1, 128),
]

CLICKS_HOP = """
SELECT window_start, window_end, count(*) AS n, sum(amount)::BIGINT AS total
FROM hop(clicks, _timestamp, INTERVAL '1 minute', INTERVAL '2 minutes')
GROUP BY window_start, window_end ORDER BY window_start"""
CLICKS_HOP_ROWS = [
    # each event is in the window starting at its minute and in the one a minute before
    (at("-01:00"), at("01:00"), 3, 19),  # 1 + 2 + 16
    (at("00:00"), at("02:00"), 4, 23),  # 1 + 2 + 16 + 4
    (at("01:00"), at("03:00"), 2, 36),  # 4 + 32
    (at("02:00"), at("04:00"), 3, 104),  # 32 + 8 + 64
    (at("03:00"), at("05:00"), 2, 72),  # 8 + 64
    (at("09:00"), at("11:00"), 1, 128),
    (at("10:00"), at("12:00"), 1, 128),
]
HOP_ROW_COUNT = (
    "SELECT count(*) AS n FROM hop(clicks, _timestamp, INTERVAL '1 minute', INTERVAL '2 minutes')"
)
HOP_ROW_COUNT_ROWS = [(16,)]  # 8 events, each in size/slide = 2 windows

CLICKS_SESSION = """
SELECT window_start, window_end, count(*) AS n, sum(amount)::BIGINT AS total
FROM session(clicks, _timestamp, INTERVAL '1 minute')
GROUP BY window_start, window_end ORDER BY window_start"""
CLICKS_SESSION_ROWS = [
    # 00:00, 00:30, 00:59.999, 01:00: each within a minute of the last; ends 01:00 + 1 minute
    (at("00:00"), at("02:00"), 4, 23),
    # 02:00 is exactly a gap after 01:00: a new session (an event's span is half-open)
    (at("02:00"), at("03:00"), 1, 32),
    # 03:20 is 80 s after 02:00; 03:59.999 joins it; the end is the last event plus the gap
    (at("03:20"), at("04:59.999"), 2, 72),
    (at("10:00"), at("11:00"), 1, 128),
]

CLICKS_SESSION_BY_CUSTOMER = """
SELECT customer, window_start, window_end, count(*) AS n, sum(amount)::BIGINT AS total
FROM session(clicks, _timestamp, INTERVAL '1 minute', customer)
GROUP BY customer, window_start, window_end ORDER BY customer, window_start"""
CLICKS_SESSION_BY_CUSTOMER_ROWS = [
    ("ada", at("00:00"), at("02:00"), 3, 21),  # 00:00, 00:30, 01:00
    ("ada", at("02:00"), at("03:00"), 1, 32),  # exactly a gap after 01:00
    ("ada", at("10:00"), at("11:00"), 1, 128),
    ("bob", at("00:59.999"), at("01:59.999"), 1, 2),
    ("bob", at("03:20"), at("04:59.999"), 2, 72),  # 03:20 and 03:59.999
]

ORDERS_TUMBLE = """
SELECT window_start, window_end, count(*) AS n, sum(amount)::BIGINT AS total
FROM tumble(orders, _timestamp, INTERVAL '5 minutes')
GROUP BY window_start, window_end ORDER BY window_start"""
ORDERS_TUMBLE_ROWS = [
    (at("00:00"), at("05:00"), 3, 70),  # 00:00, 04:59.999, the late 02:00
    (at("05:00"), at("10:00"), 1, 30),  # 05:00 on the boundary
    # 10:00 to 15:00 is empty: no row
    (at("15:00"), at("20:00"), 1, 50),
]

ORDERS_HOP = """
SELECT window_start, window_end, count(*) AS n, sum(amount)::BIGINT AS total
FROM hop(orders, _timestamp, INTERVAL '5 minutes', INTERVAL '10 minutes')
GROUP BY window_start, window_end ORDER BY window_start"""
ORDERS_HOP_ROWS = [
    (at("-05:00"), at("05:00"), 3, 70),
    (at("00:00"), at("10:00"), 4, 100),
    (at("05:00"), at("15:00"), 1, 30),
    (at("10:00"), at("20:00"), 1, 50),
    (at("15:00"), at("25:00"), 1, 50),
]

ORDERS_SESSION_BY_CUSTOMER = """
SELECT customer, window_start, window_end, count(*) AS n, sum(amount)::BIGINT AS total
FROM session(orders, _timestamp, INTERVAL '5 minutes', customer)
GROUP BY customer, window_start, window_end ORDER BY customer, window_start"""
ORDERS_SESSION_BY_CUSTOMER_ROWS = [
    ("ada", at("00:00"), at("05:00"), 1, 10),
    ("ada", at("05:00"), at("10:00"), 1, 30),  # exactly a gap after 00:00
    ("ada", at("15:00"), at("20:00"), 1, 50),
    ("bob", at("02:00"), at("09:59.999"), 2, 60),  # 02:00 and 04:59.999
]

ORDERS_RAW = """
SELECT _partition, _offset, _timestamp, customer, amount FROM orders
ORDER BY _partition, _offset"""
ORDERS_RAW_ROWS = [
    (0, 0, at("00:00"), "ada", 10),
    (0, 1, at("05:00"), "ada", 30),
    (0, 2, at("15:00"), "ada", 50),
    (1, 0, at("04:59.999"), "bob", 20),
    (1, 1, at("02:00"), "bob", 40),
]


QUERIES = {
    "clicks tumble": (CLICKS_TUMBLE, CLICKS_TUMBLE_ROWS),
    "clicks hop": (CLICKS_HOP, CLICKS_HOP_ROWS),
    "clicks hop row count": (HOP_ROW_COUNT, HOP_ROW_COUNT_ROWS),
    "clicks session": (CLICKS_SESSION, CLICKS_SESSION_ROWS),
    "clicks session by customer": (CLICKS_SESSION_BY_CUSTOMER, CLICKS_SESSION_BY_CUSTOMER_ROWS),
    "orders tumble": (ORDERS_TUMBLE, ORDERS_TUMBLE_ROWS),
    "orders hop": (ORDERS_HOP, ORDERS_HOP_ROWS),
    "orders session by customer": (ORDERS_SESSION_BY_CUSTOMER, ORDERS_SESSION_BY_CUSTOMER_ROWS),
    "orders raw": (ORDERS_RAW, ORDERS_RAW_ROWS),
}


# ---------------------------------------------------------------- the agent and its data


def create_topic(agent: Agent, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    admin.create_topics([NewTopic(name, partitions)])[name].result(TIMEOUT_S)


def produce(
    agent: Agent, topic: str, events: list[Event], encode: Callable[[dict[str, Any]], bytes]
) -> None:
    """Each event, at its partition and time, acknowledged by the leader's WAL (acks=1)."""
    producer = Producer({"bootstrap.servers": agent.bootstrap, "acks": "1"})
    failures: list[Any] = []
    for partition, moment, customer, amount in events:
        value = encode({"customer": customer, "amount": amount})
        producer.produce(
            topic,
            value,
            partition=partition,
            timestamp=ms(moment),
            on_delivery=lambda error, _: failures.append(error) if error else None,
        )
    assert producer.flush(TIMEOUT_S) == 0
    assert failures == []


def json_value(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


def avro_encoder(agent: Agent, topic: str) -> Callable[[dict[str, Any]], bytes]:
    registry = SchemaRegistryClient({"url": agent.registry_url})
    serializer = AvroSerializer(registry, json.dumps(ORDER_SCHEMA))
    context = SerializationContext(topic, MessageField.VALUE)

    def encode(value: dict[str, Any]) -> bytes:
        encoded = serializer(value, context)
        assert encoded is not None
        return encoded

    return encode


def durable_ends(data_dir: Path, topic: str) -> dict[int, int]:
    """Each partition's offset below which records are in objects, from the metadata store."""
    uri = f"file:{data_dir / 'metadata.db'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        rows = db.execute(
            "SELECT partition, durable_end_offset FROM partitions WHERE topic = ?", (topic,)
        ).fetchall()
    return {int(partition): int(end) for partition, end in rows}


def object_keys(data_dir: Path, topic: str) -> set[str]:
    uri = f"file:{data_dir / 'metadata.db'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        rows = db.execute("SELECT object_key FROM segments WHERE topic = ?", (topic,)).fetchall()
    return {str(key) for (key,) in rows}


def per_partition(events: list[Event]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for partition, *_ in events:
        counts[partition] = counts.get(partition, 0) + 1
    return counts


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """An agent whose topics hold the first half of their events in objects (flushed by a
    clean stop) and the second half only in the tail."""
    data_dir = tmp_path_factory.mktemp("phase14") / "data"
    with start_agent(data_dir, "--flush-interval-ms", FLUSH_INTERVAL_MS) as first:
        create_topic(first, "clicks", 3)
        create_topic(first, "orders", 2)
        produce(first, "clicks", CLICKS_FLUSHED, json_value)
        produce(first, "orders", ORDERS_FLUSHED, avro_encoder(first, "orders"))
        first.stop_cleanly()  # flushes what is pending
    assert durable_ends(data_dir, "clicks") == {0: 2, 1: 1, 2: 1}
    assert durable_ends(data_dir, "orders") == {0: 1, 1: 1}
    with start_agent(data_dir, "--flush-interval-ms", FLUSH_INTERVAL_MS) as running:
        produce(running, "clicks", CLICKS_TAIL, json_value)
        produce(running, "orders", ORDERS_TAIL, avro_encoder(running, "orders"))
        yield running
        # the tail stayed a tail for the whole test: the answers needed both halves
        assert durable_ends(data_dir, "clicks") == {0: 2, 1: 1, 2: 1}
        running.stop_cleanly()


# ---------------------------------------------------------------- the doors


def normal(value: Any) -> Any:
    """An answer's value as the expected rows write it: times as aware UTC datetimes."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def via_streamctl(agent: Agent, sql: str) -> list[tuple[Any, ...]]:
    """`streamctl sql -o json`, run as an operator runs it."""
    code = "from streamhouse.cli.streamctl import app; app(prog_name='streamctl')"
    done = subprocess.run(
        [sys.executable, "-c", code, "sql", "-o", "json", "--http", agent.http_base, sql],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    return [tuple(normal(v) for v in row.values()) for row in json.loads(done.stdout)]


def post_sql(agent: Agent, sql: str, accept: str) -> bytes:
    request = urllib.request.Request(
        agent.http_base + "/api/v1/sql",
        data=json.dumps({"sql": sql}).encode(),
        headers={"Content-Type": "application/json", "Accept": accept},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
        body: bytes = answer.read()
        assert answer.headers["Content-Type"].startswith(accept)
    return body


def via_http_json(agent: Agent, sql: str) -> list[tuple[Any, ...]]:
    answer = json.loads(post_sql(agent, sql, "application/json"))
    assert all(set(column) >= {"name", "type"} for column in answer["columns"])
    return [tuple(normal(v) for v in row) for row in answer["rows"]]


def rows_of(table: pa.Table) -> list[tuple[Any, ...]]:
    return [tuple(normal(v) for v in row.values()) for row in table.to_pylist()]


def via_http_arrow(agent: Agent, sql: str) -> list[tuple[Any, ...]]:
    return rows_of(pyarrow.ipc.open_stream(post_sql(agent, sql, ARROW_STREAM)).read_all())


def via_notebook(agent: Agent, sql: str) -> list[tuple[Any, ...]]:
    return rows_of(connect(agent.http_base).sql(sql))


DOORS = {
    "streamctl": via_streamctl,
    "http-json": via_http_json,
    "http-arrow": via_http_arrow,
    "notebook": via_notebook,
}


@pytest.mark.parametrize(
    "query",
    list(QUERIES),
)
@pytest.mark.parametrize("door", DOORS)
def test_windows_answer_the_hand_computed_rows(agent: Agent, door: str, query: str) -> None:
    sql, expected = QUERIES[query]
    assert DOORS[door](agent, sql) == expected


def explained(agent: Agent, sql: str) -> list[tuple[int, str, int, int, bool]]:
    """EXPLAIN's rows: partition, action, first and last offset, whether an object is named."""
    listed = connect(agent.http_base).sql("EXPLAIN " + sql).to_pylist()
    keys = object_keys(agent.data_dir, "clicks")
    assert all(row["object_key"] in keys for row in listed if row["action"] != "tail")
    return sorted(
        (
            row["partition"],
            row["action"],
            row["first_offset"],
            row["last_offset"],
            row["object_key"] is not None,
        )
        for row in listed
    )


def test_explain_names_the_objects_a_query_reads(agent: Agent) -> None:
    assert explained(agent, "SELECT count(*) FROM clicks") == [
        (0, "read", 0, 1, True),  # the flushed half, in the object the stop wrote
        (0, "tail", 2, 2, False),  # the rest from the leader's memory
        (1, "read", 0, 0, True),
        (1, "tail", 1, 2, False),
        (2, "read", 0, 0, True),
        (2, "tail", 1, 1, False),
    ]
    # from 00:05 on: every object's newest record is older, so none is read; of the tail only
    # partition 1's 10:00 (offset 2) is at or after it (the scan starts at the first such)
    assert explained(agent, "SELECT * FROM clicks WHERE _timestamp >= '2026-01-01 00:05:00'") == [
        (0, "skip", 0, 1, True),
        (1, "skip", 0, 0, True),
        (1, "tail", 2, 2, False),
        (2, "skip", 0, 0, True),
    ]


def test_unknown_topic_is_refused_with_its_status_through_every_door(agent: Agent) -> None:
    sql = "SELECT * FROM no_such_topic"
    with pytest.raises(SqlRequestError) as refused:
        connect(agent.http_base).sql(sql)
    assert refused.value.status == 404
    assert "no_such_topic" in refused.value.message
    with pytest.raises(urllib.error.HTTPError) as http_refused:
        post_sql(agent, sql, "application/json")
    assert http_refused.value.code == 404
    body = json.loads(http_refused.value.read())
    assert body["error_code"] == 404 and "no_such_topic" in body["message"]
    code = "from streamhouse.cli.streamctl import app; app(prog_name='streamctl')"
    done = subprocess.run(
        [sys.executable, "-c", code, "sql", "--http", agent.http_base, sql],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 1
    assert "no_such_topic" in done.stderr and "HTTP 404" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_window_argument_is_named(agent: Agent) -> None:
    with pytest.raises(SqlRequestError) as refused:
        connect(agent.http_base).sql(
            "SELECT * FROM tumble(clicks, _timestamp, INTERVAL '0 seconds')"
        )
    assert refused.value.status == 400
    assert "size" in refused.value.message


def test_base64_keys_and_values_in_json_answers(agent: Agent) -> None:
    """_value is bytes: the JSON answer carries it as base64, the Arrow one as bytes."""
    sql = "SELECT _value FROM orders WHERE _partition = 1 AND _offset = 0"
    (as_json,) = via_http_json(agent, sql)
    (as_arrow,) = via_http_arrow(agent, sql)
    assert base64.b64decode(as_json[0]) == as_arrow[0]
    assert as_arrow[0][0] == 0  # Confluent's wire format: magic byte, then the schema id
