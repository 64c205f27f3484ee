"""API keys: making a key id and secret from given random bytes, and the slow salted hash that
is all the store keeps of a secret.

The hash string names its algorithm and parameters (`scrypt$N$r$p$<salt>$<hash>`), so a
stored hash keeps verifying after the parameters we choose for new hashes change.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

KEY_ID_PREFIX = "SH"
KEY_ID_RANDOM_BYTES = 10  # 80 bits: exactly 16 base32 characters, no padding
SECRET_RANDOM_BYTES = 32  # 256 bits: 43 urlsafe base64 characters once unpadded
KEY_RANDOM_BYTES = KEY_ID_RANDOM_BYTES + SECRET_RANDOM_BYTES
SALT_BYTES = 16

HASH_ALGORITHM = "scrypt"
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_DKLEN = 32
# A stored hash is trusted data, but a corrupt one must not make a login allocate gigabytes
# or spin for minutes: parameters past these bounds read as a malformed hash. scrypt needs
# 128 * N * r bytes; today's parameters need 16 MiB, the bound leaves room to raise them.
_SCRYPT_MEMORY_MAX = 128 * 1024 * 1024
_SCRYPT_P_MAX = 16
_DKLEN_MAX = 64
_HASH_FIELDS = 6


def new_key(random_bytes: bytes) -> tuple[str, str]:
    """(key_id, secret) made from exactly KEY_RANDOM_BYTES random bytes.

    The key id is public (it names the principal, `User:<key_id>`), so it is short and
    case-insensitive-safe (base32); the secret is URL-safe so it fits config files and URLs.
    """
    if len(random_bytes) != KEY_RANDOM_BYTES:
        raise ValueError(
            f"a new key needs exactly {KEY_RANDOM_BYTES} random bytes, got {len(random_bytes)}"
        )
    id_part = random_bytes[:KEY_ID_RANDOM_BYTES]
    secret_part = random_bytes[KEY_ID_RANDOM_BYTES:]
    key_id = KEY_ID_PREFIX + base64.b32encode(id_part).decode("ascii")
    secret = base64.urlsafe_b64encode(secret_part).decode("ascii").rstrip("=")
    return key_id, secret


def hash_secret(secret: str, salt: bytes) -> str:
    """The secret's scrypt hash with today's parameters, as a self-describing string."""
    if not salt:
        raise ValueError("the salt of a secret's hash must not be empty")
    digest = _scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN)
    fields = (HASH_ALGORITHM, str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest))
    return "$".join(fields)


def secret_matches(secret_hash: str, secret: str) -> bool:
    """Whether `secret` is the one hashed into `secret_hash`, compared in constant time.

    A malformed hash (or a secret that cannot be encoded) never matches and never raises:
    a login must fail closed, not crash the connection's handler.
    """
    try:
        n, r, p, salt, expected = _parse_hash(secret_hash)
        actual = _scrypt(secret, salt, n, r, p, len(expected))
    except (ValueError, UnicodeError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


def _parse_hash(secret_hash: str) -> tuple[int, int, int, bytes, bytes]:
    fields = secret_hash.split("$")
    if len(fields) != _HASH_FIELDS or fields[0] != HASH_ALGORITHM:
        raise ValueError("not an scrypt hash")
    n, r, p = (_decimal(field) for field in fields[1:4])
    if not (n > 1 and n & (n - 1) == 0):
        raise ValueError("scrypt's N must be a power of two")
    if not (r > 0 and 0 < p <= _SCRYPT_P_MAX and _scrypt_memory(n, r) <= _SCRYPT_MEMORY_MAX):
        raise ValueError("scrypt's parameters out of bounds")
    salt, expected = _unb64(fields[4]), _unb64(fields[5])
    if not salt or not 0 < len(expected) <= _DKLEN_MAX:
        raise ValueError("empty salt, or a hash of no or too many bytes")
    return n, r, p, salt, expected


def _decimal(field: str) -> int:
    # int() would also take "+8", " 8" or "8_0"; a hash we wrote has plain digits only.
    if not (field.isascii() and field.isdigit()):
        raise ValueError(f"not a decimal number: {field!r}")
    return int(field)


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # hashlib's default ceiling (32 MiB) would refuse the larger parameters a future hash
    # may use, so the ceiling follows the parameters (with slack for OpenSSL's own count).
    maxmem = 2 * _scrypt_memory(n, r) + 1024 * 1024
    return hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem
    )


def _scrypt_memory(n: int, r: int) -> int:
    return 128 * n * r


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except binascii.Error as error:
        raise ValueError("bad base64") from error
