"""Two real agent processes sharing one PostgreSQL and one moto S3 bucket form a cluster with no
flag beyond where the metadata and the objects are: Metadata and DescribeCluster from either
list both, each under its own node id; one SIGKILLed (no goodbye) leaves every answer once its
last heartbeat's session timeout has passed, and not before."""

from __future__ import annotations

import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient

from streamhouse.config import Settings
from streamhouse.testing.agent_process import AgentProcess
from tests.e2e.conftest import start_agent, within

HEARTBEAT_S = Settings().agent_heartbeat_interval_ms / 1000
SESSION_S = Settings().agent_session_timeout_ms / 1000
PROCESS_SLACK_S = 3.0  # a Metadata round trip and process scheduling on a busy machine
GONE_WITHIN_S = SESSION_S + HEARTBEAT_S + PROCESS_SLACK_S  # last beat's TTL, then a refresh
GONE_NOT_BEFORE_S = SESSION_S - HEARTBEAT_S  # the last beat came at most an interval before
JOINED_WITHIN_S = HEARTBEAT_S + PROCESS_SLACK_S  # the first agent's next refresh
REQUEST_TIMEOUT_S = 10


def _brokers(agent: AgentProcess) -> dict[int, tuple[str, int]]:
    """node id -> (host, port) as the agent's Metadata answer lists them."""
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    listed = admin.list_topics(timeout=REQUEST_TIMEOUT_S).brokers
    return {node: (broker.host, broker.port) for node, broker in listed.items()}


def _described(agent: AgentProcess) -> dict[int, tuple[str, int]]:
    """node id -> (host, port) as the agent's DescribeCluster answer lists them."""
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    nodes = admin.describe_cluster(request_timeout=REQUEST_TIMEOUT_S).result().nodes
    return {node.id: (node.host, node.port) for node in nodes}


def test_agents_sharing_a_store_and_a_bucket_form_a_cluster(
    tmp_path: Path, moto_s3_with_credentials: str, postgres_database_url: str
) -> None:
    bucket = f"membership-{uuid.uuid4().hex[:12]}"
    shared = (
        "--metadata-url",
        postgres_database_url,
        "--object-store",
        f"s3://{bucket}/cluster",
        "--s3-endpoint",
        moto_s3_with_credentials,
    )
    with start_agent(tmp_path / "a", *shared) as a, start_agent(tmp_path / "b", *shared) as b:
        both = {0: ("127.0.0.1", a.port), 1: ("127.0.0.1", b.port)}
        within(JOINED_WITHIN_S, lambda: _brokers(a) == both, "a lists both agents")
        assert _brokers(b) == both  # b read a's registration when it joined
        assert _described(a) == _described(b) == both

        b.kill()
        gone_after_s = within(
            GONE_WITHIN_S, lambda: _brokers(a) == {0: both[0]}, "the killed agent is gone"
        )
        assert gone_after_s >= GONE_NOT_BEFORE_S, "gone before its session could have ended"
        assert _described(a) == {0: both[0]}
        a.stop_cleanly()
