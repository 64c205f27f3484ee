"""Identifiers: ULIDs and object keys, built from a time and random bytes the caller supplies."""

from __future__ import annotations

import datetime

CROCKFORD_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ULID_RANDOM_BYTES = 10
OBJECTS_PREFIX = "orgs/"  # every object a flush writes, and nothing else, is keyed under it


def ulid(now_ms: int, random_bytes: bytes) -> str:
    """A 26-character ULID: 48 bits of milliseconds then 80 random bits, Crockford base32."""
    assert 0 <= now_ms < 1 << 48, now_ms
    assert len(random_bytes) == ULID_RANDOM_BYTES, len(random_bytes)
    value = (now_ms << 80) | int.from_bytes(random_bytes, "big")
    chars = []
    for _ in range(26):
        chars.append(CROCKFORD_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def object_key(org: str, agent: str, now_ms: int, random_bytes: bytes) -> str:
    """`orgs/<org>/objects/<yyyymmdd>/<agent>-<ulid>.obj` (DESIGN §2): unique, never reused."""
    day = datetime.datetime.fromtimestamp(now_ms / 1000, tz=datetime.UTC).strftime("%Y%m%d")
    return f"{OBJECTS_PREFIX}{org}/objects/{day}/{agent}-{ulid(now_ms, random_bytes)}.obj"
