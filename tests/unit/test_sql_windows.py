"""tumble, hop and session on DuckDB: hand-computed windows for boundaries, times before 1970,
empty windows, out-of-order input, both session arities, and every refused argument."""

from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa
import pytest

from streamhouse.sql.windows import install_window_functions

EPOCH = dt.datetime(1970, 1, 1)
UTC = dt.UTC


def at(seconds: float) -> dt.datetime:
    """A naive UTC timestamp `seconds` after (or before) the epoch."""
    return EPOCH + dt.timedelta(seconds=seconds)


def span(start_s: float, end_s: float) -> tuple[dt.datetime, dt.datetime]:
    return at(start_s), at(end_s)


def connect(
    seconds: list[float | None],
    keys: list[str | None] | None = None,
    *,
    ts_type: pa.DataType | None = None,
) -> duckdb.DuckDBPyConnection:
    """A fresh connection with the windows and `events(id, k, ts)`: row i at seconds[i]."""
    connection = duckdb.connect()
    install_window_functions(connection)
    timestamps = [None if s is None else at(s) for s in seconds]
    if ts_type is not None and getattr(ts_type, "tz", None) is not None:
        timestamps = [None if t is None else t.replace(tzinfo=UTC) for t in timestamps]
    events = pa.table(
        {
            "id": pa.array(range(len(seconds)), pa.int64()),
            "k": pa.array(keys if keys is not None else ["x"] * len(seconds), pa.string()),
            "ts": pa.array(timestamps, ts_type or pa.timestamp("us")),
        }
    )
    connection.register("events", events)
    return connection


def windows(connection: duckdb.DuckDBPyConnection, call: str) -> list[tuple[object, ...]]:
    """(id, window_start, window_end) of every output row of `call`, sorted."""
    rows = connection.sql(f"SELECT id, window_start, window_end FROM {call}").fetchall()
    return sorted(rows)


# tumble


def test_tumble_puts_a_row_on_a_window_end_in_the_next_window() -> None:
    connection = connect([0, 59.999999, 60, 119])
    assert windows(connection, "tumble(events, ts, INTERVAL '1 minute')") == [
        (0, *span(0, 60)),
        (1, *span(0, 60)),
        (2, *span(60, 120)),
        (3, *span(60, 120)),
    ]


def test_tumble_floors_times_before_1970() -> None:
    connection = connect([-30, -60, -61, -0.000001])
    assert windows(connection, "tumble(events, ts, INTERVAL '1 minute')") == [
        (0, *span(-60, 0)),
        (1, *span(-60, 0)),
        (2, *span(-120, -60)),
        (3, *span(-60, 0)),
    ]


def test_tumble_is_aligned_to_the_epoch_not_to_the_first_row() -> None:
    # 7-second windows: 100 s lies in [98, 105) because 98 = 14 * 7.
    connection = connect([100, 3])
    assert windows(connection, "tumble(events, ts, INTERVAL '7 seconds')") == [
        (0, *span(98, 105)),
        (1, *span(0, 7)),
    ]


def test_tumble_leaves_empty_windows_out_and_counts_out_of_order_rows() -> None:
    connection = connect([250, 10, 245, 30, 11])
    counts = connection.sql(
        "SELECT window_start, count(*) FROM tumble(events, ts, INTERVAL '1 minute') "
        "GROUP BY window_start ORDER BY window_start"
    ).fetchall()
    assert counts == [(at(0), 3), (at(240), 2)]


def test_tumble_keeps_the_input_columns_and_adds_the_window_bounds() -> None:
    connection = connect([5])
    result = connection.sql("SELECT * FROM tumble(events, ts, INTERVAL '10 seconds')")
    assert result.columns == ["id", "k", "ts", "window_start", "window_end"]
    assert [str(t) for t in result.types[3:]] == ["TIMESTAMP", "TIMESTAMP"]
    assert result.fetchall() == [(0, "x", at(5), *span(0, 10))]


def test_tumble_replaces_window_columns_of_its_input() -> None:
    connection = connect([65])
    result = connection.sql(
        "WITH minutes AS (SELECT * FROM tumble(events, ts, INTERVAL '1 minute')) "
        "SELECT * FROM tumble(minutes, window_start, INTERVAL '1 hour')"
    )
    assert result.columns == ["id", "k", "ts", "window_start", "window_end"]
    assert result.fetchall() == [(0, "x", at(65), *span(0, 3600))]


