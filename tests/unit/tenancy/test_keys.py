"""API keys: ids and secrets from given random bytes; the scrypt hash keeps verifying and
never lets a wrong secret in, and a malformed hash fails closed."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.tenancy.keys import (
    KEY_RANDOM_BYTES,
    SALT_BYTES,
    hash_secret,
    new_key,
    secret_matches,
)
from tests.property_budget import examples

SALT = bytes(range(SALT_BYTES))


def test_a_key_id_is_sh_and_sixteen_base32_characters_of_the_first_ten_bytes() -> None:
    random_bytes = bytes(range(KEY_RANDOM_BYTES))
    key_id, secret = new_key(random_bytes)
    assert key_id == "SH" + base64.b32encode(random_bytes[:10]).decode()
    assert re.fullmatch(r"SH[A-Z2-7]{16}", key_id)
    assert len(secret) == 43
    assert base64.urlsafe_b64decode(secret + "=") == random_bytes[10:]


def test_key_random_bytes_is_forty_two() -> None:
    assert KEY_RANDOM_BYTES == 42


@pytest.mark.parametrize("size", [0, 41, 43])
def test_a_key_refuses_the_wrong_number_of_random_bytes(size: int) -> None:
    with pytest.raises(ValueError, match="exactly 42 random bytes"):
        new_key(bytes(size))


@given(st.binary(min_size=KEY_RANDOM_BYTES, max_size=KEY_RANDOM_BYTES))
@settings(max_examples=examples(200))
def test_new_keys_are_url_safe_and_shaped(random_bytes: bytes) -> None:
    key_id, secret = new_key(random_bytes)
    assert re.fullmatch(r"SH[A-Z2-7]{16}", key_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)


def test_the_hash_names_its_parameters() -> None:
    hashed = hash_secret("s3cret", SALT)
    algorithm, n, r, p, salt, digest = hashed.split("$")
    assert (algorithm, n, r, p) == ("scrypt", "16384", "8", "1")
    assert base64.b64decode(salt) == SALT
    assert len(base64.b64decode(digest)) == 32


def test_the_right_secret_matches_and_a_wrong_one_does_not() -> None:
    hashed = hash_secret("s3cret", SALT)
    assert secret_matches(hashed, "s3cret")
    assert not secret_matches(hashed, "s3creT")
    assert not secret_matches(hashed, "")


def test_a_salt_changes_the_hash_and_an_empty_salt_is_refused() -> None:
    assert hash_secret("s3cret", SALT) != hash_secret("s3cret", bytes(SALT_BYTES))
    with pytest.raises(ValueError, match="salt"):
        hash_secret("s3cret", b"")


def test_parameters_are_read_back_from_the_hash() -> None:
    # A hash made with other (cheaper) parameters still verifies: they are in the string.
    digest = hashlib.scrypt(b"old", salt=SALT, n=2**10, r=4, p=2, dklen=24)
    old = "$".join(
        [
            "scrypt",
            "1024",
            "4",
            "2",
            base64.b64encode(SALT).decode(),
            base64.b64encode(digest).decode(),
        ]
    )
    assert secret_matches(old, "old")
    assert not secret_matches(old, "new")


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "plain",
        "bcrypt$16384$8$1$AAAA$AAAA",
        "scrypt$16384$8$1$AAAA",
        "scrypt$16384$8$1$AAAA$AAAA$extra",
        "scrypt$1000$8$1$AAAA$AAAA",  # N not a power of two
        "scrypt$1$8$1$AAAA$AAAA",
        "scrypt$2147483648$8$1$AAAA$AAAA",  # would allocate terabytes
        "scrypt$1048576$32$1$AAAA$AAAA",  # 4 GiB
        "scrypt$16384$-8$1$AAAA$AAAA",
        "scrypt$16384$8$1$AAAA$" + "A" * 88,  # a 66-byte hash
        "scrypt$16384$0$1$AAAA$AAAA",
        "scrypt$16384$8$99$AAAA$AAAA",
        "scrypt$+16384$8$1$AAAA$AAAA",
        "scrypt$16384$8$1$not base64!$AAAA",
        "scrypt$16384$8$1$$AAAA",
        "scrypt$16384$8$1$AAAA$",
        "scrypt$١٦٣٨٤$8$1$AAAA$AAAA",  # non-ASCII digits
    ],
)
def test_a_malformed_hash_never_matches_and_never_raises(malformed: str) -> None:
    assert not secret_matches(malformed, "anything")


def test_a_secret_that_cannot_be_encoded_never_matches() -> None:
    assert not secret_matches(hash_secret("s3cret", SALT), "\udcff")


@given(
    secret=st.text(max_size=40),
    other=st.text(max_size=40),
    salt=st.binary(min_size=1, max_size=SALT_BYTES),
)
@settings(max_examples=examples(12), deadline=None)  # scrypt is slow by design
def test_hash_round_trip_and_a_wrong_secret_never_matches(
    secret: str, other: str, salt: bytes
) -> None:
    # Hypothesis' text leaves out lone surrogates, so every drawn secret encodes as UTF-8.
    hashed = hash_secret(secret, salt)
    assert secret_matches(hashed, secret)
    if other != secret:
        assert not secret_matches(hashed, other)
