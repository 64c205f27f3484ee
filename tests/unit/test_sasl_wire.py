"""The SASL door on the wire: what a connection may send before and while it authenticates,
re-authentication (KIP-368), the session lifetime, and a Hypothesis fuzz of garbled SASL
frames after which the agent still serves a good client."""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.schema.metadata.v12.request import MetadataRequest
from scramp import ScramClient

from streamhouse.engine.authentication import Principal
from streamhouse.errors import ErrorCode
from streamhouse.kafka import codec
from streamhouse.kafka.apis import SASL_HANDSHAKE_MIN_VERSION, ApiKey
from streamhouse.kafka.connection import Request
from streamhouse.kafka.sasl import (
    MECHANISMS,
    PLAIN,
    SASL_TOKEN_BYTES_MAX,
    SCRAM_SHA_256,
    SCRAM_SHA_512,
    invalid_credentials,
)
from streamhouse.server import kafka_handlers
from streamhouse.server.kafka_context import PRINCIPAL, Completion, KafkaContext
from streamhouse.server.kafka_listener import UNAUTHENTICATED_FRAME_BYTES_MAX
from tests.fixtures.kafka_wire import (
    api_versions_request,
    decode_response,
    default_request,
    request_frame,
    split_response,
)
from tests.unit.sasl_world import (
    ORG,
    SECRET,
    USER,
    AgentThread,
    InTestAuthenticator,
    agent_settings,
)

OTHER_USER = "SHKTESTKEY2"
OTHER_SECRET = "other-secret-9876543210"
SOCKET_TIMEOUT_S = 10
SESSION_LIFETIME_MS = 300
FUZZ_EXAMPLES = 60


class Closed(Exception):
    """The agent closed the connection."""


class WireClient:
    """One raw Kafka connection: request entities in, decoded responses out."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S)
        self._correlation = 0

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def call(self, entity: Any) -> Any:
        self._correlation += 1
        self.sock.sendall(request_frame(entity, self._correlation))
        return self.response(entity)

    def response(self, entity: Any) -> Any:
        kind: Any = type(entity)
        data = self._read(4)
        data += self._read(struct.unpack(">i", data)[0])
        flexible = kind.__flexible__ and kind.__api_key__ != ApiKey.API_VERSIONS
        _, body, _ = split_response(data, flexible_header=flexible)
        return decode_response(kind.__api_key__, kind.__version__, body)

    def is_closed(self) -> bool:
        """True when the agent closed the connection (nothing more comes)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionError:
            return True

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise Closed
            data += chunk
        return data


def handshake(mechanism: str) -> Any:
    return codec.request_schema(ApiKey.SASL_HANDSHAKE, 1)(mechanism=mechanism)


def authenticate(token: bytes) -> Any:
    return codec.request_schema(ApiKey.SASL_AUTHENTICATE, 2)(auth_bytes=token)


def metadata() -> Any:
    return MetadataRequest(
        topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False
    )


def plain_login(client: WireClient, user: str = USER, secret: str = SECRET) -> Any:
    assert client.call(handshake(PLAIN)).error_code == 0
    return client.call(authenticate(f"\0{user}\0{secret}".encode()))


def scram_login(client: WireClient, mechanism: str, user: str, secret: str) -> Any:
    scram = ScramClient([mechanism], user, secret)
    assert client.call(handshake(mechanism)).error_code == 0
    first = client.call(authenticate(scram.get_client_first().encode()))
    assert first.error_code == 0
    scram.set_server_first(first.auth_bytes.decode())
    final = client.call(authenticate(scram.get_client_final().encode()))
    if final.error_code == 0:
        scram.set_server_final(final.auth_bytes.decode())
    return final


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    settings = agent_settings(tmp_path_factory.mktemp("wire") / "data", "SASL_PLAINTEXT")
    users = {USER: SECRET, OTHER_USER: OTHER_SECRET}
    running = AgentThread(settings, InTestAuthenticator(users)).start()
    yield running
    running.stop()


