"""SCRAM credentials: RFC 7677's SCRAM-SHA-256 exchange verifies against our stored and server
keys, both mechanisms agree with scramp, and Kafka's iteration bounds hold."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
import scramp
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.tenancy.scram import (
    MECHANISMS,
    SCRAM_ITERATIONS_DEFAULT,
    SCRAM_ITERATIONS_MAX,
    SCRAM_ITERATIONS_MIN,
    derive_scram,
)
from tests.property_budget import examples

# RFC 7677 section 3: user "user", password "pencil".
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST_BARE = "n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL_WITHOUT_PROOF = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_PROOF = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_SIGNATURE = base64.b64decode("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")

# Pinned from scramp 1.4.5 (ScramMechanism(m).make_auth_info("pencil-secret",
# iteration_count=4096, salt=b"0123456789abcdef")), so the check runs without scramp too.
PINNED_SALT = b"0123456789abcdef"
PINNED = {
    "SCRAM-SHA-256": (
        "39a12087cbbdbc7ce6fd7c31c16cd1af616f267bbf8d48e7b787ec247e7f075b",
        "b51f67dada44523c73ddea3a0d573dd6f8fdd7fea481b5bcca6db6046cdd7d92",
    ),
    "SCRAM-SHA-512": (
        "80223a6f1e424774071e3d101b8161da69a2fbec3a44f9776cf504aab5398e6f"
        "7d05e768da92cceeda26f01f5208b8bae16e20c64c94f2151d17239f1518fad3",
        "7856ded7c6029d3708f9ad2afc8fda4a313ba54a259e23cd13f4ebe11f740738"
        "b7e4c99d9a3b8bd40ec6afa3f9bca3d9573e3bd400fb30d547f471512b9a825c",
    ),
}


def test_the_rfc_7677_exchange_verifies_against_our_keys() -> None:
    stored_key, server_key = derive_scram("SCRAM-SHA-256", "pencil", RFC_SALT, 4096)
    auth_message = ",".join(
        [RFC_CLIENT_FIRST_BARE, RFC_SERVER_FIRST, RFC_CLIENT_FINAL_WITHOUT_PROOF]
    ).encode()
    # The server's check (RFC 5802 section 3): recover ClientKey from the proof, hash it.
    client_signature = hmac.digest(stored_key, auth_message, "sha256")
    client_key = bytes(a ^ b for a, b in zip(RFC_PROOF, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key
    assert hmac.digest(server_key, auth_message, "sha256") == RFC_SERVER_SIGNATURE


@pytest.mark.parametrize("mechanism", sorted(PINNED))
def test_keys_match_scramps_pinned_values(mechanism: str) -> None:
    stored_key, server_key = derive_scram(mechanism, "pencil-secret", PINNED_SALT, 4096)
    assert (stored_key.hex(), server_key.hex()) == PINNED[mechanism]


@pytest.mark.parametrize("mechanism", sorted(MECHANISMS))
@given(
    password=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30),
    salt=st.binary(min_size=16, max_size=32),  # scramp 1.5 refuses salts under 12 bytes
)
@settings(max_examples=examples(12), deadline=None)
def test_keys_agree_with_scramp(mechanism: str, password: str, salt: bytes) -> None:
    # Printable ASCII: scramp applies SASLprep, Kafka (and we) do not; on these they agree.
    _, stored_key, server_key, _ = scramp.ScramMechanism(mechanism).make_auth_info(
        password, iteration_count=SCRAM_ITERATIONS_MIN, salt=salt
    )
    assert derive_scram(mechanism, password, salt, SCRAM_ITERATIONS_MIN) == (stored_key, server_key)


def test_the_key_sizes_follow_the_hash() -> None:
    for mechanism, size in (("SCRAM-SHA-256", 32), ("SCRAM-SHA-512", 64)):
        stored_key, server_key = derive_scram(mechanism, "p", b"salt", SCRAM_ITERATIONS_DEFAULT)
        assert (len(stored_key), len(server_key)) == (size, size)


def test_kafkas_bounds() -> None:
    assert (SCRAM_ITERATIONS_DEFAULT, SCRAM_ITERATIONS_MIN, SCRAM_ITERATIONS_MAX) == (
        4096,
        4096,
        16384,
    )
    derive_scram("SCRAM-SHA-256", "p", b"salt", SCRAM_ITERATIONS_MAX)


@pytest.mark.parametrize(
    ("iterations", "message"),
    [(4095, "Too few iterations: 4095 < 4096"), (16385, "Too many iterations: 16385 > 16384")],
)
def test_iterations_out_of_bounds_are_refused(iterations: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        derive_scram("SCRAM-SHA-256", "p", b"salt", iterations)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "PLAIN", "scram-sha-256", ""])
def test_unknown_mechanisms_are_refused(mechanism: str) -> None:
    with pytest.raises(ValueError, match="unsupported SCRAM mechanism"):
        derive_scram(mechanism, "p", b"salt", SCRAM_ITERATIONS_DEFAULT)


def test_an_empty_salt_is_refused() -> None:
    with pytest.raises(ValueError, match="salt"):
        derive_scram("SCRAM-SHA-512", "p", b"", SCRAM_ITERATIONS_DEFAULT)


def test_the_password_is_utf8_without_saslprep() -> None:
    # Kafka's ScramFormatter hashes the UTF-8 bytes as given: "I\u00adX" (a soft hyphen,
    # which SASLprep would drop) differs from "IX".
    with_soft_hyphen = derive_scram("SCRAM-SHA-256", "I\u00adX", b"salt", 4096)
    assert with_soft_hyphen != derive_scram("SCRAM-SHA-256", "IX", b"salt", 4096)
    salted = hashlib.pbkdf2_hmac("sha256", "I\u00adX".encode(), b"salt", 4096)
    assert with_soft_hyphen[1] == hmac.digest(salted, b"Server Key", "sha256")