def test_tumble_over_timestamptz_keeps_the_type_and_ignores_the_session_time_zone() -> None:
    # 2021-03-14 06:59 UTC is 01:59 in New York, minutes before its clocks jump forward.
    instant = (dt.datetime(2021, 3, 14, 6, 59) - EPOCH).total_seconds()
    connection = connect([instant], ts_type=pa.timestamp("us", tz="UTC"))
    connection.execute("SET TimeZone = 'America/New_York'")
    result = connection.sql(
        "SELECT window_start, window_end, typeof(window_start) "
        "FROM tumble(events, ts, INTERVAL '1 day')"
    )
    ((start, end, type_name),) = result.fetchall()
    assert type_name == "TIMESTAMP WITH TIME ZONE"
    assert start.astimezone(UTC) == dt.datetime(2021, 3, 14, tzinfo=UTC)
    assert end.astimezone(UTC) == dt.datetime(2021, 3, 15, tzinfo=UTC)


def test_millisecond_timestamps_give_timestamp_windows() -> None:
    connection = connect([-0.5], ts_type=pa.timestamp("ms"))
    result = connection.sql("SELECT * FROM tumble(events, ts, INTERVAL '1 second')")
    assert [str(t) for t in result.types[3:]] == ["TIMESTAMP", "TIMESTAMP"]
    assert windows(connection, "tumble(events, ts, INTERVAL '1 second')") == [(0, *span(-1, 0))]


def test_rows_without_a_timestamp_belong_to_no_window() -> None:
    connection = connect([None, 1])
    for call in (
        "tumble(events, ts, INTERVAL '1 minute')",
        "hop(events, ts, INTERVAL '30 seconds', INTERVAL '1 minute')",
        "session(events, ts, INTERVAL '1 minute')",
        "session(events, ts, INTERVAL '1 minute', k)",
    ):
        assert [row[0] for row in windows(connection, call)] in ([1], [1, 1]), call


def test_the_relation_may_be_a_view_or_a_cte_and_the_size_interval_text() -> None:
    connection = connect([70, 10])
    connection.execute(
        "CREATE VIEW late AS SELECT * FROM events WHERE ts >= TIMESTAMP '1970-01-01 00:01:00'"
    )
    assert windows(connection, "tumble(late, ts, '1 minute')") == [(0, *span(60, 120))]
    with_cte = connection.sql(
        "WITH early AS (SELECT * FROM events WHERE id = 1) "
        "SELECT id, window_start, window_end FROM tumble(early, ts, INTERVAL '1 minute')"
    ).fetchall()
    assert with_cte == [(1, *span(0, 60))]


# hop


def test_hop_puts_a_row_in_size_over_slide_windows_when_slide_divides_size() -> None:
    connection = connect([60, 10])
    assert windows(connection, "hop(events, ts, INTERVAL '20 seconds', INTERVAL '1 minute')") == [
        (0, *span(20, 80)),
        (0, *span(40, 100)),
        (0, *span(60, 120)),
        (1, *span(-40, 20)),
        (1, *span(-20, 40)),
        (1, *span(0, 60)),
    ]


def test_hop_puts_a_row_in_floor_or_ceil_windows_when_slide_does_not_divide_size() -> None:
    # slide 2 s, size 3 s: windows [2k, 2k + 3) overlap by one second.
    connection = connect([0, 0.5, 1, 1.5, -1])
    assert windows(connection, "hop(events, ts, INTERVAL '2 seconds', INTERVAL '3 seconds')") == [
        (0, *span(-2, 1)),
        (0, *span(0, 3)),
        (1, *span(-2, 1)),
        (1, *span(0, 3)),
        (2, *span(0, 3)),
        (3, *span(0, 3)),
        (4, *span(-2, 1)),
    ]


def test_hop_with_slide_equal_to_size_is_tumble() -> None:
    connection = connect([-90, -1, 0, 59, 60, 3601])
    assert windows(connection, "hop(events, ts, INTERVAL '1 minute', INTERVAL '1 minute')") == (
        windows(connection, "tumble(events, ts, INTERVAL '1 minute')")
    )


def test_hop_leaves_empty_windows_out() -> None:
    connection = connect([0, 1000])
    starts = connection.sql(
        "SELECT DISTINCT window_start FROM hop(events, ts, INTERVAL '5 seconds', "
        "INTERVAL '10 seconds') ORDER BY ALL"
    ).fetchall()
    assert starts == [(at(-5),), (at(0),), (at(995),), (at(1000),)]


# session


def test_session_without_key_merges_events_closer_than_the_gap() -> None:
    # gap 10 s: 0, 4, 13 chain into one session ending 23; 23 is exactly at 13 + 10 and
    # starts the next; -30 is alone. Input is out of order.
    connection = connect([13, 0, 23, -30, 4, 23])
    assert windows(connection, "session(events, ts, INTERVAL '10 seconds')") == [
        (0, *span(0, 23)),
        (1, *span(0, 23)),
        (2, *span(23, 33)),
        (3, *span(-30, -20)),
        (4, *span(0, 23)),
        (5, *span(23, 33)),
    ]


