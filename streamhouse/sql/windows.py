"""Window table functions for SQL over topics: tumble, hop and session, defined on a DuckDB
connection by `install_window_functions` (RisingWave's spelling, Flink's and Calcite's meaning).

Each function takes a relation (a table, view or CTE name), a timestamp column and one or two
durations, and answers the relation's rows with two columns added, `window_start` and
`window_end`. Every window is half-open, [window_start, window_end): a row whose timestamp equals
a window's end belongs to the next window, not to that one.

tumble(t, ts_col, size)
    Every row exactly once, in the window [k*size, (k+1)*size) that holds it, k an integer.
    Windows are aligned to the Unix epoch (1970-01-01 00:00:00 UTC), not to DuckDB's
    time_bucket origin; for timestamps before 1970 the window is found by floor division, so
    1969-12-31 23:59:30 with size one minute lands in [23:59:00, 00:00:00).

        -- orders per minute
        SELECT window_start, count(*) AS orders
        FROM tumble(orders, _timestamp, INTERVAL '1 minute')
        GROUP BY window_start ORDER BY window_start;

hop(t, ts_col, slide, size)
    A row once for every window [k*slide, k*slide + size) that holds it (k an integer, aligned
    to the epoch). When slide divides size that is exactly size/slide windows per row. When it
    does not, a row lands in floor(size/slide) or ceil(size/slide) windows, depending on where
    it falls between two window starts (slide 2s, size 3s: the row at 0.5s is in [-2s, 1s) and
    [0s, 3s), the row at 1.5s only in [0s, 3s)). slide greater than size is refused: such
    windows leave gaps in which rows would silently fall into no window, and the usual way
    to get there is passing size and slide in the wrong order.

        -- five-minute totals, refreshed every minute
        SELECT window_start, window_end, sum(amount) AS total
        FROM hop(orders, _timestamp, INTERVAL '1 minute', INTERVAL '5 minutes')
        GROUP BY ALL;

session(t, ts_col, gap) and session(t, ts_col, gap, key_col)
    Per key (or over the whole relation with three arguments) the events in time order; each
    event spans [ts, ts + gap) and overlapping spans merge into one session. So an event starts
    a new session when it is at or after the previous event's ts + gap. window_start is the
    session's first event time and window_end its last event time plus the gap (as Flink and
    Calcite define it). Every row appears once, with its session's bounds. NULL keys form one
    group of their own.

        -- visits per user: a pause of 30 minutes or more ends a visit
        SELECT user_id, window_start, window_end, count(*) AS clicks
        FROM session(clicks, _timestamp, INTERVAL '30 minutes', user_id)
        GROUP BY ALL;

Types and edge cases
    ts_col may be TIMESTAMP, TIMESTAMPTZ, TIMESTAMP_MS or TIMESTAMP_S (an expression works too).
    window_start and window_end have the type of ts_col for TIMESTAMP and TIMESTAMPTZ, and are
    TIMESTAMP for TIMESTAMP_MS and TIMESTAMP_S. Boundaries are computed in integer microseconds
    since the epoch, so TIMESTAMPTZ windows do not depend on the session's TimeZone setting.
    Rows whose timestamp is NULL belong to no window and are left out. Input columns named
    window_start or window_end are replaced (so windows can be taken over windowed results).
    Windows with no rows produce no rows.

Arguments
    size, slide and gap are INTERVALs (or interval text such as '1 minute') of a fixed length:
    days, hours, minutes, seconds and fractions, at microsecond precision (a day counts 24
    hours). Each is refused, with an error naming the function and the argument, when NULL, zero
    or negative, not an interval, or given in months or years (whose length varies). hop also
    refuses slide > size, and more than `hop_windows_per_row_max` windows per row.

The functions are DuckDB table macros created in the connection's database (not TEMP), so the
cursors of that connection see them as well; installing again replaces them.
"""

from __future__ import annotations

import duckdb

HOP_WINDOWS_PER_ROW_MAX = 10_000
"""How many windows one row may land in for hop (ceil(size/slide)): a bound on output size."""

_TIMESTAMP_TYPES = ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_MS", "TIMESTAMP_S")

