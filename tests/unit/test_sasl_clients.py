"""Real Kafka clients authenticate to an agent's SASL listener (SASL_PLAINTEXT and SASL_SSL):
confluent-kafka, aiokafka and kafka-python with PLAIN and SCRAM-SHA-256/512. The right secret
produces and consumes; a wrong secret or an unknown user gets an authentication error."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from aiokafka.helpers import create_ssl_context
from confluent_kafka import Consumer, KafkaError, Producer
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaTimeoutError, SaslAuthenticationFailedError

from streamhouse.kafka.sasl import (
    MECHANISMS,
    PLAIN,
    SCRAM_SHA_256,
    SCRAM_SHA_512,
    invalid_credentials,
)
from streamhouse.server.kafka_listener import check_kafka_security
from tests.fixtures.tls import self_signed_certificate
from tests.unit.sasl_world import (
    SECRET,
    USER,
    AgentThread,
    InTestAuthenticator,
    agent_settings,
)

PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
CLIENT_TIMEOUT_S = 20
FAILURE_TIMEOUT_S = 15
VALUE = b"authenticated hello"
WRONG = "wrong-secret"
UNKNOWN = "SHKNOBODY"


@pytest.fixture(scope="module", params=PROTOCOLS)
def listener(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AgentThread, str, str]]:
    """(agent, security protocol, CA file or "")."""
    protocol: str = request.param
    directory = tmp_path_factory.mktemp(protocol.lower())
    cert = self_signed_certificate(directory) if protocol == "SASL_SSL" else ("", "")
    settings = agent_settings(directory / "data", protocol, cert)
    agent = AgentThread(settings, InTestAuthenticator({USER: SECRET})).start()
    yield agent, protocol, cert[0]
    agent.stop()


def topic_name() -> str:
    return "sasl-" + uuid.uuid4().hex[:12]


# ------------------------------------------------------------------ confluent-kafka


def confluent_config(
    listener: tuple[AgentThread, str, str], mechanism: str, user: str, secret: str
) -> dict[str, Any]:
    agent, protocol, cafile = listener
    config: dict[str, Any] = {
        "bootstrap.servers": agent.bootstrap,
        "security.protocol": protocol,
        "sasl.mechanisms": mechanism,
        "sasl.username": user,
        "sasl.password": secret,
    }
    if cafile:
        config["ssl.ca.location"] = cafile
    return config


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_kafka_right_secret_produces_and_consumes(
    listener: tuple[AgentThread, str, str], mechanism: str
) -> None:
    config = confluent_config(listener, mechanism, USER, SECRET)
    topic = topic_name()
    producer = Producer(config)
    producer.produce(topic, VALUE)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0
    consumer = Consumer({**config, "group.id": "g-" + topic, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        message = None
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is not None and message.error():
                message = None
        assert message is not None and message.value() == VALUE
    finally:
        consumer.close()


def confluent_fails_to_authenticate(config: dict[str, Any]) -> bool:
    errors: list[KafkaError] = []
    producer = Producer({**config, "error_cb": errors.append})
    deadline = time.monotonic() + FAILURE_TIMEOUT_S
    while time.monotonic() < deadline:
        producer.poll(0.2)
        if any(error.code() == KafkaError._AUTHENTICATION for error in errors):
            return True
    return False


@pytest.mark.parametrize(
    ("mechanism", "user", "secret"),
    [(PLAIN, USER, WRONG), (SCRAM_SHA_256, UNKNOWN, SECRET), (SCRAM_SHA_512, USER, WRONG)],
)
def test_confluent_kafka_wrong_secret_or_unknown_user_is_refused(
    listener: tuple[AgentThread, str, str], mechanism: str, user: str, secret: str
) -> None:
    assert confluent_fails_to_authenticate(confluent_config(listener, mechanism, user, secret))


# ------------------------------------------------------------------ aiokafka


def aiokafka_config(
    listener: tuple[AgentThread, str, str], mechanism: str, user: str, secret: str
) -> dict[str, Any]:
    agent, protocol, cafile = listener
    config: dict[str, Any] = {
        "bootstrap_servers": agent.bootstrap,
        "security_protocol": protocol,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": user,
        "sasl_plain_password": secret,
        "request_timeout_ms": CLIENT_TIMEOUT_S * 1000,
    }
    if cafile:
        config["ssl_context"] = create_ssl_context(cafile=cafile)
    return config


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_aiokafka_right_secret_produces_and_consumes(
    listener: tuple[AgentThread, str, str], mechanism: str
) -> None:
    config = aiokafka_config(listener, mechanism, USER, SECRET)
    topic = topic_name()

    async def main() -> None:
        producer = AIOKafkaProducer(**config)
        await producer.start()
        try:
            await producer.send_and_wait(topic, VALUE)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **config)
        await consumer.start()
        try:
            message = await asyncio.wait_for(consumer.getone(), CLIENT_TIMEOUT_S)
        finally:
            await consumer.stop()
        assert message.value == VALUE

    asyncio.run(main())


@pytest.mark.parametrize(
    ("mechanism", "user", "secret"),
    [(PLAIN, UNKNOWN, SECRET), (SCRAM_SHA_256, USER, WRONG), (SCRAM_SHA_512, UNKNOWN, WRONG)],
)
def test_aiokafka_wrong_secret_or_unknown_user_is_refused(
    listener: tuple[AgentThread, str, str],
    mechanism: str,
    user: str,
    secret: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = aiokafka_config(listener, mechanism, user, secret)

    async def main() -> None:
        producer = AIOKafkaProducer(**config)
        try:  # aiokafka logs the authentication error, then fails to bootstrap
            with pytest.raises((SaslAuthenticationFailed, KafkaConnectionError)):
                await asyncio.wait_for(producer.start(), FAILURE_TIMEOUT_S)
        finally:
            await producer.stop()
        assert "SaslAuthenticationFailed" in caplog.text
        assert invalid_credentials(mechanism) in caplog.text

    asyncio.run(main())


# ------------------------------------------------------------------ kafka-python


def kafka_python_config(
    listener: tuple[AgentThread, str, str], mechanism: str, user: str, secret: str
) -> dict[str, Any]:
    agent, protocol, cafile = listener
    config: dict[str, Any] = {
        "bootstrap_servers": agent.bootstrap,
        "security_protocol": protocol,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": user,
        "sasl_plain_password": secret,
        "request_timeout_ms": CLIENT_TIMEOUT_S * 1000,
    }
    if cafile:
        config["ssl_cafile"] = cafile
    return config


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafka_python_right_secret_produces_and_consumes(
    listener: tuple[AgentThread, str, str], mechanism: str
) -> None:
    config = kafka_python_config(listener, mechanism, USER, SECRET)
    topic = topic_name()
    producer = KafkaProducer(**config)
    try:
        producer.send(topic, VALUE).get(timeout=CLIENT_TIMEOUT_S)
    finally:
        producer.close()
    consumer = KafkaConsumer(
        topic,
        auto_offset_reset="earliest",
        consumer_timeout_ms=CLIENT_TIMEOUT_S * 1000,
        **config,
    )
    try:
        first = next(iter(consumer))
    finally:
        consumer.close()
    assert first.value == VALUE


# kafka-python retries its bootstrap for bootstrap_timeout_ms (30 s unless told) whatever it
# is answered, so one case per protocol (confluent-kafka and aiokafka above cover every
# mechanism against wrong secrets)
KAFKA_PYTHON_BOOTSTRAP_MS = 3_000


@pytest.mark.slow  # part of make test-all, not of the inner loop
@pytest.mark.parametrize(("mechanism", "user", "secret"), [(SCRAM_SHA_256, UNKNOWN, SECRET)])
def test_kafka_python_wrong_secret_or_unknown_user_is_refused(
    listener: tuple[AgentThread, str, str],
    mechanism: str,
    user: str,
    secret: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = kafka_python_config(listener, mechanism, user, secret)
    with pytest.raises((SaslAuthenticationFailedError, KafkaTimeoutError)):
        KafkaProducer(
            **config,
            max_block_ms=FAILURE_TIMEOUT_S * 1000,
            bootstrap_timeout_ms=KAFKA_PYTHON_BOOTSTRAP_MS,
        ).close()
    assert "SaslAuthenticationFailedError" in caplog.text
    assert invalid_credentials(mechanism) in caplog.text


REAUTH_LIFETIME_MS = 1_500


@pytest.mark.slow  # in make test-all: make test stays under 3 minutes
def test_clients_reauthenticate_before_their_session_expires(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KIP-368: librdkafka and kafka-python re-authenticate on the connection they have."""
    caplog.set_level(logging.INFO, logger="streamhouse.kafka.sasl")
    settings = agent_settings(tmp_path / "data", "SASL_PLAINTEXT").with_overrides(
        sasl_session_lifetime_ms=REAUTH_LIFETIME_MS
    )
    agent = AgentThread(settings, InTestAuthenticator({USER: SECRET})).start()
    listener = (agent, "SASL_PLAINTEXT", "")
    try:
        confluent = Producer(confluent_config(listener, SCRAM_SHA_256, USER, SECRET))
        kafka_python = KafkaProducer(**kafka_python_config(listener, SCRAM_SHA_512, USER, SECRET))
        topic = topic_name()
        deadline = time.monotonic() + REAUTH_LIFETIME_MS * 3 / 1000
        while time.monotonic() < deadline:
            confluent.produce(topic, VALUE)
            assert confluent.flush(CLIENT_TIMEOUT_S) == 0
            kafka_python.send(topic, VALUE).get(timeout=CLIENT_TIMEOUT_S)
            time.sleep(0.2)
        kafka_python.close()
    finally:
        agent.stop()
    for mechanism in (SCRAM_SHA_256, SCRAM_SHA_512):
        assert f"re-authenticated as User:{USER} of org acme ({mechanism})" in caplog.text


