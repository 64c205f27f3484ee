"""The REST proxy's v3 API against a real agent: cluster, brokers, topics (create, configs,
delete, confirmed by confluent-kafka's AdminClient), partitions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from tests.unit.rest_world import call, rest_port, start_rest_agent
from tests.unit.sasl_world import AgentThread

CLIENT_TIMEOUT_S = 20
CLUSTER = "/v3/clusters/streamhouse-default"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    directory: Path = tmp_path_factory.mktemp("rest-v3")
    running = start_rest_agent(directory / "data")
    yield running
    running.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_cluster_and_brokers(agent: AgentThread) -> None:
    port = rest_port(agent)
    clusters = call(port, "GET", "/v3/clusters")
    assert clusters.status == 200, clusters.raw
    assert [c["cluster_id"] for c in clusters.json["data"]] == ["streamhouse-default"]
    brokers = call(port, "GET", CLUSTER + "/brokers/")  # a trailing slash is the same route
    assert brokers.status == 200
    (broker,) = brokers.json["data"]
    assert broker["port"] == agent.port
    assert call(port, "GET", "/v3/clusters/other").status == 404


def test_topic_create_configs_delete_round_trip(agent: AgentThread) -> None:
    port = rest_port(agent)
    name = unique("v3-topic")
    created = call(
        port,
        "POST",
        CLUSTER + "/topics",
        {
            "topic_name": name,
            "partitions_count": 3,
            "configs": [{"name": "retention.ms", "value": "60000"}],
        },
    )
    assert created.status == 201, created.raw
    assert created.json["partitions_count"] == 3
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    listed = admin.list_topics(timeout=CLIENT_TIMEOUT_S)
    assert len(listed.topics[name].partitions) == 3

    altered = call(
        port,
        "POST",
        CLUSTER + f"/topics/{name}/configs:alter",
        {"data": [{"name": "cleanup.policy", "value": "compact"}]},
    )
    assert altered.status == 204, altered.raw
    assert (
        call(
            port, "PUT", CLUSTER + f"/topics/{name}/configs/retention.ms", {"value": "120000"}
        ).status
        == 204
    )
    resource = ConfigResource("topic", name)
    configs = admin.describe_configs([resource])[resource].result(CLIENT_TIMEOUT_S)
    assert configs["cleanup.policy"].value == "compact"
    assert configs["retention.ms"].value == "120000"
    one = call(port, "GET", CLUSTER + f"/topics/{name}/configs/cleanup.policy")
    assert one.json["value"] == "compact" and one.json["is_default"] is False
    listed_configs = call(port, "GET", CLUSTER + f"/topics/{name}/configs")
    assert "retention.ms" in {c["name"] for c in listed_configs.json["data"]}

    partitions = call(port, "GET", CLUSTER + f"/topics/{name}/partitions")
    assert [p["partition_id"] for p in partitions.json["data"]] == [0, 1, 2]
    assert call(port, "GET", CLUSTER + f"/topics/{name}/partitions/7").status == 404

    assert call(port, "DELETE", CLUSTER + f"/topics/{name}").status == 204
    assert name not in admin.list_topics(timeout=CLIENT_TIMEOUT_S).topics
    missing = call(port, "GET", CLUSTER + f"/topics/{name}")
    assert missing.status == 404 and missing.json["error_code"] == 404


def test_create_refusals_are_4xx(agent: AgentThread) -> None:
    port = rest_port(agent)
    name = unique("dup")
    assert call(port, "POST", CLUSTER + "/topics", {"topic_name": name}).status == 201
    again = call(port, "POST", CLUSTER + "/topics", {"topic_name": name})
    assert again.status == 400, again.raw
    bad = call(port, "POST", CLUSTER + "/topics", b"{not json")
    assert bad.status == 400 and "message" in bad.json
    assert call(port, "POST", CLUSTER + "/topics", {"topic_name": "bad name!"}).status == 400