# Names of our own helper columns: a prefix no topic column is expected to use.
_PREFIX = "__window_"


def install_window_functions(
    connection: duckdb.DuckDBPyConnection,
    *,
    hop_windows_per_row_max: int = HOP_WINDOWS_PER_ROW_MAX,
) -> None:
    """Define tumble, hop and session (three and four arguments) on `connection`."""
    assert hop_windows_per_row_max > 0, hop_windows_per_row_max
    connection.execute(_tumble_macro())
    connection.execute(_hop_macro(hop_windows_per_row_max))
    connection.execute(_session_macro())


def _tumble_macro() -> str:
    start_us = f"{_floor_div(f'{_PREFIX}us', f'{_PREFIX}size_us')} * {_PREFIX}size_us"
    return f"""
CREATE OR REPLACE MACRO tumble(t, ts_col, size) AS TABLE
WITH {_PREFIX}parameters AS (SELECT {_duration_us("tumble", "size")} AS {_PREFIX}size_us),
{_PREFIX}placed AS (
    SELECT *, {start_us} AS {_PREFIX}start_us,
        {start_us} + {_PREFIX}size_us AS {_PREFIX}end_us
    FROM ({_rows_sql("tumble")}) CROSS JOIN {_PREFIX}parameters
)
SELECT {_output_columns()} FROM {_PREFIX}placed
"""


def _hop_macro(windows_per_row_max: int) -> str:
    slide_us = _duration_us("hop", "slide")
    size_us = _duration_us("hop", "size")
    checked_size_us = f"""CASE
    WHEN {slide_us} > {size_us} THEN error('hop: slide (' || CAST(slide AS VARCHAR)
        || ') must not be greater than size (' || CAST(size AS VARCHAR)
        || '): rows between windows would be lost; is the order hop(t, ts_col, slide, size)?')
    WHEN ({size_us} + {slide_us} - 1) // {slide_us} > {windows_per_row_max}
        THEN error('hop: size (' || CAST(size AS VARCHAR) || ') / slide ('
        || CAST(slide AS VARCHAR) || ') puts a row in more than hop_windows_per_row_max '
        || '({windows_per_row_max}) windows')
    ELSE {size_us} END"""
    us, slide, size = f"{_PREFIX}us", f"{_PREFIX}slide_us", f"{_PREFIX}size_us"
    # Window k holds the row when k*slide <= us < k*slide + size.
    first_k = f"{_floor_div(f'{us} - {size}', slide)} + 1"
    last_k = _floor_div(us, slide)
    return f"""
CREATE OR REPLACE MACRO hop(t, ts_col, slide, size) AS TABLE
WITH {_PREFIX}parameters AS (
    SELECT {slide_us} AS {slide}, {checked_size_us} AS {size}
),
{_PREFIX}expanded AS (
    SELECT *, unnest(range({first_k}, {last_k} + 1)) AS {_PREFIX}k
    FROM ({_rows_sql("hop")}) CROSS JOIN {_PREFIX}parameters
),
{_PREFIX}placed AS (
    SELECT *, {_PREFIX}k * {slide} AS {_PREFIX}start_us,
        {_PREFIX}k * {slide} + {size} AS {_PREFIX}end_us
    FROM {_PREFIX}expanded
)
SELECT {_output_columns()} FROM {_PREFIX}placed
"""


def _session_macro() -> str:
    """Both arities in one statement: DuckDB overloads a macro by argument count."""
    return f"""
CREATE OR REPLACE MACRO session(t, ts_col, gap) AS TABLE ({_session_body("NULL")}),
    (t, ts_col, gap, key_col) AS TABLE ({_session_body("key_col")})
"""


