"""The tenancy service's rules over every metadata store: orgs, issued keys and their SCRAM
credentials, revocation and the first admin."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from sim.clock import VirtualClock
from sim.rng import SeededRng
from streamhouse.engine.acls import AclService
from streamhouse.engine.authentication import Principal
from streamhouse.engine.tenancy import ROLE_ADMIN, ScramUpsertion, TenancyRefused, TenancyService
from streamhouse.errors import ErrorCode
from streamhouse.io.sql.store import SqlMetadataStore
from streamhouse.ports.tenancy import DEFAULT_ORG, AclBinding
from streamhouse.tenancy.acls import AclFilter
from streamhouse.tenancy.keys import secret_matches
from streamhouse.tenancy.scram import MECHANISMS, derive_scram
from tests.unit.metadata.builders import run

ITERATIONS = 4096


async def _inline(work: Callable[[], str]) -> str:
    return work()


def _service(store: SqlMetadataStore, seed: int = 3) -> TenancyService:
    return TenancyService(store, VirtualClock(), SeededRng(seed), _inline, ITERATIONS)


def _refused(call: Awaitable[object]) -> str:
    with pytest.raises(TenancyRefused) as refused:
        run(call)
    return str(refused.value)


def test_orgs_are_created_once_and_the_default_one_stays(store: SqlMetadataStore) -> None:
    tenancy = _service(store)
    assert run(tenancy.create_org("acme")).name == "acme"
    assert "exists already" in _refused(tenancy.create_org("acme"))
    assert _refused(tenancy.create_org("Not An Org!"))
    assert [org.name for org in run(tenancy.orgs())] == ["acme", DEFAULT_ORG]
    assert "cannot be deleted" in _refused(tenancy.delete_org(DEFAULT_ORG))
    run(tenancy.delete_org("acme"))
    assert "no org" in _refused(tenancy.delete_org("acme"))


def test_an_org_holding_topics_is_not_deleted(store: SqlMetadataStore) -> None:
    tenancy = TenancyService(store, VirtualClock(), SeededRng(3), _inline, ITERATIONS, store)
    run(tenancy.create_org("acme"))
    run(store.create_topic("acme:orders", 1, {}, 0))
    run(store.create_topic("orders", 1, {}, 0))  # the default org's: not acme's
    assert "still has 1 topic(s) (orders): delete them first" in _refused(
        tenancy.delete_org("acme")
    )
    run(store.delete_topic("acme:orders"))
    run(tenancy.delete_org("acme"))


def test_an_issued_key_authenticates_by_hash_and_by_every_scram_mechanism(
    store: SqlMetadataStore,
) -> None:
    tenancy = _service(store)
    run(tenancy.create_org("acme"))
    issued = run(tenancy.issue_key("acme"))
    [kept] = run(tenancy.keys("acme"))
    assert (kept.key_id, kept.org, kept.role) == (issued.key_id, "acme", "member")
    assert issued.secret not in kept.secret_hash
    assert secret_matches(kept.secret_hash, issued.secret)
    assert not secret_matches(kept.secret_hash, issued.secret + "x")
    credentials = run(store.scram_credentials(issued.key_id))
    assert sorted(c.mechanism for c in credentials) == sorted(MECHANISMS)
    for credential in credentials:
        derived = derive_scram(credential.mechanism, issued.secret, credential.salt, ITERATIONS)
        assert derived == (credential.stored_key, credential.server_key)
    other = run(tenancy.issue_key("acme", ROLE_ADMIN))
    assert other.key_id != issued.key_id and other.secret != issued.secret


def test_a_revoked_key_loses_its_scram_credentials(store: SqlMetadataStore) -> None:
    tenancy = _service(store)
    issued = run(tenancy.issue_key(DEFAULT_ORG))
    run(tenancy.revoke_key(issued.key_id))
    [kept] = run(tenancy.keys(DEFAULT_ORG))
    assert kept.revoked_ms is not None
    assert run(store.scram_credentials(issued.key_id)) == []
    assert "no live key" in _refused(tenancy.revoke_key(issued.key_id))


def test_keys_need_an_org_and_a_known_role(store: SqlMetadataStore) -> None:
    tenancy = _service(store)
    assert "create it first" in _refused(tenancy.issue_key("nowhere"))
    assert "role" in _refused(tenancy.issue_key(DEFAULT_ORG, "owner"))


def test_the_first_admin_is_issued_once(store: SqlMetadataStore) -> None:
    tenancy = _service(store)
    first = run(tenancy.first_admin())
    assert first is not None and (first.org, first.role) == (DEFAULT_ORG, ROLE_ADMIN)
    assert run(tenancy.first_admin()) is None


def test_scram_credentials_follow_kafka_s_rules(store: SqlMetadataStore) -> None:
    tenancy = _service(store)
    issued = run(tenancy.issue_key(DEFAULT_ORG))
    user = issued.key_id
    [described] = run(tenancy.describe_scram([user]))
    assert sorted(described.credentials) == [("SCRAM-SHA-256", 4096), ("SCRAM-SHA-512", 4096)]
    twice = run(tenancy.describe_scram([user, user]))
    assert [(d.user, d.error) for d in twice] == [(user, ErrorCode.DUPLICATE_RESOURCE)]
    [unknown] = run(tenancy.describe_scram(["SHNOBODY"]))
    assert unknown.error is ErrorCode.RESOURCE_NOT_FOUND
    salted = b"\x01" * 32
    few = ScramUpsertion(user, "SCRAM-SHA-256", 1024, b"salt" * 4, salted)
    outcomes = run(tenancy.alter_scram([], [few]))
    assert outcomes[user][0] is ErrorCode.UNACCEPTABLE_CREDENTIAL
    assert "Too few iterations" in str(outcomes[user][1])
    both = run(tenancy.alter_scram([(user, "SCRAM-SHA-256")], [few]))
    assert both[user][0] is ErrorCode.DUPLICATE_RESOURCE
    good = ScramUpsertion(user, "SCRAM-SHA-256", 8192, b"salt" * 4, salted)
    assert run(tenancy.alter_scram([(user, "SCRAM-SHA-512")], [])) == {user: (ErrorCode.NONE, None)}
    assert run(tenancy.alter_scram([], [good])) == {user: (ErrorCode.NONE, None)}
    assert run(tenancy.describe_scram([user]))[0].credentials == (("SCRAM-SHA-256", 8192),)
    again = run(tenancy.alter_scram([(user, "SCRAM-SHA-512")], []))
    assert again[user][0] is ErrorCode.RESOURCE_NOT_FOUND
    stranger = ScramUpsertion("SHNOBODY", "SCRAM-SHA-256", 8192, b"salt" * 4, salted)
    assert run(tenancy.alter_scram([], [stranger]))["SHNOBODY"][0] is ErrorCode.RESOURCE_NOT_FOUND
    [everyone] = run(tenancy.describe_scram(None))
    assert everyone.user == user


def test_acls_are_checked_kept_per_org_and_deleted_once(store: SqlMetadataStore) -> None:
    acls = AclService(store, VirtualClock())
    admin = Principal("acme", "SHADMIN", ROLE_ADMIN)
    run(_service(store).create_org("acme"))
    read = AclBinding(2, "orders", 3, "User:SHREADER", "*", 3, 3)
    wildcard_prefix = AclBinding(2, "*", 4, "User:SHREADER", "*", 3, 3)
    outcomes = run(acls.create([read, wildcard_prefix], admin))
    assert outcomes[0] == (ErrorCode.NONE, None)
    assert outcomes[1][0] is ErrorCode.INVALID_REQUEST
    everything = AclFilter()
    assert run(acls.describe(everything, admin)) == [read]
    assert run(acls.describe(everything, None)) == []  # the default org's, not acme's
    member = Principal("acme", "SHMEMBER", "member")
    [(code, _)] = run(acls.create([read], member))
    assert code is ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    twice = run(acls.delete([everything, AclFilter(resource_type=2)], admin))
    assert [d.bindings for d in twice] == [(read,), ()]
    assert run(acls.describe(everything, admin)) == []
