"""Tenancy's rules: orgs and their API keys, each key's SCRAM credentials, and the first admin.

An org is created by name (the tenancy floor's rules) and deleted only when it is not the
built-in `default` org. A key is issued once: its id and secret are returned to the caller and
never again; the store keeps the secret's slow salted hash (for SASL PLAIN and HTTP doors) and,
for every SCRAM mechanism, RFC 5802's stored and server keys derived from the same secret, so a
key authenticates with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 alike. A revoked key keeps its row
(its id is never reissued) and loses its SCRAM credentials. Randomness comes from the Rng port;
the slow hash runs through `run_blocking`, off the event loop.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from streamhouse.engine.authentication import Principal
from streamhouse.errors import ErrorCode, StreamHouseError
from streamhouse.ports.clock import Clock
from streamhouse.ports.rng import Rng
from streamhouse.ports.tenancy import (
    DEFAULT_ORG,
    ApiKey,
    KeyTaken,
    Org,
    ScramCredential,
    TenancyStore,
)
from streamhouse.tenancy.keys import KEY_RANDOM_BYTES, SALT_BYTES, hash_secret, new_key
from streamhouse.tenancy.names import validate_org_name
from streamhouse.tenancy.scram import MECHANISMS, SCRAM_ITERATIONS_DEFAULT, derive_scram

ROLE_ADMIN = "admin"  # manages its org: keys, ACLs, quotas
ROLE_MEMBER = "member"
ROLES = (ROLE_ADMIN, ROLE_MEMBER)
ISSUE_ATTEMPTS_MAX = 4  # a key id taken twice in a row means a broken random source


class TenancyRefused(StreamHouseError):
    """A tenancy request that breaks a rule: the message says which."""

    code = ErrorCode.INVALID_REQUEST


class NotPermitted(StreamHouseError):
    """The acting principal may not manage what it asked to."""

    code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED


def may_manage(actor: Principal | None, org: str | None) -> bool:
    """Whether `actor` manages `org` (None: every org, i.e. the orgs themselves): anyone when
    authentication is off (no actor), the default org's admins everywhere, an org's admins in
    their org."""
    if actor is None:
        return True
    if actor.role != ROLE_ADMIN:
        return False
    return actor.org == DEFAULT_ORG or (org is not None and actor.org == org)


def require_manager(actor: Principal | None, org: str | None) -> None:
    if not may_manage(actor, org):
        what = "orgs" if org is None else f"org {org!r}"
        raise NotPermitted(f"{actor.kafka_name if actor else 'anonymous'} may not manage {what}")


@dataclass(frozen=True)
class IssuedKey:
    """A new key as its owner sees it, once."""

    key_id: str
    secret: str
    org: str
    role: str


class TenancyService:
    """Orgs and keys over the tenancy store, shared by every door and streamctl."""

    def __init__(
        self,
        store: TenancyStore,
        clock: Clock,
        rng: Rng,
        run_blocking: Callable[[Callable[[], str]], Awaitable[str]],
        scram_iterations: int = SCRAM_ITERATIONS_DEFAULT,
    ) -> None:
        self._store = store
        self._clock = clock
        self._rng = rng
        self._run_blocking = run_blocking
        self._scram_iterations = scram_iterations

    # --- orgs -------------------------------------------------------------------------------

    async def create_org(self, name: str, actor: Principal | None = None) -> Org:
        require_manager(actor, None)
        try:
            validate_org_name(name)
        except ValueError as invalid:
            raise TenancyRefused(str(invalid)) from None
        now_ms = self._clock.now_ms()
        if not await self._store.create_org(name, now_ms):
            raise TenancyRefused(f"org {name!r} exists already")
        return Org(name, now_ms)

    async def orgs(self, actor: Principal | None = None) -> list[Org]:
        """The orgs `actor` manages (every org for the default org's admins)."""
        return [org for org in await self._store.orgs() if may_manage(actor, org.name)]

    async def delete_org(self, name: str, actor: Principal | None = None) -> None:
        require_manager(actor, None)
        if name == DEFAULT_ORG:
            raise TenancyRefused(f"the built-in org {DEFAULT_ORG!r} cannot be deleted")
        if not await self._store.delete_org(name):
            raise TenancyRefused(f"there is no org {name!r}")

    # --- keys -------------------------------------------------------------------------------

    async def issue_key(
        self, org: str, role: str = ROLE_MEMBER, actor: Principal | None = None
    ) -> IssuedKey:
        """A new key of `org`, with its secret (shown to the caller only now)."""
        require_manager(actor, org)
        if role not in ROLES:
            raise TenancyRefused(f"role {role!r} is not one of {', '.join(ROLES)}")
        if org not in {known.name for known in await self._store.orgs()}:
            raise TenancyRefused(f"there is no org {org!r}; create it first")
        for _ in range(ISSUE_ATTEMPTS_MAX):
            key_id, secret = new_key(self._rng.randbytes(KEY_RANDOM_BYTES))
            salt = self._rng.randbytes(SALT_BYTES)
            secret_hash = await self._run_blocking(functools.partial(hash_secret, secret, salt))
            key = ApiKey(key_id, org, role, secret_hash, self._clock.now_ms())
            try:
                await self._store.add_key(key)
            except KeyTaken:
                continue
            await self._add_scram_credentials(key, secret)
            return IssuedKey(key_id, secret, org, role)
        raise AssertionError(f"{ISSUE_ATTEMPTS_MAX} random key ids in a row were taken")

    async def _add_scram_credentials(self, key: ApiKey, secret: str) -> None:
        for mechanism in MECHANISMS:
            salt = self._rng.randbytes(SALT_BYTES)
            stored_key, server_key = derive_scram(mechanism, secret, salt, self._scram_iterations)
            await self._store.set_scram_credential(
                ScramCredential(
                    key.key_id,
                    key.org,
                    mechanism,
                    salt,
                    self._scram_iterations,
                    stored_key,
                    server_key,
                )
            )

    async def keys(self, org: str | None = None, actor: Principal | None = None) -> list[ApiKey]:
        """The keys of `org` (of every org `actor` manages when None)."""
        if org is not None:
            require_manager(actor, org)
        return [key for key in await self._store.keys(org) if may_manage(actor, key.org)]

    async def revoke_key(self, key_id: str, actor: Principal | None = None) -> None:
        key = await self._store.key(key_id)
        require_manager(actor, key.org if key is not None else None)
        if not await self._store.revoke_key(key_id, self._clock.now_ms()):
            raise TenancyRefused(f"there is no live key {key_id!r}")

    async def first_admin(self) -> IssuedKey | None:
        """An admin key of the default org when no key exists yet (the first start with auth
        required); None once any key exists."""
        if await self._store.keys():
            return None
        return await self.issue_key(DEFAULT_ORG, ROLE_ADMIN)
