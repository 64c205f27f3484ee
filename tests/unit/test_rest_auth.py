"""The REST proxy with authentication on: no key is 401 with a Basic challenge, and two orgs'
topics stay apart (each sees, describes and writes only its own; the other's is 40401)."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.rest_world import V2_BINARY, call, rest_port, start_rest_agent
from tests.unit.sasl_world import AgentThread
from tests.unit.test_org_isolation import ACME, GLOBEX, SECRET, OrgAuthenticator

CLUSTER = "/v3/clusters/streamhouse-default"
ORG_CREATE_TIMEOUT_S = 20
ORGS = ("acme", "globex")


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    directory: Path = tmp_path_factory.mktemp("rest-auth")
    running = start_rest_agent(directory / "data", OrgAuthenticator(), "SASL_PLAINTEXT")
    assert running.agent is not None and running._loop is not None
    for org in ORGS:
        created = running.agent.tenancy.create_org(org)
        asyncio.run_coroutine_threadsafe(created, running._loop).result(ORG_CREATE_TIMEOUT_S)
    yield running
    running.stop()


def basic(user: str, secret: str = SECRET) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_no_key_is_401_with_a_challenge(agent: AgentThread) -> None:
    port = rest_port(agent)
    for path in ("/topics", CLUSTER + "/topics", "/v3/clusters"):
        refused = call(port, "GET", path)
        assert refused.status == 401
        assert refused.json["error_code"] == 40101
        assert refused.headers["www-authenticate"].startswith("Basic")
    wrong = call(port, "GET", "/topics", headers=basic(ACME, "wrong-secret"))
    assert wrong.status == 401
    for garbled in ("Basic é==", "Basic " + base64.b64encode(b"\xff:\xfe").decode()):
        assert call(port, "GET", "/topics", headers={"Authorization": garbled}).status == 401


def test_two_orgs_cannot_see_each_others_topics(agent: AgentThread) -> None:
    port = rest_port(agent)
    acme, globex = basic(ACME), basic(GLOBEX)
    mine = f"acme-only-{uuid.uuid4().hex[:6]}"
    same = f"shared-{uuid.uuid4().hex[:6]}"
    for name, who in ((mine, acme), (same, acme), (same, globex)):
        body = {"topic_name": name, "partitions_count": 1}
        created = call(port, "POST", CLUSTER + "/topics", body, headers=who)
        assert created.status == 201, created.raw
    assert {mine, same} <= set(call(port, "GET", "/topics", headers=acme).json)
    globex_sees = call(port, "GET", "/topics", headers=globex).json
    assert same in globex_sees and mine not in globex_sees
    v3_sees = call(port, "GET", CLUSTER + "/topics", headers=globex).json["data"]
    assert mine not in {t["topic_name"] for t in v3_sees}
    hidden = call(port, "GET", f"/topics/{mine}", headers=globex)
    assert (hidden.status, hidden.json["error_code"]) == (404, 40401)
    record = {"records": [{"value": base64.b64encode(b"x").decode()}]}
    written = call(port, "POST", f"/topics/{mine}", record, V2_BINARY, headers=globex)
    assert (written.status, written.json["error_code"]) == (404, 40401)
    ours = call(port, "POST", f"/topics/{same}", record, V2_BINARY, headers=globex)
    assert ours.status == 200, ours.raw
    offsets = call(port, "GET", f"/topics/{same}/partitions/0/offsets", headers=acme).json
    assert offsets["end_offset"] == 0  # globex's record went to globex's topic of that name