def _session_body(key: str) -> str:
    us, gap = f"{_PREFIX}us", f"{_PREFIX}gap_us"
    by_key_in_time = f"PARTITION BY {_PREFIX}key ORDER BY {us}"
    session = f"PARTITION BY {_PREFIX}key, {_PREFIX}session"
    # Rows are in time order per key, so the previous row holds the session's last event so far.
    # Equal timestamps never start a session (gap > 0) and the running sum counts peers
    # together (RANGE frame), so ties share a session whatever order they come in.
    return f"""
WITH {_PREFIX}parameters AS (SELECT {_duration_us("session", "gap")} AS {gap}),
{_PREFIX}keyed AS (
    SELECT *, {key} AS {_PREFIX}key FROM ({_rows_sql("session")}) CROSS JOIN {_PREFIX}parameters
),
{_PREFIX}marked AS (
    SELECT *, CASE WHEN {us} - lag({us}) OVER ({by_key_in_time}) < {gap} THEN 0 ELSE 1 END
        AS {_PREFIX}starts
    FROM {_PREFIX}keyed
),
{_PREFIX}numbered AS (
    SELECT *, sum({_PREFIX}starts) OVER ({by_key_in_time}) AS {_PREFIX}session
    FROM {_PREFIX}marked
),
{_PREFIX}placed AS (
    SELECT *, min({us}) OVER ({session}) AS {_PREFIX}start_us,
        max({us}) OVER ({session}) + {gap} AS {_PREFIX}end_us
    FROM {_PREFIX}numbered
)
SELECT {_output_columns()} FROM {_PREFIX}placed
"""


def _rows_sql(function: str) -> str:
    """The relation's rows with a timestamp, plus the timestamp and its epoch microseconds."""
    return f"""
        SELECT {_PREFIX}source.*, ts_col AS {_PREFIX}ts, {_epoch_us(function)} AS {_PREFIX}us
        FROM query_table(t) AS {_PREFIX}source
        WHERE ts_col IS NOT NULL"""


def _epoch_us(function: str) -> str:
    allowed = ", ".join(f"'{name}'" for name in _TIMESTAMP_TYPES)
    return f"""CASE WHEN typeof(ts_col) IN ({allowed}) THEN epoch_us(ts_col)
        ELSE error('{function}: ts_col must be a TIMESTAMP or TIMESTAMPTZ column, got '
            || typeof(ts_col)) END"""


def _output_columns() -> str:
    """The input columns (less our helpers and any older window bounds) and the new bounds.

    The bounds are offsets from the row's own timestamp, so they keep its type (TIMESTAMPTZ
    stays TIMESTAMPTZ) and microsecond-only intervals make the sums exact in any time zone.
    """
    ts, us = f"{_PREFIX}ts", f"{_PREFIX}us"
    kept = (
        f"COLUMNS(lambda c: NOT starts_with(c, '{_PREFIX}')"
        " AND c NOT IN ('window_start', 'window_end'))"
    )
    return f"""{kept},
    {ts} - to_microseconds({us} - {_PREFIX}start_us) AS window_start,
    {ts} + to_microseconds({_PREFIX}end_us - {us}) AS window_end"""


def _floor_div(dividend: str, divisor: str) -> str:
    """Integer floor division for a positive divisor (DuckDB's // truncates toward zero)."""
    a, b = f"({dividend})", f"({divisor})"
    return f"(({a} - (({a} % {b}) + {b}) % {b}) // {b})"


def _duration_us(function: str, argument: str) -> str:
    """The argument as a positive count of microseconds, or a DuckDB error naming it.

    Interval text is accepted as well as INTERVAL values; casting through VARCHAR lets this bind
    whatever the argument's type, so a wrong type reaches our message, not a binder error.
    """
    named = f"{function}: {argument}"
    value = f"TRY_CAST(CAST({argument} AS VARCHAR) AS INTERVAL)"
    months = f"(date_part('year', {value}) * 12 + date_part('month', {value}))"
    shown = f"CAST({argument} AS VARCHAR)"
    return f"""CASE
    WHEN {argument} IS NULL THEN error('{named} must not be NULL')
    WHEN typeof({argument}) NOT IN ('INTERVAL', 'VARCHAR') THEN
        error('{named} must be an INTERVAL, got ' || typeof({argument}) || ' ' || {shown})
    WHEN {value} IS NULL THEN error('{named} is not an interval: ' || {shown})
    WHEN {months} <> 0 THEN error('{named} (' || {shown} || ') is not a fixed duration: months '
        || 'and years vary in length; give days, hours, minutes or seconds')
    WHEN epoch_us({value}) <= 0 THEN error('{named} must be positive, got ' || {shown})
    ELSE epoch_us({value}) END"""
