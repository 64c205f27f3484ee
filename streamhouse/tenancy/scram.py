"""SCRAM credentials (RFC 5802, RFC 7677): the stored key and server key a server keeps for a
password, for Kafka's two mechanisms and within Kafka's iteration bounds.

The password is encoded as UTF-8 without SASLprep, as Kafka's ScramFormatter does: a Kafka
client proves the same bytes, and our own secrets are ASCII (for which SASLprep changes
nothing but would refuse control characters).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

HashFactory = Callable[..., Any]

MECHANISMS: dict[str, HashFactory] = {
    "SCRAM-SHA-256": hashlib.sha256,
    "SCRAM-SHA-512": hashlib.sha512,
}
SCRAM_ITERATIONS_DEFAULT = 4096
SCRAM_ITERATIONS_MIN = 4096  # Kafka's ScramMechanism minimum
SCRAM_ITERATIONS_MAX = 16384  # Kafka's AlterUserScramCredentials maximum

_CLIENT_KEY_LABEL = b"Client Key"
_SERVER_KEY_LABEL = b"Server Key"


def derive_scram(
    mechanism: str, password: str, salt: bytes, iterations: int
) -> tuple[bytes, bytes]:
    """(stored_key, server_key) of `password` for `mechanism`, salted and iterated as asked."""
    hash_name = _hash_name(mechanism)
    _check_iterations(mechanism, iterations)
    if not salt:
        raise ValueError("a SCRAM salt must not be empty")
    salted_password = hashlib.pbkdf2_hmac(hash_name, password.encode("utf-8"), salt, iterations)
    return keys_of_salted_password(mechanism, salted_password)


def keys_of_salted_password(mechanism: str, salted_password: bytes) -> tuple[bytes, bytes]:
    """(stored_key, server_key) from a SaltedPassword, which is what Kafka's
    AlterUserScramCredentials carries (the client salts and iterates the password)."""
    hash_name = _hash_name(mechanism)
    client_key = hmac.digest(salted_password, _CLIENT_KEY_LABEL, hash_name)
    stored_key = hashlib.new(hash_name, client_key).digest()
    server_key = hmac.digest(salted_password, _SERVER_KEY_LABEL, hash_name)
    return stored_key, server_key


def check_iterations(mechanism: str, iterations: int) -> None:
    """ValueError, in Kafka's words, when `iterations` is out of Kafka's bounds."""
    _hash_name(mechanism)
    _check_iterations(mechanism, iterations)


def _hash_name(mechanism: str) -> str:
    factory = MECHANISMS.get(mechanism)
    if factory is None:
        known = ", ".join(sorted(MECHANISMS))
        raise ValueError(f"unsupported SCRAM mechanism {mechanism!r} (supported: {known})")
    name: str = factory().name
    return name


def _check_iterations(mechanism: str, iterations: int) -> None:
    # Kafka answers AlterUserScramCredentials with "Too few iterations" / "Too many
    # iterations"; we add the bound so the operator knows what to ask for.
    if iterations < SCRAM_ITERATIONS_MIN:
        raise ValueError(
            f"Too few iterations: {iterations} < {SCRAM_ITERATIONS_MIN},"
            f" the minimum for {mechanism}"
        )
    if iterations > SCRAM_ITERATIONS_MAX:
        raise ValueError(
            f"Too many iterations: {iterations} > {SCRAM_ITERATIONS_MAX},"
            f" the maximum for {mechanism}"
        )
