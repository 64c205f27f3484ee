"""StoreAuthenticator (engine/authentication.py): keys from the tenancy store, revoked keys
refused, PLAIN's slow hash check run through the injected runner, SCRAM credentials by
mechanism."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar
from unittest.mock import AsyncMock, MagicMock

from streamhouse.engine.authentication import Principal, StoreAuthenticator
from streamhouse.ports.tenancy import ApiKey, ScramCredential, TenancyStore

T = TypeVar("T")
KEY = ApiKey("SHK1", "acme", "admin", "hash-of:s3cret", created_ms=1)
REVOKED = ApiKey("SHK2", "acme", "member", "hash-of:s3cret", created_ms=1, revoked_ms=2)
SCRAM = ScramCredential("SHK1", "acme", "SCRAM-SHA-512", b"s" * 16, 4096, b"k", b"v")


def store() -> TenancyStore:
    fake = MagicMock(spec=TenancyStore)
    fake.key = AsyncMock(side_effect=lambda key_id: {"SHK1": KEY, "SHK2": REVOKED}.get(key_id))
    fake.scram_credentials = AsyncMock(
        side_effect=lambda user: [SCRAM] if user in ("SHK1", "SHK2") else []
    )
    return fake


def matches(secret_hash: str, secret: str) -> bool:
    return secret_hash == f"hash-of:{secret}"


def test_plain_gives_the_keys_principal_for_its_secret_only() -> None:
    ran: list[str] = []

    async def runner(fn: Callable[[], T]) -> T:
        ran.append("off the loop")
        return fn()

    async def main() -> None:
        authenticator = StoreAuthenticator(store(), matches, runner)
        assert await authenticator.plain("SHK1", "s3cret") == Principal("acme", "SHK1", "admin")
        assert await authenticator.plain("SHK1", "wrong") is None
        assert await authenticator.plain("SHK2", "s3cret") is None  # revoked
        assert await authenticator.plain("nobody", "s3cret") is None

    asyncio.run(main())
    assert ran == ["off the loop", "off the loop"]  # the hash is checked for live keys only


def test_unknown_and_revoked_keys_check_the_decoy_hash_and_are_refused() -> None:
    checked: list[str] = []

    def recording(secret_hash: str, secret: str) -> bool:
        checked.append(secret_hash)
        return True  # even a decoy that matched lets no one in

    async def main() -> None:
        authenticator = StoreAuthenticator(store(), recording, decoy_hash="decoy")
        assert await authenticator.plain("nobody", "s3cret") is None
        assert await authenticator.plain("SHK2", "s3cret") is None

    asyncio.run(main())
    assert checked == ["decoy", "decoy"]


def test_scram_credential_by_mechanism_for_live_keys() -> None:
    async def main() -> None:
        authenticator = StoreAuthenticator(store(), matches)
        found = await authenticator.scram_credential("SHK1", "SCRAM-SHA-512")
        assert found == (Principal("acme", "SHK1", "admin"), SCRAM)
        assert await authenticator.scram_credential("SHK1", "SCRAM-SHA-256") is None
        assert await authenticator.scram_credential("SHK2", "SCRAM-SHA-512") is None
        assert await authenticator.scram_credential("nobody", "SCRAM-SHA-512") is None

    asyncio.run(main())


def test_principal_names_itself_as_kafka_does() -> None:
    assert Principal("acme", "SHK1", "member").kafka_name == "User:SHK1"
