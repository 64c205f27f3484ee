"""Who a client is: the rule every door asks before it serves an authenticated connection.

`Authenticator` is the interface the doors call (the Kafka door's SASL exchange first);
`StoreAuthenticator` answers from the tenancy store: a key that exists and is not revoked,
its secret checked against the slow salted hash (PLAIN), or its stored SCRAM credential
handed to the exchange (SCRAM, which proves the password without the agent seeing it).
HTTP doors check PLAIN on every request, so successful slow checks are remembered (bounded,
LRU) by a fast salted digest of the secret; the key row is still read on every call, so a
revoked key is refused at once, and a wrong secret is always checked the slow way.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from streamhouse.ports.tenancy import ApiKey, ScramCredential, TenancyStore

T = TypeVar("T")
CHECKED_SECRETS_MAX = 4_096  # successful slow secret checks remembered (key id, digest)
DIGEST_SALT_BYTES = 32
BlockingRunner = Callable[[Callable[[], T]], Awaitable[T]]
"""Runs a blocking function off the event loop and awaits it (`asyncio.to_thread` in the
agent; a direct call under simulation, where the engine has no threads)."""


@dataclass(frozen=True)
class Principal:
    """An authenticated client: the API key `user` of `org`, with its `role` there."""

    org: str
    user: str
    role: str

    @property
    def kafka_name(self) -> str:
        """The principal as Kafka's ACLs name it."""
        return f"User:{self.user}"


class Authenticator(ABC):
    """Checks the credentials a client presents."""

    @abstractmethod
    async def plain(self, user: str, password: str) -> Principal | None:
        """The principal when `password` is `user`'s secret; None otherwise (no such user, a
        revoked key, a wrong secret: one answer, so callers cannot tell them apart)."""

    @abstractmethod
    async def scram_credential(
        self, user: str, mechanism: str
    ) -> tuple[Principal, ScramCredential] | None:
        """The user's principal and stored credential for the SCRAM `mechanism`; None when
        there is no such usable user (the exchange then fakes one)."""


async def run_inline(fn: Callable[[], T]) -> T:
    return fn()


class StoreAuthenticator(Authenticator):
    """Credentials as the tenancy store keeps them.

    `secret_matches(secret_hash, secret)` is the tenancy floor's slow hash check (scrypt:
    tens of milliseconds of CPU), so it runs through `run_blocking`; the agent passes
    `asyncio.to_thread` so other connections keep being served meanwhile. `decoy_hash`: a
    hash of no one's secret, checked for an unknown or revoked key so that it takes as long
    as a wrong secret (no user enumeration by timing); None skips that check.
    `digest_salt`: random bytes of this process (from the Rng port), salting the fast digests
    of secrets that passed the slow check, so the memory holds nothing a fast guess could test
    against another process's or a leaked table.
    """

    def __init__(
        self,
        store: TenancyStore,
        secret_matches: Callable[[str, str], bool],
        run_blocking: BlockingRunner[bool] = run_inline,
        decoy_hash: str | None = None,
        digest_salt: bytes = b"",
        checked_secrets_max: int = CHECKED_SECRETS_MAX,
    ) -> None:
        self._store = store
        self._secret_matches = secret_matches
        self._run_blocking = run_blocking
        self._decoy_hash = decoy_hash
        self._digest_salt = digest_salt
        self._checked_secrets_max = checked_secrets_max
        # (key id, digest of the secret) -> the stored hash it was checked against
        self._checked: OrderedDict[tuple[str, bytes], str] = OrderedDict()

    async def plain(self, user: str, password: str) -> Principal | None:
        key = await self._usable_key(user)  # read every time: a revocation counts at once
        secret_hash = key.secret_hash if key is not None else self._decoy_hash
        if secret_hash is None:
            return None
        remembered = (user, self._digest(password))
        if key is not None and self._checked.get(remembered) == secret_hash:
            self._checked.move_to_end(remembered)
            return _principal(key)
        matches = await self._run_blocking(lambda: self._secret_matches(secret_hash, password))
        if not matches or key is None:
            return None
        self._remember(remembered, secret_hash)
        return _principal(key)

    def _digest(self, password: str) -> bytes:
        return hashlib.sha256(self._digest_salt + password.encode()).digest()

    def _remember(self, remembered: tuple[str, bytes], secret_hash: str) -> None:
        self._checked[remembered] = secret_hash
        self._checked.move_to_end(remembered)
        if len(self._checked) > self._checked_secrets_max:
            self._checked.popitem(last=False)

    async def scram_credential(
        self, user: str, mechanism: str
    ) -> tuple[Principal, ScramCredential] | None:
        key = await self._usable_key(user)
        if key is None:
            return None
        for credential in await self._store.scram_credentials(user):
            if credential.mechanism == mechanism:
                return _principal(key), credential
        return None

    async def _usable_key(self, user: str) -> ApiKey | None:
        key = await self._store.key(user)
        if key is None or key.revoked_ms is not None:
            return None
        return key


def _principal(key: ApiKey) -> Principal:
    return Principal(org=key.org, user=key.key_id, role=key.role)