@pytest.fixture
def client(agent: AgentThread) -> Iterator[WireClient]:
    connection = WireClient(agent.port)
    yield connection
    connection.close()


# ------------------------------------------------------------------ before authentication


def test_api_versions_advertises_the_sasl_apis_from_handshake_v1(client: WireClient) -> None:
    answer = client.call(api_versions_request(3))
    ranges = {api.api_key: (api.min_version, api.max_version) for api in answer.api_keys}
    assert ranges[ApiKey.SASL_HANDSHAKE] == (SASL_HANDSHAKE_MIN_VERSION, 1)
    assert ranges[ApiKey.SASL_AUTHENTICATE] == (0, 2)


def test_a_request_before_the_handshake_closes_the_connection_unanswered(
    client: WireClient,
) -> None:
    with pytest.raises(Closed):
        client.call(metadata())


def test_a_large_frame_before_authentication_closes_the_connection(
    client: WireClient,
) -> None:
    client.send_raw(struct.pack(">i", UNAUTHENTICATED_FRAME_BYTES_MAX + 1))
    assert client.is_closed()


def test_an_unsupported_mechanism_is_answered_with_the_enabled_ones_then_closed(
    client: WireClient,
) -> None:
    answer = client.call(handshake("GSSAPI"))
    assert answer.error_code == ErrorCode.UNSUPPORTED_SASL_MECHANISM
    assert list(answer.mechanisms) == list(MECHANISMS)
    assert client.is_closed()


def test_another_request_during_authentication_gets_illegal_sasl_state_then_closed(
    client: WireClient,
) -> None:
    assert client.call(handshake(PLAIN)).error_code == 0
    list_groups = default_request(ApiKey.LIST_GROUPS, 4)
    assert client.call(list_groups).error_code == ErrorCode.ILLEGAL_SASL_STATE
    assert client.is_closed()


def test_sasl_authenticate_before_the_handshake_closes_the_connection(
    client: WireClient,
) -> None:
    with pytest.raises(Closed):
        client.call(authenticate(b"\0u\0p"))


