"""Client quotas of every org on this agent: which configured quota applies to a client, how
fast that client (or the clients sharing its quota) has gone, and how long it is throttled.

As Kafka's ClientQuotaManager: one rate sampler per (org, quota key, applied entity), where
the applied entity is the matched level with its default names filled in (every client of a
user sharing a user-level quota shares its sampler; the org's own quota is shared by the whole
org). Each org's configured quotas are read from the tenancy store and kept for at most
`refresh_interval_ms`, so another agent's changes apply within it (this agent's own at once).
Per-org traffic counters (produced and fetched bytes, throttle time) feed the metrics.
Time comes from the Clock port.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from streamhouse.engine.authentication import Principal
from streamhouse.engine.tenancy import NotPermitted, TenancyRefused, may_manage, require_manager
from streamhouse.errors import ErrorCode, StreamHouseError
from streamhouse.ports.clock import Clock
from streamhouse.ports.tenancy import DEFAULT_ORG, QuotaChange, TenancyStore
from streamhouse.tenancy.quota_filters import FilterComponent, check_change, check_filter, matches
from streamhouse.tenancy.quotas import (
    CLIENT_ID,
    CONSUMER_BYTE_RATE,
    PRODUCER_BYTE_RATE,
    REQUEST_PERCENTAGE,
    REQUEST_THROTTLE_MS_MAX,
    THROTTLE_MS_MAX,
    USER,
    InvalidQuota,
    QuotaEntity,
    RateSampler,
    quota_levels,
    throttle_ms,
)

QUOTA_REFRESH_INTERVAL_MS = 5_000  # another agent's quota change applies here within this
QUOTA_SAMPLERS_MAX = 10_000  # rate samplers kept; past it the least recently used is forgotten
ORGS_REMEMBERED_MAX = 10_000  # orgs whose quotas are kept; past it the memo starts afresh
ANONYMOUS_USER = "ANONYMOUS"  # Kafka's principal name of an unauthenticated client
ORG_ENTITY: QuotaEntity = ()

OrgQuotas = dict[str, dict[QuotaEntity, float]]  # quota key -> entity -> value
SamplerKey = tuple[str, str, QuotaEntity]  # org, quota key, applied entity


@dataclass
class OrgTraffic:
    """One org's counters on this agent (exported on /metrics with an `org` label)."""

    produced_bytes: int = 0
    fetched_bytes: int = 0
    throttle_ms: int = 0


@dataclass(frozen=True)
class QuotaEntry:
    """One entity's configured quotas, as DescribeClientQuotas lists them."""

    entity: QuotaEntity
    values: Mapping[str, float]


@dataclass(frozen=True)
class QuotaAlteration:
    """Changes to one entity's quotas: key -> new value, or None to remove it."""

    entity: QuotaEntity
    changes: Mapping[str, float | None]


@dataclass(frozen=True)
class AlterOutcome:
    entity: QuotaEntity
    error: ErrorCode = ErrorCode.NONE
    message: str | None = None


class QuotaRefused(StreamHouseError):
    """A quota request Kafka answers INVALID_REQUEST: the message says what is wrong."""

    code = ErrorCode.INVALID_REQUEST


def client_of(principal: Principal | None) -> tuple[str, str]:
    """(org, user) a connection's requests count against: an unauthenticated one is the
    default org's anonymous user."""
    if principal is None:
        return DEFAULT_ORG, ANONYMOUS_USER
    return principal.org, principal.user


def applied_quota(
    values: Mapping[QuotaEntity, float], user: str, client_id: str
) -> tuple[QuotaEntity, float] | None:
    """The most specific configured quota of (user, client_id) with the entity its rate is
    kept for: the matched level, its default names replaced by the client's own."""
    names = {USER: user, CLIENT_ID: client_id}
    for level in quota_levels(user, client_id):
        value = values.get(level)
        if value is not None:
            return tuple((kind, names[kind]) for kind, _ in level), value
    return None


