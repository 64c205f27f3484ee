"""Tenancy's store: orgs, API keys, SCRAM credentials, ACLs and quotas.

The store keeps what the tenancy service decided and nothing more: who may do what, how secrets
are hashed, how ACLs match and how quotas throttle are the rules of `tenancy/` (pure) and the
engine's tenancy service. Secrets never reach the store; only their slow salted hashes and
SCRAM's stored and server keys (RFC 5802) do. Each call is one transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_ORG = "default"  # the open embedded org: PLAINTEXT, no credentials, exactly as before


@dataclass(frozen=True)
class Org:
    name: str
    created_ms: int


@dataclass(frozen=True)
class ApiKey:
    """A credential of one org: its id is the principal's name (`User:<key_id>` to Kafka)."""

    key_id: str
    org: str
    role: str  # "admin" (manages its org) or "member"
    secret_hash: str  # the tenancy floor's slow salted hash of the secret
    created_ms: int
    revoked_ms: int | None = None


@dataclass(frozen=True)
class ScramCredential:
    """One SCRAM mechanism's stored credential for a user (a key id)."""

    user: str
    org: str
    mechanism: str  # SCRAM-SHA-256 or SCRAM-SHA-512
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


@dataclass(frozen=True)
class AclBinding:
    """One Kafka ACL of an org, with Kafka's codes (resource type, pattern, operation,
    permission) so DescribeAcls answers them as stored."""

    resource_type: int
    resource_name: str
    pattern_type: int  # LITERAL or PREFIXED
    principal: str  # e.g. "User:SHK1234"; "User:*" for everyone
    host: str  # "*" for every host
    operation: int
    permission: int  # ALLOW or DENY


QuotaEntity = tuple[tuple[str, str | None], ...]
"""Kafka's client quota entity: sorted (type, name) pairs, type `user` or `client-id`; a None
name is the type's default entity. The empty tuple is the org itself."""


@dataclass(frozen=True)
class QuotaValue:
    entity: QuotaEntity
    key: str  # producer_byte_rate, consumer_byte_rate, request_percentage, or an org limit
    value: float


@dataclass(frozen=True)
class QuotaChange:
    entity: QuotaEntity
    key: str
    value: float | None  # None removes the quota


class KeyTaken(Exception):
    """A key id already exists (ids are random; a collision means a broken random source)."""


class TenancyStore(ABC):
    """Orgs and everything that belongs to their security, shared by every agent."""

    @abstractmethod
    async def create_org(self, name: str, now_ms: int) -> bool:
        """Create the org; False when it exists already."""

    @abstractmethod
    async def orgs(self) -> list[Org]:
        """Every org, by name."""

    @abstractmethod
    async def delete_org(self, name: str) -> bool:
        """Delete the org with its keys, SCRAM credentials, ACLs and quotas; False when there
        is none. (Whether it may be deleted is the tenancy service's rule.)"""

    @abstractmethod
    async def add_key(self, key: ApiKey) -> None:
        """Keep a new key; KeyTaken if its id exists. The org must exist."""

    @abstractmethod
    async def key(self, key_id: str) -> ApiKey | None:
        """The key with this id, revoked or not."""

    @abstractmethod
    async def keys(self, org: str | None = None) -> list[ApiKey]:
        """The keys of `org` (every org's when None), by org then id."""

    @abstractmethod
    async def revoke_key(self, key_id: str, now_ms: int) -> bool:
        """Mark the key revoked and remove its SCRAM credentials; False when there is no such
        key or it was revoked already."""

    @abstractmethod
    async def set_scram_credential(self, credential: ScramCredential) -> None:
        """Keep the credential, replacing the user's credential for that mechanism."""

    @abstractmethod
    async def delete_scram_credential(self, user: str, mechanism: str) -> bool:
        """False when the user had no credential for the mechanism."""

    @abstractmethod
    async def scram_credentials(self, user: str | None = None) -> list[ScramCredential]:
        """The user's credentials (every user's when None), by user then mechanism."""

    @abstractmethod
    async def acls(self, org: str) -> list[AclBinding]:
        """Every ACL of the org, in a stable order."""

    @abstractmethod
    async def add_acls(self, org: str, bindings: Sequence[AclBinding]) -> None:
        """Keep the bindings; one already kept is kept once."""

    @abstractmethod
    async def remove_acls(self, org: str, bindings: Sequence[AclBinding]) -> int:
        """Remove exactly these bindings; how many there were."""

    @abstractmethod
    async def quotas(self, org: str) -> list[QuotaValue]:
        """Every quota of the org, by entity then key."""

    @abstractmethod
    async def alter_quotas(self, org: str, changes: Sequence[QuotaChange]) -> None:
        """Apply every change in one transaction (set, replace, or remove with None)."""
