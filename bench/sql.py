"""SQL over topics (issue F15): a windowed aggregate over cold objects through the agent's
POST /api/v1/sql, next to DuckDB reading the same records from a local Parquet file (the
ceiling: no fetch, no decoding), and what pushed-down filters skip.

RECORDS JSON values of about VALUE_BYTES bytes (an event time `ts` in epoch milliseconds, a
user, a kind, an integer `x`, a double `y`, padding) go to PARTITIONS partitions, the record
timestamp set to the event time (SPAN_MS of event time in all). The agent is stopped (its
flush writes every record to objects) and started again before each windowed query, so it
reads objects only, with an empty tail and block cache ("cold"; the objects are local files
just written, so the OS page cache may hold them); each query then runs again ("again": the
block cache holds what fits). Rates count the records read and two sizes: the
values' bytes, and the stored batches' bytes (the objects' size).

The ceiling runs the same queries, word for word, with DuckDB (the agent's sql_threads, our
window functions installed) over a view of a Parquet file holding the same columns (meta
columns and the decoded ones), written with pyarrow, after one read to warm the page cache:
what the query costs without fetching, record decoding and value decoding. The agent's
queries go through POST /api/v1/sql (JSON answer), so they include the HTTP door.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb  # only here outside streamhouse/sql/: the ceiling is DuckDB without the agent
import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Producer

from bench.agents import create_topic, figure, print_table, running_agent, scratch_dir
from streamhouse.config import Settings
from streamhouse.sql.windows import install_window_functions
from streamhouse.testing.agent_process import AgentProcess
from streamhouse.testing.network import LOOPBACK

TOPIC = "bench_sql"
RECORDS = 500_000
PARTITIONS = 4
VALUE_BYTES = 100  # about: the JSON document's length
SPAN_MS = 100 * 60_000  # event time the records cover: about 100 one-minute windows
START_MS = 1_700_000_040_000  # on a minute
USERS = 1_000
KINDS = ("click", "view", "buy", "scroll")
PRODUCE_TIMEOUT_S = 120.0
QUERY_TIMEOUT_S = 120.0
LINGER_MS = 20
TAIL_FRACTION = 10  # the time-pushdown query reads the last 1/TAIL_FRACTION of event time
SQL_THREADS = Settings().sql_threads
CEILING_RUNS = 5

WINDOWED = {
    "tumble _timestamp": (
        "SELECT window_start, count(*) AS n, sum(x) AS x FROM "
        "tumble({t}, _timestamp, INTERVAL '1 minute') GROUP BY window_start"
    ),
    "tumble epoch_ms(ts)": (
        "SELECT window_start, count(*) AS n, sum(x) AS x, avg(y) AS y FROM "
        "tumble({t}, epoch_ms(ts), INTERVAL '1 minute') GROUP BY window_start"
    ),
}
PUSHED = {
    "_partition = 0": "SELECT count(*) AS n, sum(x) AS x FROM {t} WHERE _partition = 0",
    "_timestamp >= last tenth": (
        "SELECT time_bucket(INTERVAL '1 minute', _timestamp) AS w, count(*) AS n, sum(x) AS x "
        "FROM {t} WHERE _timestamp >= TIMESTAMP '{since}' GROUP BY w"
    ),
}


def value_of(index: int) -> tuple[int, bytes]:
    """Record `index`'s event time (ms) and JSON value."""
    ts = START_MS + index * SPAN_MS // RECORDS
    document = {
        "ts": ts,
        "user": f"u{index % USERS:04d}",
        "kind": KINDS[index % len(KINDS)],
        "x": index % 100,
        "y": (index % 997) * 0.5,
    }
    text = json.dumps(document, separators=(",", ":"))
    pad = "p" * max(0, VALUE_BYTES - len(text) - len(',"pad":""'))
    return ts, f'{text[:-1]},"pad":"{pad}"}}'.encode()


def records() -> Iterator[tuple[int, int, bytes]]:
    """(partition, event time ms, value) of every record, in the order produced."""
    for index in range(RECORDS):
        ts, value = value_of(index)
        yield index % PARTITIONS, ts, value


