"""Who is calling the gRPC door, in which org, and what its ACLs let it do.

With authentication off there is no principal: the call acts in the default org with every
right. With authentication required, each call carries its API key in the `authorization`
metadata, either `Basic base64(key:secret)` (as the HTTP doors take it) or
`Bearer key:secret`; missing, malformed or wrong credentials answer UNAUTHENTICATED. Names in
requests and answers are the org's own: `internal` scopes them (tenancy/names.py), `shown`
gives back the org's name of an internal one (None: another org's, left out). Rights are the
principal's Grant (engine/acls.py), asked for exactly as the Kafka door asks for the same
operation (server/kafka_acl_checks.py); a refusal is the resource kind's AUTHORIZATION_FAILED,
answered PERMISSION_DENIED.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from grpc import StatusCode

from streamhouse.engine.acls import EVERYTHING, AclService, Grant
from streamhouse.engine.authentication import Authenticator
from streamhouse.errors import ErrorCode, StreamHouseError
from streamhouse.server.grpc.status import CallRefused
from streamhouse.server.http_auth import Unauthenticated, basic_credentials
from streamhouse.tenancy.acls import AclOperation, ResourceType
from streamhouse.tenancy.names import DEFAULT_ORG, scoped, unscoped

AUTHORIZATION_METADATA = "authorization"
BEARER_SCHEME = "bearer "
CREDENTIALS_CHARS_MAX = 4_096  # an authorization value longer than this is not a key
REFUSAL_CODES = {
    ResourceType.TOPIC: ErrorCode.TOPIC_AUTHORIZATION_FAILED,
    ResourceType.GROUP: ErrorCode.GROUP_AUTHORIZATION_FAILED,
}


@dataclass(frozen=True)
class Caller:
    """One call's org and rights."""

    org: str
    grant: Grant

    def internal(self, name: str, what: str = "topic") -> str:
        """The internal name of the org's resource `name`; INVALID_ARGUMENT when empty, and
        NOT_FOUND when it reads as another org's (unknown to the caller, as a missing one)."""
        if not name:
            raise CallRefused(StatusCode.INVALID_ARGUMENT, f"the {what} name is empty")
        try:
            return scoped(self.org, name)
        except ValueError:
            raise CallRefused(StatusCode.NOT_FOUND, f"no {what} {name!r}") from None

    def shown(self, internal: str) -> str | None:
        """The org's name of an internal name; None when another org's."""
        return unscoped(self.org, internal)

    def may(self, operation: AclOperation, kind: ResourceType, name: str) -> bool:
        """Whether the grant allows `operation` on the org's resource `name`."""
        return self.grant.allows(operation, kind, name)

    def require(self, operation: AclOperation, kind: ResourceType, name: str) -> None:
        """Raise the kind's AUTHORIZATION_FAILED unless the grant allows `operation`."""
        if not self.may(operation, kind, name):
            raise StreamHouseError(
                f"not authorized to {operation.name} {kind.name.lower()} {name!r}: ask an "
                "admin of your org for an ACL",
                REFUSAL_CODES.get(kind, ErrorCode.CLUSTER_AUTHORIZATION_FAILED),
            )

    def require_create_topic(self, name: str) -> None:
        """CREATE on the cluster grants it for every topic (Kafka's CreateTopics rule)."""
        if not self.grant.may_create_topic(name):
            self.require(AclOperation.CREATE, ResourceType.TOPIC, name)  # refused as a call


OPEN_CALLER = Caller(DEFAULT_ORG, EVERYTHING)


class CallerCheck:
    """The Caller of each call; `authenticator` None: authentication is off."""

    def __init__(self, authenticator: Authenticator | None, acls: AclService) -> None:
        self._authenticator = authenticator
        self._acls = acls

    async def caller(self, metadata: Iterable[tuple[str, str | bytes]], peer: str) -> Caller:
        """The Caller of a call with this invocation metadata from `peer` (gRPC's peer
        string, e.g. ipv4:127.0.0.1:5000). Raises Unauthenticated."""
        if self._authenticator is None:
            return OPEN_CALLER
        user, secret = credentials(metadata)
        principal = await self._authenticator.plain(user, secret)
        if principal is None:
            raise Unauthenticated("the key or its secret is wrong, or the key was revoked")
        grant = await self._acls.grant(principal, peer_host(peer))
        return Caller(principal.org, grant)


def credentials(metadata: Iterable[tuple[str, str | bytes]]) -> tuple[str, str]:
    """(key id, secret) from the call's `authorization` metadata."""
    values = [v for k, v in metadata if k.lower() == AUTHORIZATION_METADATA]
    if len(values) != 1 or not isinstance(values[0], str):
        raise Unauthenticated(
            "this agent requires an API key: metadata 'authorization: Basic "
            "base64(key:secret)' or 'authorization: Bearer key:secret'"
        )
    value = values[0]
    if len(value) > CREDENTIALS_CHARS_MAX:
        raise Unauthenticated("the authorization metadata is too long to be an API key")
    if not value.lower().startswith(BEARER_SCHEME):
        return basic_credentials(value)
    user, separator, secret = value[len(BEARER_SCHEME) :].strip().partition(":")
    if not separator:
        raise Unauthenticated("the Bearer credentials are not key:secret")
    return user, secret


def peer_host(peer: str) -> str:
    """The host of a gRPC peer string: ipv4:1.2.3.4:5, ipv6:[::1]:5, unix:/path."""
    kind, _, address = peer.partition(":")
    if kind == "ipv6" and address.startswith("["):
        return address[1 : address.find("]")]
    if kind == "ipv4":
        return address.rpartition(":")[0]
    return address
