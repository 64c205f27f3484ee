"""The quota service over a real tenancy store and virtual time: Kafka's precedence and shared
samplers, how closely a throttled client tracks its quota, refreshes, the sampler bound, who
may alter what, describe filters; and the org limits (partitions, stored bytes)."""

from __future__ import annotations

import pytest

from sim.clock import VirtualClock
from streamhouse.engine.authentication import Principal
from streamhouse.engine.org_limits import OrgLimitExceeded, OrgLimits
from streamhouse.engine.quotas import QUOTA_REFRESH_INTERVAL_MS, QuotaAlteration, QuotaService
from streamhouse.engine.tenancy import ROLE_ADMIN, ROLE_MEMBER
from streamhouse.errors import ErrorCode
from streamhouse.io.sql.store import SqlMetadataStore
from streamhouse.ports.tenancy import DEFAULT_ORG
from streamhouse.tenancy.quota_filters import (
    MATCH_DEFAULT,
    MATCH_EXACT,
    MATCH_SPECIFIED,
    FilterComponent,
)
from streamhouse.tenancy.quotas import (
    CLIENT_ID,
    PRODUCER_BYTE_RATE,
    REQUEST_PERCENTAGE,
    REQUEST_THROTTLE_MS_MAX,
    USER,
)
from tests.unit.metadata.builders import run

RATE = 10_000.0  # bytes/s
BATCH_BYTES = 2_000
SEND_MS = 5  # a client's time to send a request when it is not throttled
ACME_ADMIN = Principal("acme", "SHKADMIN", ROLE_ADMIN)
OPERATOR = Principal(DEFAULT_ORG, "SHKOPERATOR", ROLE_ADMIN)


@pytest.fixture(params=["sqlite", "sim"])
def backend(request: pytest.FixtureRequest) -> str:
    """The quota rules over two stores (the store's own conformance covers PostgreSQL)."""
    return str(request.param)


def _set(
    quotas: QuotaService,
    org: str,
    entity: tuple[tuple[str, str | None], ...],
    **values: float | None,
) -> None:
    [outcome] = run(quotas.alter(org, [QuotaAlteration(entity, values)], None))
    assert outcome.error == ErrorCode.NONE, outcome


def _with_org(store: SqlMetadataStore, org: str = "acme") -> None:
    assert run(store.create_org(org, 0))


def test_clients_of_a_user_quota_share_its_rate_and_others_go_free(
    store: SqlMetadataStore,
) -> None:
    clock = VirtualClock()
    quotas = QuotaService(store, clock)
    _set(quotas, DEFAULT_ORG, ((USER, "alice"),), producer_byte_rate=RATE)

    async def burst() -> tuple[int, int, int]:
        # 11 s of quota in one instant, split over two of alice's clients
        first = await quotas.record(DEFAULT_ORG, "alice", "one", PRODUCER_BYTE_RATE, RATE * 6)
        second = await quotas.record(DEFAULT_ORG, "alice", "two", PRODUCER_BYTE_RATE, RATE * 6)
        bob = await quotas.record(DEFAULT_ORG, "bob", "one", PRODUCER_BYTE_RATE, RATE * 100)
        return first, second, bob

    first, second, bob = run(burst())
    assert first == 0 and second > 0  # together they passed the 10 s the rate counts at least
    assert bob == 0
    assert quotas.traffic[DEFAULT_ORG].produced_bytes == RATE * 112
    assert quotas.traffic[DEFAULT_ORG].throttle_ms == second


def test_a_default_user_quota_keeps_a_rate_per_user(store: SqlMetadataStore) -> None:
    quotas = QuotaService(store, VirtualClock())
    _set(quotas, DEFAULT_ORG, ((USER, None),), producer_byte_rate=RATE)

    async def two_users() -> list[int]:
        return [
            await quotas.record(DEFAULT_ORG, user, "c", PRODUCER_BYTE_RATE, RATE * 10)
            for user in ("alice", "bob")
        ]

    assert run(two_users()) == [0, 0]


def _throttled_rate(quotas: QuotaService, clock: VirtualClock, duration_ms: int) -> float:
    """Bytes/s a client sending as fast as it may achieves over `duration_ms`, waiting out every
    throttle it is given (as KIP-219's muted connection makes it)."""

    async def send() -> float:
        sent = 0
        start_ms = clock.monotonic_ms()
        while clock.monotonic_ms() - start_ms < duration_ms:
            sent += BATCH_BYTES
            throttle = await quotas.record("acme", "u", "c", PRODUCER_BYTE_RATE, BATCH_BYTES)
            clock.advance_ms(SEND_MS + throttle)
        return sent * 1000 / (clock.monotonic_ms() - start_ms)

    return run(send())


def test_a_throttled_client_tracks_its_quota(store: SqlMetadataStore) -> None:
    _with_org(store)
    clock = VirtualClock()
    quotas = QuotaService(store, clock)
    _set(quotas, "acme", ((CLIENT_ID, "c"),), producer_byte_rate=RATE)
    # Unthrottled it would send BATCH_BYTES per SEND_MS: 40x the quota
    ratio = _throttled_rate(quotas, clock, 120_000) / RATE
    assert 0.95 <= ratio <= 1.15, ratio  # virtual time: no machine slowness in it