def produce(bootstrap: str) -> float:
    """Every record, acks=1; the seconds it took."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": LINGER_MS})
    failed: list[Any] = []

    def delivered(error: Any, _: Any) -> None:
        if error is not None:
            failed.append(error)

    started = time.perf_counter()
    for partition, ts, value in records():
        while True:
            try:
                producer.produce(
                    TOPIC, value, partition=partition, timestamp=ts, on_delivery=delivered
                )
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(PRODUCE_TIMEOUT_S) == 0 and not failed, failed
    return time.perf_counter() - started


def post_sql(agent: AgentProcess, text: str) -> dict[str, Any]:
    connection = http.client.HTTPConnection(LOOPBACK, agent.http_port, timeout=QUERY_TIMEOUT_S)
    try:
        body = json.dumps({"sql": text}).encode()
        connection.request("POST", "/api/v1/sql", body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        document: dict[str, Any] = json.loads(answer.read())
    finally:
        connection.close()
    assert answer.status == 200, document
    return document


def timed_sql(agent: AgentProcess, text: str) -> tuple[float, list[list[Any]]]:
    started = time.perf_counter()
    rows = post_sql(agent, text)["rows"]
    return time.perf_counter() - started, rows


def explained(agent: AgentProcess, text: str) -> dict[str, int]:
    """Objects EXPLAIN says the query reads and skips, the tails it reads, and the bytes of
    the objects read."""
    found: dict[str, int] = {"read": 0, "skip": 0, "tail": 0, "read_bytes": 0}
    document = post_sql(agent, f"EXPLAIN {text}")
    names = [c["name"] for c in document["columns"]]
    for row in document["rows"]:
        listed = dict(zip(names, row, strict=True))
        found[listed["action"]] += 1
        if listed["action"] == "read":
            found["read_bytes"] += listed["bytes"] or 0
    return found


def rates(seconds: float, rows: int, value_bytes: int, stored_bytes: int) -> dict[str, float]:
    return {
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        "value_mb_per_s": round(value_bytes / seconds / 1e6, 1),
        "stored_mb_per_s": round(stored_bytes / seconds / 1e6, 1),
    }


def checked_windows(rows: list[list[Any]]) -> None:
    """Every record counted once, in windows of the expected number."""
    assert sum(row[1] for row in rows) == RECORDS, rows[:3]
    assert len(rows) == SPAN_MS // 60_000, len(rows)


def agent_queries(data_dir: Path, value_bytes: int) -> dict[str, Any]:
    """Each windowed query on a freshly started agent, cold and again; then the pushed-down
    ones with their EXPLAIN."""
    seconds: dict[str, dict[str, float]] = {}
    for name, template in WINDOWED.items():
        with running_agent(data_dir) as agent:  # empty tail and block cache
            seconds[name] = {run: timed_windows(agent, template) for run in ("cold", "again")}
    with running_agent(data_dir) as agent:
        stored = explained(agent, f"SELECT * FROM {TOPIC}")["read_bytes"]
        found: dict[str, Any] = {"stored_bytes": stored}
        for name, template in PUSHED.items():
            text = template.format(t=TOPIC, since=_since())
            took, rows = timed_sql(agent, text)
            found[name] = {
                "seconds": round(took, 3),
                "rows_matched": sum(row[-2] for row in rows),
                "objects": explained(agent, text),
            }
    for name, runs in seconds.items():
        found[name] = {run: rates(s, RECORDS, value_bytes, stored) for run, s in runs.items()}
    return found


def timed_windows(agent: AgentProcess, template: str) -> float:
    took, rows = timed_sql(agent, template.format(t=TOPIC))
    checked_windows(rows)
    return took


def _since() -> str:
    since_ms = START_MS + SPAN_MS - SPAN_MS // TAIL_FRACTION
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(since_ms / 1000))


def parquet_of(path: Path) -> int:
    """The records with the columns the agent's table has, as one Parquet file; value bytes."""
    columns: dict[str, list[Any]] = {
        name: [] for name in ("_partition", "_offset", "_timestamp", "_value")
    }
    decoded: dict[str, list[Any]] = {"ts": [], "user": [], "kind": [], "x": [], "y": [], "pad": []}
    offsets = [0] * PARTITIONS
    value_bytes = 0
    for partition, ts, value in records():
        columns["_partition"].append(partition)
        columns["_offset"].append(offsets[partition])
        offsets[partition] += 1
        columns["_timestamp"].append(ts * 1000)
        columns["_value"].append(value)
        value_bytes += len(value)
        for name, item in json.loads(value).items():
            decoded[name].append(item)
    table = pa.table(
        {
            "_partition": pa.array(columns["_partition"], pa.int32()),
            "_offset": pa.array(columns["_offset"], pa.int64()),
            "_timestamp": pa.array(columns["_timestamp"], pa.timestamp("us")),
            "_key": pa.nulls(RECORDS, pa.binary()),
            "_value": pa.array(columns["_value"], pa.binary()),
            **{name: pa.array(items) for name, items in decoded.items()},
        }
    )
    pq.write_table(table, path)
    return value_bytes