def test_session_with_key_keeps_each_key_apart() -> None:
    # gap 10 s: key a has 0 and 12, 12 s apart, so two sessions; b's 6 would have bridged them.
    connection = connect([0, 6, 12, 30, 31], ["a", "b", "a", None, None])
    assert windows(connection, "session(events, ts, INTERVAL '10 seconds', k)") == [
        (0, *span(0, 10)),
        (1, *span(6, 16)),
        (2, *span(12, 22)),
        (3, *span(30, 41)),
        (4, *span(30, 41)),
    ]
    assert windows(connection, "session(events, ts, INTERVAL '10 seconds')") == [
        (0, *span(0, 22)),
        (1, *span(0, 22)),
        (2, *span(0, 22)),
        (3, *span(30, 41)),
        (4, *span(30, 41)),
    ]


def test_session_window_end_is_the_last_event_plus_the_gap() -> None:
    connection = connect([-5, -5, -0.5])
    assert windows(connection, "session(events, ts, INTERVAL '1 second', k)") == [
        (0, *span(-5, -4)),
        (1, *span(-5, -4)),
        (2, *span(-0.5, 0.5)),
    ]


# refused arguments

REFUSED_DURATIONS = [
    ("NULL", "must not be NULL"),
    ("INTERVAL '0 seconds'", "must be positive"),
    ("INTERVAL '-1 minute'", "must be positive"),
    ("INTERVAL '1 month'", "not a fixed duration"),
    ("INTERVAL '1 year'", "not a fixed duration"),
    ("INTERVAL '1 month 2 days'", "not a fixed duration"),
    ("60", "must be an INTERVAL"),
    ("'soon'", "is not an interval"),
]

CALLS = {
    ("tumble", "size"): "tumble(events, ts, {value})",
    ("hop", "slide"): "hop(events, ts, {value}, INTERVAL '1 hour')",
    ("hop", "size"): "hop(events, ts, INTERVAL '1 microsecond', {value})",
    ("session", "gap"): "session(events, ts, {value})",
    ("session", "gap", "key"): "session(events, ts, {value}, k)",
}


@pytest.mark.parametrize("value, reason", REFUSED_DURATIONS)
@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("rows", [[], [1.0]], ids=["empty", "one-row"])
def test_a_bad_duration_is_refused_naming_the_function_and_argument(
    call: tuple[str, ...], value: str, reason: str, rows: list[float | None]
) -> None:
    connection = connect(rows)
    function, argument = call[:2]
    with pytest.raises(duckdb.Error) as refused:
        connection.sql(f"SELECT * FROM {CALLS[call].format(value=value)}").fetchall()
    assert f"{function}: {argument}" in str(refused.value)
    assert reason in str(refused.value)


def test_hop_refuses_a_slide_greater_than_the_size() -> None:
    connection = connect([1])
    with pytest.raises(duckdb.Error, match=r"hop: slide .* must not be greater than size"):
        connection.sql(
            "SELECT * FROM hop(events, ts, INTERVAL '2 minutes', INTERVAL '1 minute')"
        ).fetchall()


def test_hop_refuses_more_windows_per_row_than_its_bound() -> None:
    connection = duckdb.connect()
    install_window_functions(connection, hop_windows_per_row_max=4)
    connection.register("events", pa.table({"ts": pa.array([at(0)], pa.timestamp("us"))}))
    call = "hop(events, ts, INTERVAL '1 second', INTERVAL '{size} seconds')"
    assert connection.sql(f"SELECT count(*) FROM {call.format(size=4)}").fetchall() == [(4,)]
    with pytest.raises(duckdb.Error, match=r"hop: size .* hop_windows_per_row_max \(4\)"):
        connection.sql(f"SELECT * FROM {call.format(size='4.5')}").fetchall()


@pytest.mark.parametrize("function", ["tumble", "session"])
def test_a_timestamp_column_of_another_type_is_refused_naming_ts_col(function: str) -> None:
    connection = connect([1])
    with pytest.raises(duckdb.Error, match=f"{function}: ts_col must be a TIMESTAMP"):
        connection.sql(
            f"SELECT * FROM {function}(events, CAST(ts AS DATE), INTERVAL '1 day')"
        ).fetchall()


def test_installing_twice_replaces_the_functions() -> None:
    connection = connect([1])
    install_window_functions(connection)
    assert windows(connection, "tumble(events, ts, INTERVAL '1 second')") == [(0, *span(1, 2))]
