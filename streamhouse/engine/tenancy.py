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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from streamhouse.engine.authentication import BlockingRunner, Principal
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
from streamhouse.ports.topics import TopicStore
from streamhouse.tenancy.keys import KEY_RANDOM_BYTES, SALT_BYTES, hash_secret, new_key
from streamhouse.tenancy.names import org_of, unscoped, validate_org_name
from streamhouse.tenancy.scram import (
    MECHANISMS,
    SCRAM_ITERATIONS_DEFAULT,
    check_iterations,
    derive_scram,
    keys_of_salted_password,
)

ROLE_ADMIN = "admin"  # manages its org: keys, ACLs, quotas
ROLE_MEMBER = "member"
ROLES = (ROLE_ADMIN, ROLE_MEMBER)
ORG_TOPICS_SHOWN_MAX = 5  # named in the refusal to delete an org still holding topics
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
class UserScram:
    """One user's answer to DescribeUserScramCredentials: its mechanisms and iterations, or why
    there is none to show."""

    user: str
    error: ErrorCode = ErrorCode.NONE
    message: str | None = None
    credentials: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class ScramUpsertion:
    user: str
    mechanism: str
    iterations: int
    salt: bytes
    salted_password: bytes


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
        run_blocking: BlockingRunner[str],
        scram_iterations: int = SCRAM_ITERATIONS_DEFAULT,
        topics: TopicStore | None = None,  # None: orgs are deleted whatever they hold
    ) -> None:
        self._store = store
        self._topics = topics
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
        await self._refuse_while_holding_topics(name)
        if not await self._store.delete_org(name):
            raise TenancyRefused(f"there is no org {name!r}")

    async def _refuse_while_holding_topics(self, org: str) -> None:
        """An org's topics outlive no org: its data would be nobody's to read or delete."""
        if self._topics is None:
            return
        held = sorted(
            unscoped(org, t.name) or t.name
            for t in await self._topics.list_topics()
            if org_of(t.name) == org
        )
        if held:
            shown = ", ".join(held[:ORG_TOPICS_SHOWN_MAX])
            hidden = len(held) - ORG_TOPICS_SHOWN_MAX
            more = f" and {hidden} more" if hidden > 0 else ""
            raise TenancyRefused(
                f"org {org!r} still has {len(held)} topic(s) ({shown}{more}): delete them first"
            )

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

    # --- SCRAM credentials (Kafka's Describe/AlterUserScramCredentials) ----------------------

    async def describe_scram(
        self, users: Sequence[str] | None, actor: Principal | None = None
    ) -> list[UserScram]:
        """The SCRAM credentials of `users` (every user `actor` manages when None or empty)."""
        if not users:
            keys = [k for k in await self._store.keys() if may_manage(actor, k.org)]
            described = [await self._described(k.key_id) for k in keys if k.revoked_ms is None]
            return [user for user in described if user.credentials]
        counts = Counter(users)
        answers = []
        for user in dict.fromkeys(users):
            if counts[user] > 1:
                message = "Cannot describe SCRAM credentials for the same user twice in a request"
                answers.append(UserScram(user, ErrorCode.DUPLICATE_RESOURCE, message))
            elif await self._managed_key(user, actor) is None:
                answers.append(_no_credential(user))
            else:
                found = await self._described(user)
                answers.append(found if found.credentials else _no_credential(user))
        return answers

    async def _described(self, user: str) -> UserScram:
        credentials = await self._store.scram_credentials(user)
        return UserScram(user, credentials=tuple((c.mechanism, c.iterations) for c in credentials))

    async def _managed_key(self, user: str, actor: Principal | None) -> ApiKey | None:
        key = await self._store.key(user)
        if key is None or key.revoked_ms is not None or not may_manage(actor, key.org):
            return None
        return key

    async def alter_scram(
        self,
        deletions: Sequence[tuple[str, str]],
        upsertions: Sequence[ScramUpsertion],
        actor: Principal | None = None,
    ) -> dict[str, tuple[ErrorCode, str | None]]:
        """Apply each user's changes; (error, message) by user, ErrorCode.NONE when applied."""
        touched = Counter(
            [(user, mechanism) for user, mechanism in deletions]
            + [(u.user, u.mechanism) for u in upsertions]
        )
        outcomes: dict[str, tuple[ErrorCode, str | None]] = {}
        for (user, _), count in touched.items():
            if count > 1:
                message = "A user credential cannot be altered twice in the same request"
                outcomes[user] = (ErrorCode.DUPLICATE_RESOURCE, message)
        for user, mechanism in deletions:
            if user not in outcomes:
                outcomes[user] = await self._delete_scram(user, mechanism, actor)
        for upsertion in upsertions:
            if upsertion.user not in outcomes:
                outcomes[upsertion.user] = await self._upsert_scram(upsertion, actor)
        return outcomes

    async def _delete_scram(
        self, user: str, mechanism: str, actor: Principal | None
    ) -> tuple[ErrorCode, str | None]:
        missing = "Attempt to delete a user credential that does not exist"
        if await self._managed_key(user, actor) is None:
            return ErrorCode.RESOURCE_NOT_FOUND, missing
        if not await self._store.delete_scram_credential(user, mechanism):
            return ErrorCode.RESOURCE_NOT_FOUND, missing
        return ErrorCode.NONE, None

    async def _upsert_scram(
        self, upsertion: ScramUpsertion, actor: Principal | None
    ) -> tuple[ErrorCode, str | None]:
        key = await self._managed_key(upsertion.user, actor)
        if key is None:
            return ErrorCode.RESOURCE_NOT_FOUND, (
                f"no live API key {upsertion.user!r} you manage: SCRAM users are API keys"
            )
        try:
            check_iterations(upsertion.mechanism, upsertion.iterations)
        except ValueError as unacceptable:
            return ErrorCode.UNACCEPTABLE_CREDENTIAL, str(unacceptable)
        if not upsertion.salt or not upsertion.salted_password:
            return ErrorCode.UNACCEPTABLE_CREDENTIAL, "the salt and salted password must be set"
        stored_key, server_key = keys_of_salted_password(
            upsertion.mechanism, upsertion.salted_password
        )
        credential = ScramCredential(
            key.key_id,
            key.org,
            upsertion.mechanism,
            upsertion.salt,
            upsertion.iterations,
            stored_key,
            server_key,
        )
        await self._store.set_scram_credential(credential)
        return ErrorCode.NONE, None


def _no_credential(user: str) -> UserScram:
    message = "Attempt to describe a user credential that does not exist"
    return UserScram(user, ErrorCode.RESOURCE_NOT_FOUND, message)
