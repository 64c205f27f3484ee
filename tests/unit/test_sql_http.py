"""POST /api/v1/sql on the agent's HTTP door: JSON answers (timestamps ISO-8601, bytes base64)
and Arrow IPC streams read back with pyarrow; with authentication on, no key is 401 and each
org queries its own topics only (another org's is 404); refusals carry the service's status;
bad bodies (too large, not JSON, not an object, no text) are 4xx, never 5xx."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import uuid
from collections.abc import Iterator

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamhouse.engine.produce import Ack, NewRecord
from streamhouse.server.http_sql import ARROW_STREAM, SQL_BODY_BYTES_MAX
from streamhouse.tenancy.names import scoped
from tests.unit.rest_world import call
from tests.unit.sasl_world import AgentThread
from tests.unit.sql_world import http_port, new_topic, produce, running_sql_agent
from tests.unit.test_org_isolation import ACME, GLOBEX, SECRET, OrgAuthenticator

ORG_CREATE_TIMEOUT_S = 20
FUZZ_EXAMPLES = 40


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    yield from running_sql_agent(tmp_path_factory, "sql-http")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    for running in running_sql_agent(tmp_path_factory, "sql-http-auth", OrgAuthenticator()):
        assert running.agent is not None and running._loop is not None
        for org in ("acme", "globex"):
            created = running.agent.tenancy.create_org(org)
            asyncio.run_coroutine_threadsafe(created, running._loop).result(ORG_CREATE_TIMEOUT_S)
        yield running


def basic(user: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{SECRET}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_json_answer(agent: AgentThread) -> None:
    topic = new_topic(agent)
    produce(agent, topic, [b'{"n": 1}', b'{"n": 2}'])
    answer = call(
        http_port(agent),
        "POST",
        "/api/v1/sql",
        {"sql": f"SELECT _offset, _timestamp, _key, n FROM {topic} ORDER BY _offset"},
    )
    assert answer.status == 200, answer.raw
    body = answer.json
    assert [c["name"] for c in body["columns"]] == ["_offset", "_timestamp", "_key", "n"]
    assert [row[0] for row in body["rows"]] == [0, 1]
    assert [row[3] for row in body["rows"]] == [1, 2]
    assert base64.b64decode(body["rows"][1][2]) == b"k1"
    datetime.datetime.fromisoformat(body["rows"][0][1])


def test_arrow_stream_answer(agent: AgentThread) -> None:
    topic = new_topic(agent, partitions=2)
    produce(agent, topic, [b'{"n": 5}'] * 3, partition=1)
    text = f"SELECT _partition, count(*) AS c, sum(n) AS s FROM {topic} GROUP BY _partition"
    answer = call(
        http_port(agent), "POST", "/api/v1/sql", {"sql": text}, headers={"Accept": ARROW_STREAM}
    )
    assert answer.status == 200 and answer.headers["content-type"].startswith(ARROW_STREAM)
    table = pa.ipc.open_stream(answer.raw).read_all()
    assert table.to_pylist() == [{"_partition": 1, "c": 3, "s": 15}]


def test_refusals_carry_the_service_status(agent: AgentThread) -> None:
    port = http_port(agent)
    for text, status in (
        ("SELECT * FROM nowhere", 404),
        ("COPY x TO 'y'", 400),
        ("SELECT * FROM read_csv('x')", 400),
    ):
        answer = call(port, "POST", "/api/v1/sql", {"sql": text})
        assert answer.status == status and answer.json["error_code"] == status, answer.raw
        assert answer.json["message"]


def test_bad_bodies(agent: AgentThread) -> None:
    port = http_port(agent)
    too_large = call(port, "POST", "/api/v1/sql", b"{" + b" " * SQL_BODY_BYTES_MAX + b"}")
    assert too_large.status == 413
    for body in (b"not json", b"[1]", b'{"sql": 5}', b"{}", b'{"sql": "  "}'):
        answer = call(port, "POST", "/api/v1/sql", body)
        assert answer.status == 400 and answer.json["error_code"] == 400, body


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(lambda t: json.dumps({"sql": t}).encode()),
    )
)
def test_fuzzed_bodies_are_never_5xx(agent: AgentThread, body: bytes) -> None:
    assert call(http_port(agent), "POST", "/api/v1/sql", body).status < 500


def test_authentication_and_orgs(secured: AgentThread) -> None:
    port = http_port(secured)
    core = secured.agent
    assert core is not None
    name = f"orders_{uuid.uuid4().hex[:6]}"

    async def acme_topic() -> None:
        await core.admin.create_topic(scoped("acme", name), 1)
        await core.produce.produce(
            scoped("acme", name), [NewRecord(None, b'{"v": 1}', partition=0)], Ack.LEADER
        )

    secured.call(acme_topic())
    text = f"SELECT v FROM {name}"
    assert call(port, "POST", "/api/v1/sql", {"sql": text}).status == 401
    mine = call(port, "POST", "/api/v1/sql", {"sql": text}, headers=basic(ACME))
    assert mine.status == 200 and mine.json["rows"] == [[1]], mine.raw
    theirs = call(port, "POST", "/api/v1/sql", {"sql": text}, headers=basic(GLOBEX))
    assert theirs.status == 404 and theirs.json["error_code"] == 404
