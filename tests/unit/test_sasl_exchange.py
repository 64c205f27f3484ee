"""The sans-IO SASL exchange (kafka/sasl.py): PLAIN and SCRAM driven by scramp's own client,
and every way a client can get it wrong ending in one `Failed`, never an exception."""

from __future__ import annotations

import pytest
from scramp import ScramClient, ScramMechanism

from streamhouse.kafka.sasl import (
    PLAIN,
    SASL_TOKEN_BYTES_MAX,
    SCRAM_MECHANISMS,
    Authenticated,
    Challenge,
    Failed,
    NeedCredential,
    NeedPasswordCheck,
    SaslExchange,
    invalid_credentials,
)

USER = "SHK0001"
PASSWORD = "s3cret-Password"
FAKE_SALT_KEY = b"agent secret for fake salts"
SERVER_NONCE = "servernonce0123456789"


def exchange(mechanism: str) -> SaslExchange:
    return SaslExchange(mechanism, SERVER_NONCE, FAKE_SALT_KEY)


def stored(mechanism: str, password: str = PASSWORD) -> tuple[bytes, int, bytes, bytes]:
    salt, stored_key, server_key, iterations = ScramMechanism(mechanism).make_auth_info(password)
    return salt, iterations, stored_key, server_key


# ------------------------------------------------------------------ PLAIN


def test_plain_asks_for_the_password_check_and_succeeds_when_accepted() -> None:
    sasl = exchange(PLAIN)
    assert sasl.receive_token(f"\0{USER}\0{PASSWORD}".encode()) == NeedPasswordCheck(USER, PASSWORD)
    assert sasl.password_checked(True) == Authenticated(USER, b"")
    assert sasl.succeeded


def test_plain_authzid_equal_to_the_user_is_accepted() -> None:
    sasl = exchange(PLAIN)
    assert isinstance(sasl.receive_token(f"{USER}\0{USER}\0pw".encode()), NeedPasswordCheck)


def test_plain_refused_password_fails_with_the_invalid_credentials_message() -> None:
    sasl = exchange(PLAIN)
    sasl.receive_token(f"\0{USER}\0wrong".encode())
    assert sasl.password_checked(False) == Failed(invalid_credentials(PLAIN))
    assert sasl.failed


@pytest.mark.parametrize(
    "token",
    [
        b"no separators",
        b"\0user",
        b"\0\0password",
        b"\0user\0",
        b"a\0b\0c\0d",
        b"other\0user\0password",
        b"\0\xff\xfe\0password",
    ],
)
def test_plain_malformed_tokens_fail(token: bytes) -> None:
    event = exchange(PLAIN).receive_token(token)
    assert isinstance(event, Failed)


def test_plain_second_attempt_after_failure_fails_again() -> None:
    sasl = exchange(PLAIN)
    sasl.receive_token(f"\0{USER}\0wrong".encode())
    sasl.password_checked(False)
    assert isinstance(sasl.receive_token(f"\0{USER}\0{PASSWORD}".encode()), Failed)
    assert isinstance(sasl.password_checked(True), Failed)
    assert not sasl.succeeded


def test_inputs_out_of_turn_fail() -> None:
    assert isinstance(exchange(PLAIN).password_checked(True), Failed)
    assert isinstance(exchange(PLAIN).credential_missing(), Failed)
    sasl = exchange(PLAIN)
    sasl.receive_token(f"\0{USER}\0{PASSWORD}".encode())
    assert isinstance(sasl.receive_token(b"again"), Failed)


def test_oversized_token_fails() -> None:
    event = exchange(PLAIN).receive_token(b"\0u\0" + b"p" * SASL_TOKEN_BYTES_MAX)
    assert isinstance(event, Failed) and "SASL_TOKEN_BYTES_MAX" in event.message


def test_unknown_mechanism_is_a_caller_bug() -> None:
    with pytest.raises(ValueError):
        SaslExchange("GSSAPI", SERVER_NONCE, FAKE_SALT_KEY)


# ------------------------------------------------------------------ SCRAM


def run_scram(
    mechanism: str, client_password: str, credential: tuple[bytes, int, bytes, bytes] | None
) -> tuple[SaslExchange, ScramClient, object]:
    """Drive a whole exchange with scramp's client; the last event is returned."""
    sasl = exchange(mechanism)
    client = ScramClient([mechanism], USER, client_password)
    assert sasl.receive_token(client.get_client_first().encode()) == NeedCredential(USER)
    first = sasl.credential_found(*credential) if credential else sasl.credential_missing()
    assert isinstance(first, Challenge)
    client.set_server_first(first.token.decode())
    return sasl, client, sasl.receive_token(client.get_client_final().encode())


