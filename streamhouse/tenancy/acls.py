"""Kafka's ACL model: its integer codes, which CreateAcls entries are valid, how a
Describe/DeleteAcls filter matches a binding, and StandardAuthorizer's allow/deny decision.

The codes are Kafka's (org.apache.kafka.common.resource.ResourceType and PatternType,
org.apache.kafka.common.acl.AclOperation and AclPermissionType), so bindings travel the wire
and sit in the store as Kafka wrote them. Bindings are anything with AclBinding's fields
(`ports.tenancy.AclBinding` fits `AclLike`); this floor cannot import the ports.

Super-users and org admins are the caller's rule: with no binding, nothing is allowed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


class ResourceType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class AclOperation(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14
    TWO_PHASE_COMMIT = 15


class AclPermissionType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


CLUSTER_RESOURCE_NAME = "kafka-cluster"  # the one name a CLUSTER resource may have
WILDCARD_RESOURCE = "*"  # a LITERAL name matching every resource of its type
WILDCARD_PRINCIPAL = "User:*"
WILDCARD_HOST = "*"
USER_PRINCIPAL_TYPE = "User"

# ALLOW of any of these implies ALLOW of the key (Kafka's AclOperation javadoc). DENY implies
# nothing: DENY READ leaves DESCRIBE alone, only DENY ALL denies everything.
_IMPLIED_BY: dict[AclOperation, frozenset[AclOperation]] = {
    AclOperation.DESCRIBE: frozenset(
        {AclOperation.READ, AclOperation.WRITE, AclOperation.DELETE, AclOperation.ALTER}
    ),
    AclOperation.DESCRIBE_CONFIGS: frozenset({AclOperation.ALTER_CONFIGS}),
}
_NOT_ASKABLE = frozenset({AclOperation.UNKNOWN, AclOperation.ANY, AclOperation.ALL})


class InvalidAcl(ValueError):
    """A CreateAcls entry Kafka would refuse with INVALID_REQUEST (the message is Kafka's)."""


class AclLike(Protocol):
    """AclBinding's fields, read-only, with Kafka's codes."""

    @property
    def resource_type(self) -> int: ...
    @property
    def resource_name(self) -> str: ...
    @property
    def pattern_type(self) -> int: ...
    @property
    def principal(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def operation(self) -> int: ...
    @property
    def permission(self) -> int: ...


@dataclass(frozen=True)
class AclFilter:
    """Kafka's AclBindingFilter: ANY codes and None strings match anything; pattern type MATCH
    matches every binding that would apply to a resource named `resource_name`."""

    resource_type: int = ResourceType.ANY
    resource_name: str | None = None
    pattern_type: int = PatternType.ANY
    principal: str | None = None
    host: str | None = None
    operation: int = AclOperation.ANY
    permission: int = AclPermissionType.ANY


def check_binding(binding: AclLike) -> None:
    """Raise InvalidAcl where CreateAcls must refuse the binding, in Kafka's order."""
    _check_codes(binding)
    if (
        binding.resource_type == ResourceType.CLUSTER
        and binding.resource_name != CLUSTER_RESOURCE_NAME
    ):
        raise InvalidAcl(f"The only valid name for the CLUSTER resource is {CLUSTER_RESOURCE_NAME}")
    if not binding.resource_name:
        raise InvalidAcl("Invalid empty resource name")
    _check_principal(binding.principal)
    if binding.pattern_type == PatternType.PREFIXED and binding.resource_name == WILDCARD_RESOURCE:
        # Kafka accepts it and it matches nothing (no name starts with "*"): a trap we refuse.
        raise InvalidAcl(
            "A PREFIXED '*' matches no resource; use a LITERAL '*' to match every resource"
        )


def check_filter(acl_filter: AclFilter) -> None:
    """Raise InvalidAcl where Describe/DeleteAcls must refuse the filter (Kafka's wording)."""
    if (
        _name(ResourceType, acl_filter.resource_type) == "UNKNOWN"
        or _name(PatternType, acl_filter.pattern_type) == "UNKNOWN"
    ):
        raise InvalidAcl("Unknown patternFilter.")
    if (
        _name(AclOperation, acl_filter.operation) == "UNKNOWN"
        or _name(AclPermissionType, acl_filter.permission) == "UNKNOWN"
    ):
        raise InvalidAcl("Unknown entryFilter.")


def matches_filter(binding: AclLike, acl_filter: AclFilter) -> bool:
    """Whether Describe/DeleteAcls with `acl_filter` selects `binding`."""
    return _pattern_matches_filter(binding, acl_filter) and _entry_matches_filter(
        binding, acl_filter
    )


def authorize(
    bindings: Iterable[AclLike],
    principal: str,
    host: str,
    operation: AclOperation,
    resource_type: ResourceType,
    resource_name: str,
) -> bool:
    """Whether the bindings allow `principal` from `host` to do `operation` on the resource:
    some applicable binding allows it and none denies it (DENY wins)."""
    if operation in _NOT_ASKABLE:
        raise ValueError(f"{operation.name} is not an operation a request can ask for")
    allowed = False
    for binding in bindings:
        if not _applies(binding, principal, host, resource_type, resource_name):
            continue
        if binding.permission == AclPermissionType.DENY and _denies(binding.operation, operation):
            return False
        if binding.permission == AclPermissionType.ALLOW and _allows(binding.operation, operation):
            allowed = True
    return allowed


def may_write_idempotently(bindings: Iterable[AclLike], principal: str, host: str) -> bool:
    """InitProducerId without a transactional id: Kafka (KIP-679) allows it with
    IDEMPOTENT_WRITE on the cluster, or with WRITE allowed on at least one topic, decided as
    Kafka's Authorizer.authorizeByResourceType does (see `allows_on_some_resource`)."""
    bindings = list(bindings)
    on_cluster = authorize(
        bindings,
        principal,
        host,
        AclOperation.IDEMPOTENT_WRITE,
        ResourceType.CLUSTER,
        CLUSTER_RESOURCE_NAME,
    )
    return on_cluster or allows_on_some_resource(
        bindings, principal, host, AclOperation.WRITE, ResourceType.TOPIC
    )


def allows_on_some_resource(
    bindings: Iterable[AclLike],
    principal: str,
    host: str,
    operation: AclOperation,
    resource_type: ResourceType,
) -> bool:
    """Kafka's authorizeByResourceType: some ALLOW (of `operation` or ALL) names a resource
    pattern that no DENY covers. A DENY of LITERAL '*' covers everything; a DENY LITERAL covers
    the same LITERAL; a DENY PREFIXED covers every pattern whose name starts with it. Implied
    operations are not considered, as in Kafka."""
    allowed: set[tuple[int, str]] = set()
    denied: set[tuple[int, str]] = set()
    for binding in bindings:
        if binding.resource_type != resource_type or binding.operation not in (
            operation,
            AclOperation.ALL,
        ):
            continue
        if not (_principal_applies(binding, principal) and _host_applies(binding, host)):
            continue
        pattern = (binding.pattern_type, binding.resource_name)
        if binding.permission == AclPermissionType.DENY:
            if pattern == (PatternType.LITERAL, WILDCARD_RESOURCE):
                return False
            denied.add(pattern)
        elif binding.permission == AclPermissionType.ALLOW:
            allowed.add(pattern)
    return any(not _dominated(pattern, denied) for pattern in allowed)


def _dominated(allow: tuple[int, str], denied: set[tuple[int, str]]) -> bool:
    pattern_type, name = allow
    if pattern_type == PatternType.LITERAL and allow in denied:
        return True
    return any((PatternType.PREFIXED, name[:end]) in denied for end in range(1, len(name) + 1))


def _check_codes(binding: AclLike) -> None:
    resource_type = _name(ResourceType, binding.resource_type)
    if resource_type in ("UNKNOWN", "ANY"):
        raise InvalidAcl(f"Invalid resourceType {resource_type}")
    pattern_type = _name(PatternType, binding.pattern_type)
    if pattern_type not in ("LITERAL", "PREFIXED"):
        raise InvalidAcl(f"Invalid patternType {pattern_type}")
    operation = _name(AclOperation, binding.operation)
    if operation in ("UNKNOWN", "ANY"):
        raise InvalidAcl(f"Invalid operation {operation}")
    permission = _name(AclPermissionType, binding.permission)
    if permission not in ("DENY", "ALLOW"):
        raise InvalidAcl(f"Invalid permissionType {permission}")


def _check_principal(principal: str) -> None:
    principal_type, colon, name = principal.partition(":")
    if not colon:
        raise InvalidAcl(
            f"Could not parse principal from `{principal}` (no colon is present separating the"
            " principal type from the principal name)"
        )
    if not principal_type or not name:
        raise InvalidAcl(
            "expected a string in format principalType:principalName but got " + principal
        )
    if principal_type != USER_PRINCIPAL_TYPE:
        # Kafka stores any type (a custom principal builder may make Group:...); ours only
        # ever authenticates users, so another type could never match: refuse it as a typo.
        raise InvalidAcl(
            f"Unsupported principal type `{principal_type}` in `{principal}`: principals are"
            f" {USER_PRINCIPAL_TYPE}:<key id> or {WILDCARD_PRINCIPAL}"
        )


def _name(codes: type[enum.IntEnum], code: int) -> str:
    """The code's name, UNKNOWN for a code Kafka has not defined (as Kafka decodes it)."""
    try:
        return codes(code).name
    except ValueError:
        return "UNKNOWN"


def _pattern_matches_filter(binding: AclLike, acl_filter: AclFilter) -> bool:
    if acl_filter.resource_type not in (ResourceType.ANY, binding.resource_type):
        return False
    if acl_filter.pattern_type not in (PatternType.ANY, PatternType.MATCH, binding.pattern_type):
        return False
    name = acl_filter.resource_name
    if name is None:
        return True
    if acl_filter.pattern_type != PatternType.MATCH or binding.pattern_type == PatternType.MATCH:
        return name == binding.resource_name
    return _pattern_covers(binding.pattern_type, binding.resource_name, name)


def _entry_matches_filter(binding: AclLike, acl_filter: AclFilter) -> bool:
    # The filter's principal and host are compared as written: "User:*" selects the
    # wildcard bindings only, as in Kafka's AccessControlEntryFilter.
    return (
        acl_filter.principal in (None, binding.principal)
        and acl_filter.host in (None, binding.host)
        and acl_filter.operation in (AclOperation.ANY, binding.operation)
        and acl_filter.permission in (AclPermissionType.ANY, binding.permission)
    )


def _pattern_covers(pattern_type: int, pattern_name: str, resource_name: str) -> bool:
    if pattern_type == PatternType.LITERAL:
        return pattern_name in (resource_name, WILDCARD_RESOURCE)
    if pattern_type == PatternType.PREFIXED:
        return resource_name.startswith(pattern_name)
    return False


def _applies(
    binding: AclLike, principal: str, host: str, resource_type: int, resource_name: str
) -> bool:
    return (
        binding.resource_type == resource_type
        and _pattern_covers(binding.pattern_type, binding.resource_name, resource_name)
        and _principal_applies(binding, principal)
        and _host_applies(binding, host)
    )


def _principal_applies(binding: AclLike, principal: str) -> bool:
    return binding.principal in (principal, WILDCARD_PRINCIPAL)


def _host_applies(binding: AclLike, host: str) -> bool:
    return binding.host in (host, WILDCARD_HOST)


def _denies(bound: int, asked: AclOperation) -> bool:
    return bound in (asked, AclOperation.ALL)


def _allows(bound: int, asked: AclOperation) -> bool:
    return bound in (asked, AclOperation.ALL) or bound in _IMPLIED_BY.get(asked, ())