# ------------------------------------------------------------------ authenticating


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_right_secret_authenticates_and_requests_are_served(
    client: WireClient, mechanism: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamhouse.kafka.sasl")
    if mechanism == PLAIN:
        answer = plain_login(client)
    else:
        answer = scram_login(client, mechanism, USER, SECRET)
    assert (answer.error_code, answer.session_lifetime.total_seconds()) == (0, 0)
    assert client.call(metadata()).brokers
    assert f"authenticated as User:{USER} of org acme ({mechanism})" in caplog.text


@pytest.mark.parametrize("mechanism", [SCRAM_SHA_256, SCRAM_SHA_512])
@pytest.mark.parametrize(("user", "secret"), [(USER, "wrong"), ("SHKNOBODY", SECRET)])
def test_wrong_secret_and_unknown_user_fail_alike_and_close(
    client: WireClient, mechanism: str, user: str, secret: str
) -> None:
    answer = scram_login(client, mechanism, user, secret)
    assert answer.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert answer.error_message == invalid_credentials(mechanism)
    assert client.is_closed()


def test_plain_wrong_secret_fails_and_closes(client: WireClient) -> None:
    answer = plain_login(client, secret="wrong")
    assert answer.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert answer.error_message == invalid_credentials(PLAIN)
    assert client.is_closed()


def test_an_oversized_token_fails_and_closes(client: WireClient) -> None:
    assert client.call(handshake(PLAIN)).error_code == 0
    answer = client.call(authenticate(b"\0u\0" + b"p" * SASL_TOKEN_BYTES_MAX))
    assert answer.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert "SASL_TOKEN_BYTES_MAX" in answer.error_message
    assert client.is_closed()


def test_sasl_authenticate_after_success_gets_illegal_sasl_state(client: WireClient) -> None:
    assert plain_login(client).error_code == 0
    assert client.call(authenticate(b"\0u\0p")).error_code == ErrorCode.ILLEGAL_SASL_STATE
    assert client.is_closed()


def test_handlers_see_the_connections_principal(
    client: WireClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Principal | None] = []
    original = kafka_handlers.HANDLERS[ApiKey.METADATA]

    async def recording(ctx: KafkaContext, request: Request) -> Completion:
        seen.append(PRINCIPAL.get())
        return await original(ctx, request)

    monkeypatch.setitem(kafka_handlers.HANDLERS, ApiKey.METADATA, recording)
    assert scram_login(client, SCRAM_SHA_512, OTHER_USER, OTHER_SECRET).error_code == 0
    assert client.call(metadata()).brokers
    assert seen == [Principal(ORG, OTHER_USER, "admin")]


# ------------------------------------------------------------------ re-authentication


def test_reauthentication_as_the_same_principal_keeps_serving(client: WireClient) -> None:
    assert scram_login(client, SCRAM_SHA_256, USER, SECRET).error_code == 0
    assert scram_login(client, SCRAM_SHA_256, USER, SECRET).error_code == 0
    assert client.call(metadata()).brokers


def test_reauthentication_as_another_principal_fails_and_closes(client: WireClient) -> None:
    assert plain_login(client).error_code == 0
    answer = plain_login(client, OTHER_USER, OTHER_SECRET)
    assert answer.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert client.is_closed()


def test_reauthentication_with_another_mechanism_is_refused(client: WireClient) -> None:
    assert plain_login(client).error_code == 0
    assert client.call(handshake(SCRAM_SHA_512)).error_code == ErrorCode.ILLEGAL_SASL_STATE
    assert client.is_closed()


def test_an_expired_session_is_closed_unless_it_reauthenticates(tmp_path: Path) -> None:
    settings = agent_settings(tmp_path / "data", "SASL_PLAINTEXT").with_overrides(
        sasl_session_lifetime_ms=SESSION_LIFETIME_MS
    )
    running = AgentThread(settings, InTestAuthenticator({USER: SECRET})).start()
    try:
        renewing, lapsing = WireClient(running.port), WireClient(running.port)
        for connection in (renewing, lapsing):
            answer = plain_login(connection)
            lifetime_ms = answer.session_lifetime.total_seconds() * 1000
            assert answer.error_code == 0 and lifetime_ms == SESSION_LIFETIME_MS
        time.sleep(SESSION_LIFETIME_MS * 2 / 1000)
        with pytest.raises(Closed):
            lapsing.call(metadata())
        assert plain_login(renewing).error_code == 0
        assert renewing.call(metadata()).brokers
    finally:
        running.stop()


# ------------------------------------------------------------------ fuzz


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    mechanism=st.sampled_from(MECHANISMS),
    tokens=st.lists(st.binary(max_size=512), min_size=1, max_size=3),
    garbage=st.binary(max_size=64),
)
def test_garbled_sasl_frames_never_break_the_agent(
    agent: AgentThread, mechanism: str, tokens: list[bytes], garbage: bytes
) -> None:
    connection = WireClient(agent.port)
    try:
        assert connection.call(handshake(mechanism)).error_code == 0
        for token in tokens:
            answer = connection.call(authenticate(token))
            if answer.error_code:
                assert answer.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
                assert answer.error_message
                break
        connection.send_raw(garbage)
    except (Closed, ConnectionError):
        pass  # closing is a fine answer to garbage
    finally:
        connection.close()
    good = WireClient(agent.port)
    try:
        assert plain_login(good).error_code == 0
    finally:
        good.close()
    assert agent.agent is not None and not agent.agent.failure.failed


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(frame=st.binary(min_size=1, max_size=256))
def test_random_bytes_on_a_fresh_sasl_connection_never_break_the_agent(
    agent: AgentThread, frame: bytes
) -> None:
    connection = WireClient(agent.port)
    connection.send_raw(struct.pack(">i", len(frame)) + frame)
    connection.close()
    good = WireClient(agent.port)
    try:
        assert scram_login(good, SCRAM_SHA_512, USER, SECRET).error_code == 0
    finally:
        good.close()
    assert agent.agent is not None and not agent.agent.failure.failed
