"""The Kafka listener's security settings: checked together at start, and the SASL
mechanisms config knows are the ones the exchange speaks."""

from __future__ import annotations

import pytest

from streamhouse.config import SASL_MECHANISMS_KNOWN, Settings
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.sasl import MECHANISMS
from streamhouse.kafka.sasl_gate import AuthState, Verdict, verdict


def test_defaults_are_the_open_plaintext_listener() -> None:
    settings = Settings()
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert not settings.kafka_sasl and not settings.kafka_tls
    assert settings.sasl_mechanism_list == MECHANISMS


def test_config_knows_the_mechanisms_the_exchange_speaks() -> None:
    assert SASL_MECHANISMS_KNOWN == MECHANISMS


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"kafka_security_protocol": "SASL_TLS"}, "kafka_security_protocol"),
        ({"kafka_security_protocol": "SSL"}, "ssl_certfile"),
        ({"kafka_security_protocol": "SASL_SSL", "ssl_certfile": "c.pem"}, "ssl_keyfile"),
        ({"sasl_mechanisms": "PLAIN,GSSAPI"}, "sasl_mechanisms"),
        ({"sasl_mechanisms": " , "}, "sasl_mechanisms"),
        ({"sasl_session_lifetime_ms": -1}, "sasl_session_lifetime_ms"),
    ],
)
def test_broken_security_settings_are_refused_at_start(
    changes: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        Settings(**changes)  # type: ignore[arg-type]


def test_sasl_ssl_with_certificate_and_mechanism_subset() -> None:
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        ssl_certfile="c.pem",
        ssl_keyfile="k.pem",
        sasl_mechanisms="SCRAM-SHA-512, PLAIN",
    )
    assert settings.kafka_sasl and settings.kafka_tls
    assert settings.sasl_mechanism_list == ("SCRAM-SHA-512", "PLAIN")


@pytest.mark.parametrize(
    ("state", "api_key", "expired", "expected"),
    [
        (AuthState.HANDSHAKE, ApiKey.API_VERSIONS, False, Verdict.SERVE),
        (AuthState.HANDSHAKE, ApiKey.SASL_HANDSHAKE, False, Verdict.SASL),
        (AuthState.HANDSHAKE, ApiKey.SASL_AUTHENTICATE, False, Verdict.CLOSE),
        (AuthState.HANDSHAKE, ApiKey.PRODUCE, False, Verdict.CLOSE),
        (AuthState.AUTHENTICATING, ApiKey.SASL_AUTHENTICATE, False, Verdict.SASL),
        (AuthState.AUTHENTICATING, ApiKey.API_VERSIONS, False, Verdict.REFUSE),
        (AuthState.AUTHENTICATED, ApiKey.FETCH, False, Verdict.SERVE),
        (AuthState.AUTHENTICATED, ApiKey.FETCH, True, Verdict.CLOSE),
        (AuthState.AUTHENTICATED, ApiKey.SASL_HANDSHAKE, True, Verdict.SASL),
        (AuthState.AUTHENTICATED, ApiKey.SASL_AUTHENTICATE, False, Verdict.REFUSE),
        (AuthState.REAUTHENTICATING, ApiKey.SASL_AUTHENTICATE, False, Verdict.SASL),
        (AuthState.REAUTHENTICATING, ApiKey.METADATA, False, Verdict.REFUSE),
    ],
)
def test_the_gate_follows_kafkas_rules(
    state: AuthState, api_key: ApiKey, expired: bool, expected: Verdict
) -> None:
    assert verdict(state, api_key, expired) is expected