def ceiling(path: Path, value_bytes: int) -> dict[str, Any]:
    """The windowed queries, word for word, by DuckDB over a view of the Parquet file (our
    window functions installed on its connection); the median of CEILING_RUNS runs each."""
    found: dict[str, Any] = {"parquet_bytes": path.stat().st_size}
    connection = duckdb.connect(":memory:", config={"threads": SQL_THREADS})
    try:
        connection.execute(f"CREATE VIEW {TOPIC} AS SELECT * FROM read_parquet('{path}')")
        install_window_functions(connection)
        connection.execute(f"SELECT count(*) FROM {TOPIC}").fetchall()  # the page cache
        for name, template in WINDOWED.items():
            text = template.format(t=TOPIC)
            timings = []
            for _ in range(CEILING_RUNS):
                started = time.perf_counter()
                rows = connection.execute(text).fetchall()
                timings.append(time.perf_counter() - started)
                checked_windows([list(row) for row in rows])
            seconds = statistics.median(timings)
            found[name] = rates(seconds, RECORDS, value_bytes, path.stat().st_size)
    finally:
        connection.close()
    return found


def measure() -> dict[str, Any]:
    with scratch_dir("bench-sql-") as scratch:
        data_dir = scratch / "data"
        with running_agent(data_dir) as agent:
            create_topic(agent.bootstrap, TOPIC, PARTITIONS)
            produce_s = produce(agent.bootstrap)
        parquet = scratch / "records.parquet"
        value_bytes = parquet_of(parquet)
        queried = agent_queries(data_dir, value_bytes)
        duck = ceiling(parquet, value_bytes)
    return {
        "records": RECORDS,
        "partitions": PARTITIONS,
        "value_bytes": value_bytes,
        "produce_s": round(produce_s, 1),
        "agent": queried,
        "duckdb_parquet": duck,
    }


def show(result: dict[str, Any]) -> None:
    agent, duck = result["agent"], result["duckdb_parquet"]
    lines = []
    for name in WINDOWED:
        for run in ("cold", "again"):
            lines.append(_rate_line(f"agent HTTP, {name}, {run}", agent[name][run]))
        lines.append(_rate_line(f"DuckDB Parquet, {name}", duck[name]))
    title = (
        f"SQL over {figure(result['records'])} JSON records ({result['partitions']} partitions, "
        f"{figure(result['value_bytes'] / 1e6)} MB values, "
        f"{figure(agent['stored_bytes'] / 1e6)} MB stored)"
    )
    print_table(title, ["query", "s", "rows/s", "value MB/s", "stored MB/s"], lines)
    skipped = []
    for name in PUSHED:
        objects = agent[name]["objects"]
        skipped.append(
            [
                f"WHERE {name}",
                str(agent[name]["seconds"]),
                figure(agent[name]["rows_matched"]),
                f"{objects['read']} of {objects['read'] + objects['skip']}",
                str(objects["tail"]),
            ]
        )
    columns = ["agent HTTP, pushed down", "s", "rows matched", "objects read", "tails read"]
    print_table("What pushed-down filters skip", columns, skipped)


def _rate_line(name: str, rate: dict[str, float]) -> list[str]:
    return [
        name,
        str(rate["seconds"]),
        figure(rate["rows_per_s"]),
        str(rate["value_mb_per_s"]),
        str(rate["stored_mb_per_s"]),
    ]


def run() -> dict[str, Any]:
    result = measure()
    show(result)
    return result