def test_another_agents_change_applies_after_the_refresh_interval(
    store: SqlMetadataStore,
) -> None:
    clock = VirtualClock()
    here, there = QuotaService(store, clock), QuotaService(store, clock)
    big = RATE * 100

    async def throttle() -> int:
        return await here.record(DEFAULT_ORG, "u", "c", PRODUCER_BYTE_RATE, big)

    assert run(throttle()) == 0
    _set(there, DEFAULT_ORG, ((CLIENT_ID, "c"),), producer_byte_rate=RATE)
    assert run(throttle()) == 0  # not read yet
    clock.advance_ms(QUOTA_REFRESH_INTERVAL_MS)
    assert run(throttle()) > 0
    _set(here, DEFAULT_ORG, ((CLIENT_ID, "c"),), producer_byte_rate=None)
    assert run(throttle()) == 0  # this agent's own change applies at once


def test_the_least_recently_used_samplers_are_forgotten_past_the_bound(
    store: SqlMetadataStore,
) -> None:
    quotas = QuotaService(store, VirtualClock(), samplers_max=2)
    _set(quotas, DEFAULT_ORG, ((CLIENT_ID, None),), producer_byte_rate=RATE)

    async def clients() -> None:
        for client_id in ("a", "b", "c"):
            await quotas.record(DEFAULT_ORG, "u", client_id, PRODUCER_BYTE_RATE, 1)

    run(clients())
    assert quotas.samplers_kept == 2


def test_a_request_share_throttle_is_at_most_one_window(store: SqlMetadataStore) -> None:
    quotas = QuotaService(store, VirtualClock())
    _set(quotas, DEFAULT_ORG, (), request_percentage=10)

    async def heavy() -> int:
        return await quotas.record(DEFAULT_ORG, "u", "c", REQUEST_PERCENTAGE, 10_000)

    assert run(heavy()) == REQUEST_THROTTLE_MS_MAX


def _outcome(
    quotas: QuotaService,
    actor: Principal | None,
    entity: tuple[tuple[str, str | None], ...],
    **v: float,
) -> tuple[ErrorCode, str | None]:
    [outcome] = run(quotas.alter("acme", [QuotaAlteration(entity, v)], actor))
    return outcome.error, outcome.message


def test_org_admins_set_their_clients_quotas_and_operators_the_orgs(
    store: SqlMetadataStore,
) -> None:
    _with_org(store)
    quotas = QuotaService(store, VirtualClock())
    user = ((USER, "alice"),)
    assert _outcome(quotas, ACME_ADMIN, user, producer_byte_rate=RATE)[0] == ErrorCode.NONE
    member = Principal("acme", "SHKMEMBER", ROLE_MEMBER)
    assert _outcome(quotas, member, user, producer_byte_rate=1)[0] == (
        ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    )
    assert _outcome(quotas, ACME_ADMIN, (), org_partitions=1000)[0] == (
        ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    )
    assert _outcome(quotas, OPERATOR, (), org_partitions=10)[0] == ErrorCode.NONE
    code, message = _outcome(quotas, OPERATOR, user, org_partitions=10)
    assert code == ErrorCode.INVALID_REQUEST and "whole org" in (message or "")
    code, message = _outcome(quotas, OPERATOR, user, producer_bytes=10)
    assert code == ErrorCode.INVALID_REQUEST and "Unknown quota key" in (message or "")
    code, message = _outcome(quotas, OPERATOR, user, producer_byte_rate=-1)
    assert code == ErrorCode.INVALID_REQUEST and ">= 0" in (message or "")
    stored = {(q.entity, q.key): q.value for q in run(store.quotas("acme"))}
    assert stored == {(user, PRODUCER_BYTE_RATE): RATE, ((), "org_partitions"): 10}


def test_describe_filters_as_kafka_does(store: SqlMetadataStore) -> None:
    quotas = QuotaService(store, VirtualClock())
    entities = [
        ((USER, "alice"),),
        ((USER, None),),
        ((CLIENT_ID, "app"), (USER, "alice")),
        ((CLIENT_ID, None),),
    ]
    for entity in entities:
        _set(quotas, DEFAULT_ORG, entity, producer_byte_rate=RATE)

    def described(strict: bool, *components: FilterComponent) -> set[object]:
        found = run(quotas.describe(DEFAULT_ORG, None, components, strict))
        return {entry.entity for entry in found}

    alice = FilterComponent(USER, MATCH_EXACT, "alice")
    assert described(False, alice) == {entities[0], entities[2]}
    assert described(True, alice) == {entities[0]}
    assert described(True, FilterComponent(USER, MATCH_DEFAULT)) == {entities[1]}
    assert described(False, FilterComponent(USER, MATCH_SPECIFIED)) == {entities[0], entities[2]}
    assert described(False) == set(entities)
    outsider = Principal("acme", "SHKX", ROLE_ADMIN)
    with pytest.raises(Exception, match="may not describe"):
        run(quotas.describe(DEFAULT_ORG, outsider))


def test_an_org_may_not_pass_its_partition_or_storage_limits(store: SqlMetadataStore) -> None:
    _with_org(store)
    clock = VirtualClock()
    quotas = QuotaService(store, clock)
    limits = OrgLimits(quotas, clock, store, store)
    run(store.create_topic("acme:orders", 3, {}, 0))
    run(store.create_topic("big", 100, {}, 0))  # the default org's: not counted for acme
    _set(quotas, "acme", (), org_partitions=4, org_storage_bytes=1_000)
    run(limits.check_partitions("acme:more", 1))
    with pytest.raises(OrgLimitExceeded, match=r"at most 4 partitions.*has 3.*2 more") as refused:
        run(limits.check_partitions("acme:more", 2))
    assert refused.value.code == ErrorCode.POLICY_VIOLATION
    run(limits.check_storage("acme:orders", 600))
    with pytest.raises(OrgLimitExceeded, match=r"stores 600 bytes.*at most 1000"):
        run(limits.check_storage("acme:orders", 600))
    run(limits.check_storage("big", 10_000))  # the default org has no limit