class QuotaService:
    """Every org's client quotas on this agent: configuration, rates and throttle times."""

    def __init__(
        self,
        store: TenancyStore,
        clock: Clock,
        *,
        refresh_interval_ms: int = QUOTA_REFRESH_INTERVAL_MS,
        samplers_max: int = QUOTA_SAMPLERS_MAX,
    ) -> None:
        self._store = store
        self._clock = clock
        self._refresh_interval_ms = refresh_interval_ms
        self._samplers_max = samplers_max
        self._configured: dict[str, tuple[int, asyncio.Future[OrgQuotas]]] = {}
        self._samplers: OrderedDict[SamplerKey, RateSampler] = OrderedDict()
        self.traffic: dict[str, OrgTraffic] = {}

    # --- configuration ----------------------------------------------------------------------

    async def configured(self, org: str) -> OrgQuotas:
        """The org's quotas as read at most `refresh_interval_ms` ago (one read shared by every
        caller meanwhile); a failed read keeps the quotas read before."""
        return await asyncio.shield(self._read_lately(org))  # a waiter cancelled: others wait

    def _read_lately(self, org: str) -> asyncio.Future[OrgQuotas]:
        """The org's quotas read at most `refresh_interval_ms` ago, or their read started now."""
        now_ms = self._clock.monotonic_ms()
        memo = self._configured.get(org)
        if memo is None or now_ms - memo[0] >= self._refresh_interval_ms:
            if len(self._configured) >= ORGS_REMEMBERED_MAX:
                self._configured.clear()
            before = memo[1] if memo is not None and memo[1].done() else None
            memo = (now_ms, asyncio.ensure_future(self._read(org, before)))
            self._configured[org] = memo
        return memo[1]

    def limits_known(self, org: str, key: str) -> bool:
        """Whether the org's quotas as last read set a quota of `key`, without waiting: what
        lets the door skip measuring what no quota limits. Quotas not read yet, or older
        than the refresh interval, are read meanwhile, for the next request to know."""
        read = self._read_lately(org)
        if not read.done() or read.exception() is not None:
            return False
        return bool(read.result().get(key))

    async def _read(self, org: str, before: asyncio.Future[OrgQuotas] | None) -> OrgQuotas:
        try:
            stored = await self._store.quotas(org)
        except StreamHouseError:
            if before is None or before.exception() is not None:
                return {}
            return before.result()  # the store is out: the last known quotas still apply
        values: OrgQuotas = {}
        for quota in stored:
            values.setdefault(quota.key, {})[quota.entity] = quota.value
        return values

    async def org_limits(self, org: str) -> Mapping[str, float]:
        """The org's own entity's values by key (its limits among them)."""
        configured = await self.configured(org)
        return {
            key: by_entity[ORG_ENTITY]
            for key, by_entity in configured.items()
            if ORG_ENTITY in by_entity
        }

    async def describe(
        self,
        org: str,
        actor: Principal | None,
        components: Sequence[FilterComponent] = (),
        strict: bool = False,
    ) -> list[QuotaEntry]:
        """The org's quotas matching the filter, fresh from the store. Anyone of the org may
        look (NotPermitted otherwise); QuotaRefused for a filter Kafka refuses."""
        if actor is not None and actor.org != org and not may_manage(actor, org):
            raise NotPermitted(f"{actor.kafka_name} may not describe org {org!r}'s quotas")
        try:
            check_filter(components)
        except InvalidQuota as invalid:
            raise QuotaRefused(str(invalid)) from None
        entries: dict[QuotaEntity, dict[str, float]] = {}
        for quota in await self._store.quotas(org):
            if matches(quota.entity, components, strict):
                entries.setdefault(quota.entity, {})[quota.key] = quota.value
        return [QuotaEntry(entity, values) for entity, values in entries.items()]

    async def alter(
        self,
        org: str,
        alterations: Sequence[QuotaAlteration],
        actor: Principal | None,
        validate_only: bool = False,
    ) -> list[AlterOutcome]:
        """Apply each valid alteration (all in one store transaction); one outcome per
        alteration. An org's admins set its clients' quotas; the org's own quotas and limits
        are set by those who manage orgs (the default org's admins)."""
        if org not in {known.name for known in await self._store.orgs()}:
            raise TenancyRefused(f"there is no org {org!r}")
        outcomes = [self._judge(org, alteration, actor) for alteration in alterations]
        changes = [
            QuotaChange(alteration.entity, key, value)
            for alteration, outcome in zip(alterations, outcomes, strict=True)
            if outcome.error == ErrorCode.NONE
            for key, value in alteration.changes.items()
        ]
        if changes and not validate_only:
            await self._store.alter_quotas(org, changes)
            self._configured.pop(org, None)  # this agent's own change applies at once
        return outcomes

    def _judge(
        self, org: str, alteration: QuotaAlteration, actor: Principal | None
    ) -> AlterOutcome:
        entity = alteration.entity
        try:
            require_manager(actor, org if entity else None)
            for key, value in alteration.changes.items():
                check_change(entity, key, value)
        except NotPermitted as refused:
            return AlterOutcome(entity, refused.code, str(refused))
        except InvalidQuota as invalid:
            return AlterOutcome(entity, ErrorCode.INVALID_REQUEST, str(invalid))
        return AlterOutcome(entity)

    # --- rates ------------------------------------------------------------------------------

    async def record(self, org: str, user: str, client_id: str, key: str, amount: float) -> int:
        """Count `amount` (bytes, or request-percentage units) against the quota of `key`
        applying to the client; the client's throttle time in ms (0 within its quota)."""
        traffic = self._traffic(org)
        if key == PRODUCER_BYTE_RATE:
            traffic.produced_bytes += int(amount)
        elif key == CONSUMER_BYTE_RATE:
            traffic.fetched_bytes += int(amount)
        applied = applied_quota((await self.configured(org)).get(key, {}), user, client_id)
        if applied is None:
            return 0
        entity, quota = applied
        now_ms = self._clock.monotonic_ms()
        sampler = self._sampler((org, key, entity))
        sampler.record(amount, now_ms)
        cap_ms = REQUEST_THROTTLE_MS_MAX if key == REQUEST_PERCENTAGE else THROTTLE_MS_MAX
        throttle = throttle_ms(
            sampler.rate_per_s(now_ms), quota, sampler.window_ms_total(now_ms), cap_ms
        )
        traffic.throttle_ms += throttle
        return throttle

    def _sampler(self, key: SamplerKey) -> RateSampler:
        sampler = self._samplers.get(key)
        if sampler is None:
            sampler = self._samplers[key] = RateSampler()
            if len(self._samplers) > self._samplers_max:
                self._samplers.popitem(last=False)
        else:
            self._samplers.move_to_end(key)
        return sampler

    @property
    def samplers_kept(self) -> int:
        return len(self._samplers)

    def _traffic(self, org: str) -> OrgTraffic:
        traffic = self.traffic.get(org)
        if traffic is None:
            traffic = self.traffic[org] = OrgTraffic()
        return traffic
