"""Requests refused whole, as real clients read them: librdkafka matches the answer to what
it asked item by item, so a refusal names each config resource and each topic asked."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from streamhouse.engine.authentication import Principal
from tests.unit.sasl_world import ORG, AgentThread, InTestAuthenticator, agent_settings

CLIENT_TIMEOUT_S = 20
SECRET = "refusals-secret-0123456"
ADMIN = "SHKACME"  # an org admin: everything in its org, nothing of the cluster
MEMBER = "SHKACMEMEMBER"  # no ACLs: may create nothing


class AdminAndMember(InTestAuthenticator):
    """acme's admin and one member, by PLAIN (InTestAuthenticator makes every user an admin)."""

    async def plain(self, user: str, password: str) -> Principal | None:
        principal = await super().plain(user, password)
        if principal is None or user != MEMBER:
            return principal
        return dataclasses.replace(principal, role="member")


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    settings = agent_settings(tmp_path_factory.mktemp("refusals") / "data", "SASL_PLAINTEXT")
    running = AgentThread(settings, AdminAndMember({ADMIN: SECRET, MEMBER: SECRET})).start()
    assert running.agent is not None and running._loop is not None
    created = running.agent.tenancy.create_org(ORG)  # ACLs are kept per org: it exists
    asyncio.run_coroutine_threadsafe(created, running._loop).result(CLIENT_TIMEOUT_S)
    yield running
    running.stop()


def admin_client(agent: AgentThread, user: str) -> AdminClient:
    return AdminClient(
        {
            "bootstrap.servers": agent.bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "PLAIN",
            "sasl.username": user,
            "sasl.password": SECRET,
        }
    )


def refusal(future: Future[Any]) -> int:
    """The error code `future` (a client's per-item future) fails with."""
    with pytest.raises(KafkaException) as raised:
        future.result(CLIENT_TIMEOUT_S)
    error = raised.value.args[0]
    assert isinstance(error, KafkaError)
    return int(error.code())


def test_an_org_admin_altering_the_agents_config_is_refused_for_that_broker(
    agent: AgentThread,
) -> None:
    admin = admin_client(agent, ADMIN)
    (node_id, *_) = admin.list_topics(timeout=CLIENT_TIMEOUT_S).brokers
    broker = ConfigResource(
        ResourceType.BROKER,
        str(node_id),
        incremental_configs=[
            ConfigEntry("log.retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    (future,) = admin.incremental_alter_configs([broker]).values()
    assert refusal(future) == KafkaError.CLUSTER_AUTHORIZATION_FAILED


def test_a_member_without_acls_is_refused_each_topic_it_creates(agent: AgentThread) -> None:
    admin = admin_client(agent, MEMBER)
    futures = admin.create_topics([NewTopic("first", 1), NewTopic("second", 2)])
    assert sorted(futures) == ["first", "second"]
    for future in futures.values():
        assert refusal(future) == KafkaError.TOPIC_AUTHORIZATION_FAILED
