"""What the continuous view tests share (unit and e2e): the SQL calls over HTTP, a known event
set with its hand-computed tumble windows, and a read_committed Kafka reader of a view's
output topic."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

HTTP_TIMEOUT_S = 30
READ_TIMEOUT_S = 30
QUIET_S = 2.0  # after the expected rows, how long no further row may come
BASE_MS = 1_700_000_000_000  # a multiple of every window size used here
SIZE_MS = 10_000
LATENESS = "2 seconds"


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


def http_call(port: int, method: str, path: str, body: Any = None) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        return Answer(response.status, json.loads(raw) if raw else None)
    finally:
        connection.close()


def sql(port: int, text: str) -> Answer:
    return http_call(port, "POST", "/api/v1/sql", {"sql": text})


def view_sql(
    name: str, topic: str, *, time_column: str = "_timestamp", slide_ms: int | None = None
) -> str:
    """A view of count and sum of `amount` per `user_id` in windows of SIZE_MS: tumbling, or
    hopping by `slide_ms`."""
    size = f"INTERVAL '{SIZE_MS} milliseconds'"
    window = (
        f'tumble("{topic}", {time_column}, {size})'
        if slide_ms is None
        else f"hop(\"{topic}\", {time_column}, INTERVAL '{slide_ms} milliseconds', {size})"
    )
    return (
        f"CREATE MATERIALIZED VIEW {name} WITH (allowed_lateness = '{LATENESS}') AS "
        "SELECT window_start, user_id, count(*) AS n, sum(amount) AS total "
        f"FROM {window} GROUP BY window_start, user_id"
    )


def shown_view(port: int, name: str) -> dict[str, Any] | None:
    listed = http_call(port, "GET", "/api/v1/sql/views")
    assert listed.status == 200, listed
    found = [view for view in listed.body["views"] if view["name"] == name]
    return found[0] if found else None


Event = tuple[int, int, str, int]  # partition, ms after BASE_MS, user, amount


def json_value(user: str, amount: int, _event_ms: int) -> bytes:
    return json.dumps({"user_id": user, "amount": amount}).encode()


def produce(
    bootstrap: str,
    topic: str,
    events: list[Event],
    encode: Callable[[str, int, int], bytes] = json_value,
    record_time_shift_ms: int = 0,
) -> None:
    """Each event as a record of its partition, its value `encode(user, amount, event ms)`,
    its timestamp the event's time plus `record_time_shift_ms`."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    for partition, offset_ms, user, amount in events:
        event_ms = BASE_MS + offset_ms
        producer.produce(
            topic,
            encode(user, amount, event_ms),
            user.encode(),
            partition=partition,
            timestamp=event_ms + record_time_shift_ms,
        )
    assert producer.flush(HTTP_TIMEOUT_S) == 0


def expected_windows(
    events: list[Event], through_ms: int, *, after_ms: int | None = None, slide_ms: int = SIZE_MS
) -> list[tuple[int, str, int, int]]:
    """(window start after BASE_MS, user, count, total) of the windows of SIZE_MS, starting
    every `slide_ms`, that end after `after_ms` and at or before `through_ms` (both after
    BASE_MS), sorted: the plain-Python reference."""
    windows: dict[tuple[int, str], list[int]] = {}
    for _, offset_ms, user, amount in events:
        start = offset_ms // slide_ms * slide_ms
        while start + SIZE_MS > offset_ms:  # every window holding the event
            end = start + SIZE_MS
            if end <= through_ms and (after_ms is None or end > after_ms):
                windows.setdefault((start, user), []).append(amount)
            start -= slide_ms
    return sorted((start, user, len(a), sum(a)) for (start, user), a in windows.items())


def output_reader(bootstrap: str, topic: str) -> Any:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{topic}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    return consumer


def read_windows(consumer: Any, count: int) -> list[tuple[int, str, int, int]]:
    """The next `count` output rows as (window start after BASE_MS, user, count, total), then
    QUIET_S in which no further row may come."""
    return await_windows(consumer, count) + more_windows(consumer)


def await_windows(consumer: Any, count: int) -> list[tuple[int, str, int, int]]:
    """Output rows until `count` came (or READ_TIMEOUT_S passed)."""
    rows: list[tuple[int, str, int, int]] = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    while len(rows) < count and time.monotonic() < deadline:
        rows += [_row(m) for m in consumer.consume(100, 0.05) if m.error() is None]
    return rows


def more_windows(consumer: Any) -> list[tuple[int, str, int, int]]:
    """The output rows that come within QUIET_S."""
    rows: list[tuple[int, str, int, int]] = []
    quiet_until = time.monotonic() + QUIET_S
    while time.monotonic() < quiet_until:
        rows += [_row(m) for m in consumer.consume(100, 0.2) if m.error() is None]
    return rows


def _row(message: Any) -> tuple[int, str, int, int]:
    value = json.loads(message.value())
    key = json.loads(message.key())
    assert key["window_start"] == value["window_start"] and key["user_id"] == value["user_id"]
    start_ms = _epoch_ms(value["window_start"])
    assert _epoch_ms(value["window_end"]) == start_ms + SIZE_MS
    assert message.timestamp()[1] == start_ms + SIZE_MS  # the record's time: the window's end
    return (start_ms - BASE_MS, value["user_id"], value["n"], value["total"])


def _epoch_ms(shown: str) -> int:
    return round(datetime.fromisoformat(shown.replace("Z", "+00:00")).timestamp() * 1000)
