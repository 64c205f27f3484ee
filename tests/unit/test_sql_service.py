"""SQL over topics against a real agent: a SELECT over records half in objects and half in the
unflushed tail answers what a Kafka consumer reads; pushed-down filters read less and answer
the same; EXPLAIN lists the objects read and skipped and the tail; every refusal has its
status (404 unknown or another org's topic, 403 without READ, 400 forbidden statements and
functions, 413 for each named bound, 429 too many queries, 504 past the time)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from streamhouse.engine.acls import Grant
from streamhouse.sql.service import SqlError, SqlService
from tests.unit.sasl_world import AgentThread
from tests.unit.sql_world import consumed, flush, new_topic, produce, query, running_sql_agent


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    yield from running_sql_agent(tmp_path_factory, "sql-service")


@pytest.fixture(scope="module")
def half_flushed(agent: AgentThread) -> str:
    """A topic of 2 partitions: 3 objects' worth flushed per partition, then a tail."""
    topic = new_topic(agent, partitions=2)
    for round_ in range(3):
        for partition in (0, 1):
            values = [
                json.dumps({"n": round_ * 10 + i, "p": partition}).encode() for i in range(10)
            ]
            produce(agent, topic, values, partition)
        flush(agent)
    for partition in (0, 1):
        produce(agent, topic, [json.dumps({"n": 100 + i}).encode() for i in range(5)], partition)
    return topic


def refusal(
    agent: AgentThread, text: str, service: SqlService | None = None, **how: object
) -> SqlError:
    assert agent.agent is not None
    with pytest.raises(SqlError) as refused:
        agent.call((service or agent.agent.sql).query(text, **how))  # type: ignore[arg-type]
    return refused.value


def test_select_sees_objects_and_tail_as_a_consumer_does(
    agent: AgentThread, half_flushed: str
) -> None:
    explained = query(agent, f"EXPLAIN SELECT * FROM {half_flushed}").table.to_pylist()
    assert {row["action"] for row in explained} == {"read", "tail"}
    assert [r["partition"] for r in explained if r["action"] == "tail"] == [0, 1]
    found = query(agent, f"SELECT _partition, _offset, _value, n FROM {half_flushed}").table
    rows = {(r["_partition"], r["_offset"], r["_value"]) for r in found.to_pylist()}
    assert rows == consumed(agent, half_flushed, 2)
    assert len(rows) == 70
    assert sorted(found.column("n").to_pylist()).count(100) == 2  # from the tail of each


def test_pushdown_reads_less_and_answers_the_same(agent: AgentThread, half_flushed: str) -> None:
    everything = query(
        agent,
        f"SELECT * FROM (SELECT * FROM {half_flushed}) WHERE _partition = 1 AND _offset >= 25",
    )
    pushed = query(agent, f"SELECT * FROM {half_flushed} WHERE _partition = 1 AND _offset >= 25")
    assert pushed.table.sort_by("_offset").equals(everything.table.sort_by("_offset"))
    assert pushed.table.num_rows == 10
    assert pushed.stats.rows_read == 10 < everything.stats.rows_read == 70
    assert pushed.stats.bytes_read < everything.stats.bytes_read
    assert pushed.stats.partitions_read == 1
    listing = query(
        agent, f"EXPLAIN SELECT * FROM {half_flushed} WHERE _partition = 1 AND _offset >= 25"
    )
    actions = [(r["partition"], r["action"], r["first_offset"]) for r in listing.table.to_pylist()]
    assert (0, "skip", 0) in actions and (1, "skip", 0) in actions and (1, "skip", 10) in actions
    assert (1, "read", 20) in actions and (1, "tail", 30) in actions


def test_time_pushdown_starts_at_the_first_record_at_or_after(agent: AgentThread) -> None:
    topic = new_topic(agent)
    produce(agent, topic, [b'{"a": 1}'] * 4)
    flush(agent)
    stamps = query(agent, f"SELECT _offset, _timestamp FROM {topic} ORDER BY _offset").table
    produce(agent, topic, [b'{"a": 2}'] * 3)
    later = query(agent, f"SELECT max(_timestamp) AS t FROM {topic}").table.column("t")[0].as_py()
    start = later.isoformat()
    text = f"SELECT _offset FROM {topic} WHERE _timestamp >= TIMESTAMP '{start}'"
    pushed = query(agent, text)
    plain = query(
        agent,
        f"SELECT _offset FROM (SELECT * FROM {topic}) WHERE _timestamp >= TIMESTAMP '{start}'",
    )
    assert sorted(pushed.table.column("_offset").to_pylist()) == sorted(
        plain.table.column("_offset").to_pylist()
    )
    assert plain.stats.rows_read == 7 and stamps.num_rows == 4
    if max(stamps.column("_timestamp").to_pylist()) < later:  # the flushed ones are skipped
        assert pushed.stats.rows_read < plain.stats.rows_read


