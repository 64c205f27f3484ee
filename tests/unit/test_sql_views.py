"""Continuous views on a real agent, read by real Kafka clients: a tumble view over a JSON topic
of three partitions emits each window once (events out of order, on boundaries) once the
watermark passes its end, with the aggregate computed by hand; a record for a window already
emitted is counted late, not emitted; a drop stops the view and forgets it; refusals (SESSION,
no GROUP BY window_start, a taken name, an unknown topic). Prints the latency from the event
that closes windows to their rows being readable."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.fixtures.views_agent import http_port, new_topic, wait_for_status
from tests.unit.sasl_world import AgentThread
from tests.views_world import (
    Event,
    await_windows,
    expected_windows,
    http_call,
    more_windows,
    output_reader,
    produce,
    read_windows,
    shown_view,
    sql,
    view_sql,
)

# (partition, ms after BASE_MS, user, amount): out of order, on window boundaries
FIRST: list[Event] = [
    (0, 0, "a", 1),
    (1, 9_999, "a", 2),
    (2, 5_000, "b", 4),
    (0, 3_000, "b", 8),
    (1, 10_000, "a", 16),  # on the boundary: the second window's
    (2, 19_999, "a", 32),
    (0, 12_000, "b", 64),  # out of order
    (1, 25_000, "a", 128),
    (2, 29_000, "c", 1),
]
CLOSING: list[Event] = [(2, 40_000, "c", 256)]  # watermark 38 s: the 30 s window is due
LATE: list[Event] = [(0, 15_000, "a", 512)]  # its window was emitted
LAST: list[Event] = [(1, 60_000, "d", 1)]  # watermark 58 s: the 40 s window is due


@pytest.mark.slow  # some 9 s each: part of make test-all, not of the inner loop
def test_tumble_view_emits_each_window_once(views_agent: AgentThread) -> None:
    port = http_port(views_agent)
    topic = new_topic(views_agent, 3)
    name = f"per_user_{uuid.uuid4().hex[:6]}"
    created = sql(port, view_sql(name, topic))
    assert created.status == 200, created
    reader = output_reader(views_agent.bootstrap, name)
    produce(views_agent.bootstrap, topic, FIRST)  # watermark 27 s: the windows ending by 20 s
    emitted = read_windows(reader, len(expected_windows(FIRST, 27_000)))
    assert emitted == expected_windows(FIRST, 27_000)  # and not the 30 s one, still open
    started = time.monotonic()
    produce(views_agent.bootstrap, topic, CLOSING)
    due = expected_windows(FIRST + CLOSING, 38_000)
    emitted += await_windows(reader, len(due) - len(emitted))
    print(f"latency event -> window emitted: {(time.monotonic() - started) * 1000:.0f} ms")
    emitted += more_windows(reader)
    assert emitted == due
    produce(views_agent.bootstrap, topic, LATE + LAST)
    everything = FIRST + CLOSING + LAST  # the late record is in no emitted window
    assert emitted + read_windows(reader, 1) == expected_windows(everything, 58_000)
    shown = wait_for_status(port, name, "late_records", 1)
    assert shown["late_records"] == 1
    assert shown["windows_emitted"] == len(expected_windows(everything, 58_000))
    assert shown["watermark"] is not None and shown["state"] == "running"
    assert shown["output_topic"] == name and shown["allowed_lateness_ms"] == 2_000
    reader.close()


@pytest.mark.slow  # some 9 s each: part of make test-all, not of the inner loop
def test_drop_stops_the_view_and_forgets_it(views_agent: AgentThread) -> None:
    port = http_port(views_agent)
    topic = new_topic(views_agent, 1)
    name = f"dropped_{uuid.uuid4().hex[:6]}"
    assert sql(port, view_sql(name, topic)).status == 200
    assert shown_view(port, name) is not None
    assert http_call(port, "DELETE", f"/api/v1/sql/views/{name}").status == 204
    assert shown_view(port, name) is None
    assert http_call(port, "DELETE", f"/api/v1/sql/views/{name}").status == 404
    assert sql(port, f"DROP MATERIALIZED VIEW IF EXISTS {name}").status == 200
    reader = output_reader(views_agent.bootstrap, name)
    produce(views_agent.bootstrap, topic, [(0, 0, "a", 1), (0, 50_000, "a", 1)])
    assert read_windows(reader, 0) == []  # it no longer runs
    reader.close()
    assert sql(port, view_sql(name, topic)).status == 200  # the name is free again


def test_refusals(views_agent: AgentThread) -> None:
    port = http_port(views_agent)
    topic = new_topic(views_agent, 1)
    session = sql(
        port,
        f"CREATE MATERIALIZED VIEW s1 AS SELECT window_start, count(*) FROM "
        f"session(\"{topic}\", _timestamp, INTERVAL '5 seconds') GROUP BY window_start",
    )
    assert session.status == 400 and "SESSION" in session.body["message"]
    ungrouped = sql(
        port,
        f"CREATE MATERIALIZED VIEW s2 AS SELECT count(*) FROM "
        f"tumble(\"{topic}\", _timestamp, INTERVAL '5 seconds') GROUP BY _key",
    )
    assert ungrouped.status == 400 and "GROUP BY window_start" in ungrouped.body["message"]
    name = f"taken_{uuid.uuid4().hex[:6]}"
    assert sql(port, view_sql(name, topic)).status == 200
    taken = sql(port, view_sql(name, topic))
    assert taken.status == 409 and name in taken.body["message"]
    unknown = sql(port, view_sql("nowhere", "no-such-topic"))
    assert unknown.status == 404 and "no-such-topic" in unknown.body["message"]
    assert shown_view(port, "nowhere") is None
