"""streamctl's raw Kafka client (io/kafka_client.py) authenticates to a SASL_PLAINTEXT listener
by PLAIN and SCRAM-SHA-256/512, then calls APIs; a wrong secret, a mechanism the agent does
not take and credentials for a listener that takes none are one KafkaCallFailed each, saying
why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streamhouse.io.kafka_client import (
    AuthenticationFailed,
    KafkaClient,
    SaslCredentials,
    SaslUnavailable,
)
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.sasl import MECHANISMS, SCRAM_SHA_512
from tests.unit.sasl_world import SECRET, USER, AgentThread, InTestAuthenticator, agent_settings

CALL_TIMEOUT_S = 10
EVERY_TOPIC = {"topics": None, "allow_auto_topic_creation": False}


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    settings = agent_settings(tmp_path_factory.mktemp("client") / "data", "SASL_PLAINTEXT")
    running = AgentThread(settings, InTestAuthenticator({USER: SECRET})).start()
    yield running
    running.stop()


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_the_client_authenticates_then_asks_for_metadata(
    agent: AgentThread, mechanism: str
) -> None:
    credentials = SaslCredentials(mechanism, USER, SECRET)
    with KafkaClient("127.0.0.1", agent.port, CALL_TIMEOUT_S, credentials) as client:
        answer = client.call(ApiKey.METADATA, EVERY_TOPIC)
    assert [broker.port for broker in answer.brokers] == [agent.port]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_a_wrong_secret_is_refused_with_the_reason(agent: AgentThread, mechanism: str) -> None:
    credentials = SaslCredentials(mechanism, USER, SECRET + "x")
    with pytest.raises(AuthenticationFailed, match="SASL_AUTHENTICATION_FAILED"):
        KafkaClient("127.0.0.1", agent.port, CALL_TIMEOUT_S, credentials)


def test_a_mechanism_the_agent_does_not_take_is_named(agent: AgentThread) -> None:
    credentials = SaslCredentials("GSSAPI", USER, SECRET)
    with pytest.raises(SaslUnavailable, match=f"GSSAPI.*offers: .*{SCRAM_SHA_512}"):
        KafkaClient("127.0.0.1", agent.port, CALL_TIMEOUT_S, credentials)


def test_the_client_tells_whether_the_listener_authenticates(
    agent: AgentThread, tmp_path: Path
) -> None:
    with KafkaClient("127.0.0.1", agent.port, CALL_TIMEOUT_S) as client:
        assert client.serves(ApiKey.SASL_HANDSHAKE)
    plain = AgentThread(agent_settings(tmp_path / "data", "PLAINTEXT"), None).start()
    try:
        with KafkaClient("127.0.0.1", plain.port, CALL_TIMEOUT_S) as client:
            assert not client.serves(ApiKey.SASL_HANDSHAKE)
        credentials = SaslCredentials(SCRAM_SHA_512, USER, SECRET)
        with pytest.raises(SaslUnavailable, match="takes no SASL"):
            KafkaClient("127.0.0.1", plain.port, CALL_TIMEOUT_S, credentials)
    finally:
        plain.stop()
