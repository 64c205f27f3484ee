"""tumble, hop and session against a plain-Python reference: for random events (times in
microseconds either side of the epoch, duplicates, keys) and random window parameters, the rows
the DuckDB macros answer, as a multiset of (row id, window_start, window_end), equal the
reference's. The references follow the stated semantics directly: tumble floors, hop walks back
from the latest window start, session merges [ts, ts + gap) spans."""

from __future__ import annotations

import functools
from collections import Counter, defaultdict

import duckdb
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.sql.windows import install_window_functions
from tests.property_budget import examples

Event = tuple[int, int | None, str | None]  # (row id, microseconds since the epoch, key)
Placed = tuple[int, int, int]  # (row id, window start µs, window end µs)

HOP_WINDOWS_PER_ROW_TESTED_MAX = 40


def reference_tumble(events: list[Event], size_us: int) -> Counter[Placed]:
    placed: Counter[Placed] = Counter()
    for row, ts, _key in events:
        if ts is None:
            continue
        start = (ts // size_us) * size_us  # Python's // floors, also below zero
        placed[(row, start, start + size_us)] += 1
    return placed


def reference_hop(events: list[Event], slide_us: int, size_us: int) -> Counter[Placed]:
    placed: Counter[Placed] = Counter()
    for row, ts, _key in events:
        if ts is None:
            continue
        start = (ts // slide_us) * slide_us  # the latest window start at or before ts
        while start + size_us > ts:
            placed[(row, start, start + size_us)] += 1
            start -= slide_us
    return placed


def reference_session(events: list[Event], gap_us: int, *, by_key: bool) -> Counter[Placed]:
    groups: defaultdict[str | None, list[tuple[int, int]]] = defaultdict(list)
    for row, ts, key in events:
        if ts is not None:
            groups[key if by_key else None].append((ts, row))
    placed: Counter[Placed] = Counter()
    for members in groups.values():
        members.sort()
        sessions: list[list[tuple[int, int]]] = []
        for ts, row in members:
            # The span [ts, ts + gap) overlaps the open session's last span or starts anew.
            if sessions and ts < sessions[-1][-1][0] + gap_us:
                sessions[-1].append((ts, row))
            else:
                sessions.append([(ts, row)])
        for session in sessions:
            start, end = session[0][0], session[-1][0] + gap_us
            placed.update((row, start, end) for _ts, row in session)
    return placed


@functools.cache
def connection() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    install_window_functions(connection)
    return connection


def run(events: list[Event], with_time_zone: bool, call: str) -> Counter[Placed]:
    """The macro's answer for `events` registered as `events(id, k, ts)`."""
    ts_type = pa.timestamp("us", tz="UTC") if with_time_zone else pa.timestamp("us")
    table = pa.table(
        {
            "id": pa.array([row for row, _ts, _key in events], pa.int64()),
            "ts": pa.array([ts for _row, ts, _key in events], ts_type),
            "k": pa.array([key for _row, _ts, key in events], pa.string()),
        }
    )
    database = connection()
    database.register("events", table)
    try:
        rows = database.sql(
            f"SELECT id, epoch_us(window_start), epoch_us(window_end) FROM {call}"
        ).fetchall()
    finally:
        database.unregister("events")
    return Counter(rows)


def interval(microseconds: int) -> str:
    return f"INTERVAL '{microseconds} microseconds'"


# Times either side of the epoch, some bunched into a few microseconds so that duplicates and
# rows exactly on window bounds come up, some NULL.
timestamps = st.one_of(
    st.integers(-3_000_000_000, 3_000_000_000),
    st.integers(-6, 6).map(lambda n: n * 250_000_000),
    st.integers(-20, 20),
    st.none(),
)
keys = st.sampled_from(["a", "b", "c", None])
event_lists = st.lists(st.tuples(timestamps, keys), max_size=40).map(
    lambda drawn: [(row, ts, key) for row, (ts, key) in enumerate(drawn)]
)
durations_us = st.one_of(
    st.integers(1, 2_000_000_000),
    st.sampled_from([1, 7, 250_000_000, 1_000_000_000, 60_000_000]),
)


@settings(max_examples=examples(400), deadline=None)
@given(events=event_lists, size_us=durations_us, with_time_zone=st.booleans())
def test_tumble_matches_the_reference(
    events: list[Event], size_us: int, with_time_zone: bool
) -> None:
    call = f"tumble(events, ts, {interval(size_us)})"
    assert run(events, with_time_zone, call) == reference_tumble(events, size_us)


@st.composite
def hop_parameters(draw: st.DrawFn) -> tuple[int, int]:
    """(slide, size) with slide <= size: as often a divisor of size as not."""
    slide_us = draw(st.integers(1, 500_000_000))
    if draw(st.booleans()):
        size_us = slide_us * draw(st.integers(1, HOP_WINDOWS_PER_ROW_TESTED_MAX))
    else:
        size_us = draw(st.integers(slide_us, slide_us * HOP_WINDOWS_PER_ROW_TESTED_MAX))
    return slide_us, size_us


@settings(max_examples=examples(400), deadline=None)
@given(events=event_lists, parameters=hop_parameters(), with_time_zone=st.booleans())
def test_hop_matches_the_reference(
    events: list[Event], parameters: tuple[int, int], with_time_zone: bool
) -> None:
    slide_us, size_us = parameters
    call = f"hop(events, ts, {interval(slide_us)}, {interval(size_us)})"
    assert run(events, with_time_zone, call) == reference_hop(events, slide_us, size_us)


@settings(max_examples=examples(400), deadline=None)
@given(
    events=event_lists,
    gap_us=durations_us,
    by_key=st.booleans(),
    with_time_zone=st.booleans(),
)
def test_session_matches_the_reference(
    events: list[Event], gap_us: int, by_key: bool, with_time_zone: bool
) -> None:
    key_argument = ", k" if by_key else ""
    call = f"session(events, ts, {interval(gap_us)}{key_argument})"
    expected = reference_session(events, gap_us, by_key=by_key)
    assert run(events, with_time_zone, call) == expected


def test_the_references_agree_with_hand_computed_windows() -> None:
    # Independent of DuckDB: the references themselves on a few cases worked out by hand.
    events: list[Event] = [(0, -1, "a"), (1, 0, "a"), (2, 5, "b"), (3, 12, "a")]
    assert reference_tumble(events, 5) == Counter([(0, -5, 0), (1, 0, 5), (2, 5, 10), (3, 10, 15)])
    assert reference_hop(events[:1], 2, 3) == Counter([(0, -2, 1)])
    assert reference_hop(events[1:2], 2, 3) == Counter([(1, 0, 3), (1, -2, 1)])
    assert reference_session(events, 6, by_key=False) == Counter(
        [(0, -1, 11), (1, -1, 11), (2, -1, 11), (3, 12, 18)]
    )
    assert reference_session(events, 6, by_key=True) == Counter(
        [(0, -1, 6), (1, -1, 6), (2, 5, 11), (3, 12, 18)]
    )