@pytest.mark.parametrize("mechanism", SCRAM_MECHANISMS)
def test_scram_full_exchange_with_scramps_client(mechanism: str) -> None:
    sasl, client, last = run_scram(mechanism, PASSWORD, stored(mechanism))
    assert isinstance(last, Authenticated) and last.user == USER
    client.set_server_final(last.token.decode())  # the client checks the server's signature
    assert sasl.succeeded


@pytest.mark.parametrize("mechanism", SCRAM_MECHANISMS)
def test_scram_wrong_password_and_unknown_user_fail_alike(mechanism: str) -> None:
    _, _, wrong = run_scram(mechanism, "not the password", stored(mechanism))
    _, _, unknown = run_scram(mechanism, PASSWORD, None)
    assert wrong == unknown == Failed(invalid_credentials(mechanism))


def test_an_unusable_stored_credential_is_refused_as_invalid_credentials() -> None:
    mechanism = SCRAM_MECHANISMS[0]
    sasl = exchange(mechanism)
    client = ScramClient([mechanism], USER, PASSWORD)
    sasl.receive_token(client.get_client_first().encode())
    salt, _, stored_key, server_key = stored(mechanism)
    event = sasl.credential_found(salt, 1, stored_key, server_key)  # 1 iteration: too few
    assert event == Failed(invalid_credentials(mechanism))


def test_unknown_user_gets_the_same_salt_every_time() -> None:
    def server_first() -> str:
        sasl = exchange(SCRAM_MECHANISMS[0])
        client = ScramClient([SCRAM_MECHANISMS[0]], "nobody", PASSWORD)
        sasl.receive_token(client.get_client_first().encode())
        event = sasl.credential_missing()
        assert isinstance(event, Challenge)
        return event.token.decode().split(",s=")[1]

    assert server_first() == server_first()


@pytest.mark.parametrize("mechanism", SCRAM_MECHANISMS)
def test_scram_tampered_nonce_fails(mechanism: str) -> None:
    sasl = exchange(mechanism)
    client = ScramClient([mechanism], USER, PASSWORD)
    sasl.receive_token(client.get_client_first().encode())
    first = sasl.credential_found(*stored(mechanism))
    assert isinstance(first, Challenge)
    client.set_server_first(first.token.decode())
    final = client.get_client_final().replace(SERVER_NONCE, "X" * len(SERVER_NONCE))
    event = sasl.receive_token(final.encode())
    assert isinstance(event, Failed) and "nonce" in event.message.lower()


@pytest.mark.parametrize(
    "client_first",
    [
        b"p=tls-unique,,n=user,r=abc",
        b"y,,n=user,r=abc",
        b"n,a=user,n=user,r=abc",
        b"n,,n=user,r=abc,tokenauth=true",
        b"n,,r=abc",
        b"n,,n=user",
        b"n,,n=,r=abc",
        b"n,,n=us=er,r=abc",
        b"garbage",
        b"",
        b"\xff\xfe",
    ],
)
def test_scram_malformed_client_first_fails_before_any_lookup(client_first: bytes) -> None:
    assert isinstance(exchange(SCRAM_MECHANISMS[0]).receive_token(client_first), Failed)


def test_scram_extension_is_named_in_the_refusal() -> None:
    event = exchange(SCRAM_MECHANISMS[0]).receive_token(b"n,,n=u,r=abc,tokenauth=true")
    assert isinstance(event, Failed) and "tokenauth" in event.message


@pytest.mark.parametrize("final", [b"", b"c=biws", b"\xff", b"c=biws,r=x,p=!!!"])
def test_scram_malformed_client_final_fails(final: bytes) -> None:
    mechanism = SCRAM_MECHANISMS[1]
    sasl = exchange(mechanism)
    client = ScramClient([mechanism], USER, PASSWORD)
    sasl.receive_token(client.get_client_first().encode())
    sasl.credential_found(*stored(mechanism))
    assert isinstance(sasl.receive_token(final), Failed)


def test_scram_replay_after_failure_fails() -> None:
    mechanism = SCRAM_MECHANISMS[0]
    sasl, _, last = run_scram(mechanism, "wrong", stored(mechanism))
    assert isinstance(last, Failed)
    again = ScramClient([mechanism], USER, PASSWORD)
    assert isinstance(sasl.receive_token(again.get_client_first().encode()), Failed)
    assert isinstance(sasl.credential_found(*stored(mechanism)), Failed)


def test_scram_nothing_is_taken_after_success() -> None:
    mechanism = SCRAM_MECHANISMS[0]
    sasl, _, last = run_scram(mechanism, PASSWORD, stored(mechanism))
    assert isinstance(last, Authenticated)
    assert isinstance(sasl.receive_token(b"n,,n=u,r=abc"), Failed)
