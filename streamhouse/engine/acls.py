"""ACL administration: create, describe and delete an org's ACLs (Kafka's CreateAcls,
DescribeAcls, DeleteAcls), each binding checked by the tenancy floor's rules.

A principal manages the ACLs of its own org when it is that org's admin (the default org's
admins manage theirs); an open agent (no principal) manages the default org's. Bindings are
stored per org, so one org never sees or deletes another's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from streamhouse.engine.authentication import Principal
from streamhouse.engine.tenancy import ROLE_ADMIN, NotPermitted, require_manager
from streamhouse.errors import ErrorCode
from streamhouse.ports.clock import Clock
from streamhouse.ports.tenancy import DEFAULT_ORG, AclBinding, TenancyStore
from streamhouse.tenancy.acls import (
    CLUSTER_RESOURCE_NAME,
    AclFilter,
    AclOperation,
    InvalidAcl,
    ResourceType,
    authorize,
    check_binding,
    check_filter,
    may_write_idempotently,
)
from streamhouse.tenancy.acls import matches_filter as binding_matches

Outcome = tuple[ErrorCode, str | None]
OK: Outcome = (ErrorCode.NONE, None)


@dataclass(frozen=True)
class Deleted:
    """One DeleteAcls filter's answer: its error, or the bindings it removed."""

    error: ErrorCode
    message: str | None
    bindings: tuple[AclBinding, ...] = ()


# Another agent's ACL change applies here within this (this agent's own at once)
ACL_CACHE_MS = 1_000


@dataclass(frozen=True)
class Grant:
    """What one connection's principal may do: its org's bindings as they apply to its name
    and host (`everything`: an org admin, or no authentication)."""

    bindings: tuple[AclBinding, ...] = ()
    principal: str = ""
    host: str = ""
    everything: bool = False
    # A tenant's (an org other than the default) principal: the cluster is not its to change
    tenant: bool = False

    def allows(self, operation: AclOperation, resource_type: ResourceType, name: str) -> bool:
        if self.everything:
            return True
        return authorize(self.bindings, self.principal, self.host, operation, resource_type, name)

    def allows_on_cluster(self, operation: AclOperation) -> bool:
        """Whether the principal may do `operation` on the cluster: never, for a tenant, one
        that acts on every org's partitions or on the agents' own configs."""
        if self.tenant and operation in OPERATOR_ONLY:
            return False
        return self.allows(operation, ResourceType.CLUSTER, CLUSTER_RESOURCE_NAME)

    def may_create_topic(self, name: str) -> bool:
        """Kafka's CreateTopics rule: CREATE on the cluster grants it for every topic, else
        CREATE on the topic itself."""
        return self.allows_on_cluster(AclOperation.CREATE) or self.allows(
            AclOperation.CREATE, ResourceType.TOPIC, name
        )

    def may_write_idempotently(self) -> bool:
        return self.everything or may_write_idempotently(self.bindings, self.principal, self.host)


EVERYTHING = Grant(everything=True)
# Cluster operations only the default org's principals (the operators) may be granted
OPERATOR_ONLY = frozenset(
    {AclOperation.ALTER, AclOperation.ALTER_CONFIGS, AclOperation.CLUSTER_ACTION}
)


class AclService:
    """The ACLs of the acting principal's org, and what they grant."""

    def __init__(self, store: TenancyStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._cached: dict[str, tuple[int, tuple[AclBinding, ...]]] = {}  # org: (loaded, ...)

    async def grant(self, actor: Principal | None, host: str) -> Grant:
        """What `actor`, connected from `host`, may do: everything for its org's admins (and
        with authentication off), but a tenant's never the operators' cluster operations; what
        its org's bindings allow for a member."""
        if actor is None:
            return EVERYTHING
        tenant = actor.org != DEFAULT_ORG
        if actor.role == ROLE_ADMIN:
            return Grant(everything=True, tenant=tenant)
        return Grant(await self._bindings(actor.org), actor.kafka_name, host, tenant=tenant)

    async def _bindings(self, org: str) -> tuple[AclBinding, ...]:
        now_ms = self._clock.monotonic_ms()
        cached = self._cached.get(org)
        if cached is not None and now_ms - cached[0] < ACL_CACHE_MS:
            return cached[1]
        bindings = tuple(await self._store.acls(org))
        self._cached[org] = (now_ms, bindings)
        return bindings

    async def create(
        self, bindings: Sequence[AclBinding], actor: Principal | None
    ) -> list[Outcome]:
        """An outcome per binding, in order; the valid ones are kept."""
        org = _org(actor)
        try:
            require_manager(actor, org)
        except NotPermitted as refused:
            return [(refused.code, str(refused))] * len(bindings)
        outcomes: list[Outcome] = []
        valid: list[AclBinding] = []
        for binding in bindings:
            try:
                check_binding(binding)
            except InvalidAcl as invalid:
                outcomes.append((ErrorCode.INVALID_REQUEST, str(invalid)))
                continue
            valid.append(binding)
            outcomes.append(OK)
        if valid:
            await self._store.add_acls(org, valid)
            self._cached.pop(org, None)
        return outcomes

    async def describe(self, acl_filter: AclFilter, actor: Principal | None) -> list[AclBinding]:
        """The org's bindings the filter matches; NotPermitted or InvalidAcl when refused."""
        org = _org(actor)
        require_manager(actor, org)
        check_filter(acl_filter)
        return [b for b in await self._store.acls(org) if binding_matches(b, acl_filter)]

    async def delete(self, filters: Sequence[AclFilter], actor: Principal | None) -> list[Deleted]:
        """For each filter, the bindings it removed (a binding matched twice goes once)."""
        org = _org(actor)
        try:
            require_manager(actor, org)
        except NotPermitted as refused:
            return [Deleted(refused.code, str(refused))] * len(filters)
        kept = await self._store.acls(org)
        removed: set[AclBinding] = set()
        answers = []
        for acl_filter in filters:
            try:
                check_filter(acl_filter)
            except InvalidAcl as invalid:
                answers.append(Deleted(ErrorCode.INVALID_REQUEST, str(invalid)))
                continue
            matched = [b for b in kept if binding_matches(b, acl_filter) and b not in removed]
            removed.update(matched)
            answers.append(Deleted(ErrorCode.NONE, None, tuple(matched)))
        if removed:
            await self._store.remove_acls(org, sorted(removed, key=_order))
            self._cached.pop(org, None)
        return answers


def _org(actor: Principal | None) -> str:
    return DEFAULT_ORG if actor is None else actor.org


def _order(binding: AclBinding) -> tuple[int, str, int, str, str, int, int]:
    return (
        binding.resource_type,
        binding.resource_name,
        binding.pattern_type,
        binding.principal,
        binding.host,
        binding.operation,
        binding.permission,
    )