def test_an_ssl_listener_serves_a_tls_client_without_sasl(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    agent = AgentThread(agent_settings(tmp_path / "data", "SSL", (cert, key)), None).start()
    try:
        config = {
            "bootstrap.servers": agent.bootstrap,
            "security.protocol": "SSL",
            "ssl.ca.location": cert,
        }
        producer = Producer(config)
        producer.produce(topic_name(), VALUE)
        assert producer.flush(CLIENT_TIMEOUT_S) == 0
    finally:
        agent.stop()


def test_garbage_inside_a_tls_connection_closes_it_and_the_agent_serves_on(
    tmp_path: Path,
) -> None:
    cafile, key = self_signed_certificate(tmp_path)
    settings = agent_settings(tmp_path / "data", "SASL_SSL", (cafile, key))
    agent = AgentThread(settings, InTestAuthenticator({USER: SECRET})).start()
    try:
        context = ssl.create_default_context(cafile=cafile)
        raw = socket.create_connection(("127.0.0.1", agent.port), timeout=CLIENT_TIMEOUT_S)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            os.write(tls.fileno(), b"\x17\x03\x03\x00\x10" + b"not a TLS record")  # beside TLS
            assert tls.recv(1) == b""  # closed
        assert agent.agent is not None and not agent.agent.failure.failed
        producer = Producer(confluent_config((agent, "SASL_SSL", cafile), PLAIN, USER, SECRET))
        producer.produce(topic_name(), VALUE)
        assert producer.flush(CLIENT_TIMEOUT_S) == 0
    finally:
        agent.stop()


def test_a_sasl_listener_is_never_served_without_an_authenticator(tmp_path: Path) -> None:
    """open_agent gives a SASL listener the metadata store's keys when the caller gives no
    authenticator (phase 15 drives that); below it, no listener runs without one."""
    settings = agent_settings(tmp_path / "data", "SASL_PLAINTEXT")
    with pytest.raises(ValueError, match="needs an authenticator"):
        check_kafka_security(settings, None)


def test_a_tls_listener_without_a_loadable_certificate_refuses_to_start(tmp_path: Path) -> None:
    missing = (str(tmp_path / "none.pem"), str(tmp_path / "none.key"))
    agent = AgentThread(agent_settings(tmp_path / "data", "SSL", missing), None)
    with pytest.raises(ValueError, match="cannot load the TLS certificate"):
        agent.start()