def test_unknown_and_other_orgs_topics_are_404(agent: AgentThread, half_flushed: str) -> None:
    assert refusal(agent, "SELECT * FROM no_such_topic").http_status == 404
    assert refusal(agent, f"SELECT * FROM {half_flushed}", org="acme").http_status == 404
    assert refusal(agent, 'SELECT * FROM "acme:orders"').http_status == 404


def test_no_read_is_403(agent: AgentThread, half_flushed: str) -> None:
    refused = refusal(agent, f"SELECT * FROM {half_flushed}", grant=Grant(principal="User:x"))
    assert refused.http_status == 403 and half_flushed in refused.message


@pytest.mark.parametrize(
    "text",
    [
        "COPY t TO 'x.csv'",
        "ATTACH 'x.db'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "PRAGMA version",
        "SET threads = 8",
        "CREATE TABLE t AS SELECT 1",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_parquet('s3://bucket/x')",
        "SELECT read_text('/etc/hostname')",
        "SELECT * FROM glob('/*')",
        "SELECT * FROM query('SELECT 1')",
        "SELECT 1; SELECT 2",
        "SELEC 1",
        "",
        "CREATE MATERIALIZED VIEW v AS SELECT 1",
    ],
)
def test_forbidden_statements_are_400(agent: AgentThread, text: str) -> None:
    assert refusal(agent, text).http_status == 400


def test_each_bound_names_its_limit(agent: AgentThread, half_flushed: str) -> None:
    assert agent.agent is not None
    core = agent.agent

    def service(**bounds: int) -> SqlService:
        settings = core.settings.with_overrides(**bounds)
        return SqlService(settings, core.admin, core.fetch, core.schema_registry, core.metadata)

    rows = refusal(agent, f"SELECT * FROM {half_flushed}", service(sql_scan_rows_max=20))
    assert rows.http_status == 413 and "sql_scan_rows_max=20" in rows.message
    assert "_timestamp >=" in rows.message
    scanned = refusal(agent, f"SELECT * FROM {half_flushed}", service(sql_scan_bytes_max=100))
    assert scanned.http_status == 413 and "sql_scan_bytes_max=100" in scanned.message
    result = refusal(agent, "SELECT * FROM range(50)", service(sql_result_rows_max=10))
    assert result.http_status == 413 and "sql_result_rows_max=10" in result.message
    slow = "SELECT sum(a.range * b.range) FROM range(200000) a, range(200000) b"
    late = refusal(agent, slow, service(sql_query_timeout_ms=200))
    assert late.http_status == 504 and "sql_query_timeout_ms=200" in late.message
    # the narrowed scan fits where the whole topic did not
    narrowed = service(sql_scan_rows_max=20).query(
        f"SELECT * FROM {half_flushed} WHERE _partition = 0 AND _offset >= 20"
    )
    assert agent.call(narrowed).table.num_rows == 15


def test_bad_sql_is_400_never_500(agent: AgentThread, half_flushed: str) -> None:
    for text in (
        f"SELECT no_column FROM {half_flushed}",
        "SELECT 1 +",
        "SELECT * FROM tumble(1, 2, 3)",
    ):
        assert refusal(agent, text).http_status == 400


def test_every_window_function_reads_a_topic(agent: AgentThread, half_flushed: str) -> None:
    """tumble, hop and session (both arities) are found as topic readers, session included
    (sqlglot's SESSION keyword): each row of the 70 lands in its windows."""
    counts = {
        f"tumble({half_flushed}, _timestamp, INTERVAL '1 day')": 70,
        f"hop({half_flushed}, _timestamp, INTERVAL '12 hours', INTERVAL '1 day')": 140,
        f"session({half_flushed}, _timestamp, INTERVAL '1 day')": 70,
        f"session({half_flushed}, _timestamp, INTERVAL '1 day', _partition)": 70,
    }
    for source, rows in counts.items():
        found = query(agent, f"SELECT count(*) AS n, min(window_start) AS s FROM {source}")
        assert found.table.column("n").to_pylist() == [rows], source


def test_pushdown_passes_through_tumble_and_hop_not_session(
    agent: AgentThread, half_flushed: str
) -> None:
    where = "WHERE _partition = 1 AND _offset >= 25"
    for window, pushes in (
        ("tumble({}, _timestamp, INTERVAL '1 minute')", True),
        ("hop({}, _timestamp, INTERVAL '1 minute', INTERVAL '2 minutes')", True),
        ("session({}, _timestamp, INTERVAL '1 minute')", False),
    ):
        text = "SELECT _offset, window_start, window_end FROM {} " + where
        pushed = query(agent, text.format(window.format(half_flushed)))
        cte = f"WITH whole AS (SELECT * FROM {half_flushed}) "
        whole = query(agent, cte + text.format(window.format("whole")))
        order = [("_offset", "ascending"), ("window_start", "ascending")]
        assert pushed.table.sort_by(order).equals(whole.table.sort_by(order)), window
        assert pushed.stats.rows_read == (10 if pushes else 70), window
