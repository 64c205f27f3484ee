"""The tenancy port: every adapter keeps orgs, API keys, SCRAM credentials, ACLs and quotas
alike, deletes an org with everything of it, and agents adding the same things at once all
succeed with each thing kept once."""

from __future__ import annotations

from typing import Any

import pytest

from sim.metadata import MetadataFaults, SimMetadataStore
from sim.rng import SeededRng
from streamhouse.errors import MetadataUnavailable, MetadataUnknownOutcome
from streamhouse.io.sql.store import SqlMetadataStore
from streamhouse.ports.metadata import MetadataStore
from streamhouse.ports.tenancy import (
    DEFAULT_ORG,
    AclBinding,
    ApiKey,
    KeyTaken,
    Org,
    QuotaChange,
    QuotaValue,
    ScramCredential,
)
from tests.unit.metadata.builders import T0_MS, all_at_once, run

TOPIC, GROUP = 2, 3  # Kafka's resource types
LITERAL, PREFIXED = 3, 4  # Kafka's pattern types
READ, WRITE = 3, 4  # Kafka's operations
DENY, ALLOW = 2, 3  # Kafka's permissions
SHA256, SHA512 = "SCRAM-SHA-256", "SCRAM-SHA-512"


def api_key(key_id: str, org: str, role: str = "member", created_ms: int = T0_MS) -> ApiKey:
    return ApiKey(key_id, org, role, f"hash-of-{key_id}", created_ms)


def credential(user: str, org: str, mechanism: str = SHA256, seed: int = 0) -> ScramCredential:
    """Bytes of every value, NULs and high bits included, so nothing is read as text."""
    return ScramCredential(
        user=user,
        org=org,
        mechanism=mechanism,
        salt=bytes([0, 255, seed, 10, 13]),
        iterations=4096 + seed,
        stored_key=bytes(range(seed, seed + 32)),
        server_key=bytes(range(255 - seed, 223 - seed, -1)),
    )


def acl(name: str, principal: str = "User:SHK1", operation: int = READ) -> AclBinding:
    return AclBinding(TOPIC, name, LITERAL, principal, "*", operation, ALLOW)


def with_orgs(store: MetadataStore, *names: str) -> None:
    for name in names:
        assert run(store.create_org(name, T0_MS))


# ---------------------------------------------------------------- orgs


def test_a_new_store_has_the_default_org_alone(store: MetadataStore) -> None:
    assert run(store.orgs()) == [Org(DEFAULT_ORG, 0)]


def test_an_org_is_created_once_and_listed_by_name(store: MetadataStore) -> None:
    assert run(store.create_org("zeta", T0_MS))
    assert run(store.create_org("Acme", T0_MS + 1))
    assert run(store.create_org("acme-eu", T0_MS + 2))
    assert not run(store.create_org("zeta", T0_MS + 3)), "exists already"
    assert not run(store.create_org(DEFAULT_ORG, T0_MS))
    assert run(store.orgs()) == [
        Org("Acme", T0_MS + 1),
        Org("acme-eu", T0_MS + 2),
        Org(DEFAULT_ORG, 0),
        Org("zeta", T0_MS),
    ]


def test_deleting_an_org_takes_everything_of_it_and_nothing_else(store: MetadataStore) -> None:
    with_orgs(store, "acme", "globex")
    for org in ("acme", "globex"):
        run(store.add_key(api_key(f"{org}-key", org)))
        run(store.set_scram_credential(credential(f"{org}-key", org)))
        run(store.add_acls(org, [acl("orders")]))
        run(store.alter_quotas(org, [QuotaChange((), "producer_byte_rate", 1024.0)]))
    assert run(store.delete_org("acme"))
    assert not run(store.delete_org("acme")), "gone already"
    assert not run(store.delete_org("never-was"))
    assert [org.name for org in run(store.orgs())] == [DEFAULT_ORG, "globex"]
    assert run(store.key("acme-key")) is None
    assert [key.key_id for key in run(store.keys())] == ["globex-key"]
    assert [c.user for c in run(store.scram_credentials())] == ["globex-key"]
    assert run(store.acls("acme")) == [] and run(store.acls("globex")) == [acl("orders")]
    assert run(store.quotas("acme")) == []
    assert run(store.quotas("globex")) == [QuotaValue((), "producer_byte_rate", 1024.0)]
    assert run(store.create_org("acme", T0_MS + 9)), "the name may be used again"
    assert run(store.keys("acme")) == [] and run(store.acls("acme")) == []


def test_the_store_deletes_even_the_default_org(store: MetadataStore) -> None:
    """Keeping `default` is the tenancy service's rule, not the store's."""
    assert run(store.delete_org(DEFAULT_ORG))
    assert run(store.orgs()) == []


# ---------------------------------------------------------------- keys


def test_keys_are_kept_as_given_and_listed_by_org_then_id(store: MetadataStore) -> None:
    with_orgs(store, "acme", "Beta")
    added = [
        api_key("SHK9", "acme", "admin"),
        api_key("SHK1", "acme"),
        api_key("SHK5", "Beta", created_ms=T0_MS + 5),
        api_key("SHK0", DEFAULT_ORG),
    ]
    for key in added:
        run(store.add_key(key))
    assert run(store.key("SHK9")) == added[0]
    assert run(store.key("SHK-missing")) is None
    assert [k.key_id for k in run(store.keys())] == ["SHK5", "SHK1", "SHK9", "SHK0"]
    assert run(store.keys("acme")) == [added[1], added[0]]
    assert run(store.keys("nobody")) == []


def test_a_taken_key_id_is_refused_and_the_first_key_kept(store: MetadataStore) -> None:
    with_orgs(store, "acme", "globex")
    first = api_key("SHK1", "acme", "admin")
    run(store.add_key(first))
    with pytest.raises(KeyTaken):
        run(store.add_key(api_key("SHK1", "globex")))
    with pytest.raises(KeyTaken):
        run(store.add_key(first))
    assert run(store.keys()) == [first]


def test_a_revoked_key_stays_known_and_loses_its_scram_credentials(
    store: MetadataStore,
) -> None:
    with_orgs(store, "acme")
    run(store.add_key(api_key("SHK1", "acme")))
    run(store.add_key(api_key("SHK2", "acme")))
    for user in ("SHK1", "SHK2"):
        for mechanism in (SHA256, SHA512):
            run(store.set_scram_credential(credential(user, "acme", mechanism)))
    assert run(store.revoke_key("SHK1", T0_MS + 7))
    assert not run(store.revoke_key("SHK1", T0_MS + 8)), "revoked already"
    assert not run(store.revoke_key("SHK-missing", T0_MS))
    revoked = run(store.key("SHK1"))
    assert revoked is not None and revoked.revoked_ms == T0_MS + 7, "the first revocation's time"
    assert run(store.scram_credentials("SHK1")) == []
    assert [(c.user, c.mechanism) for c in run(store.scram_credentials())] == [
        ("SHK2", SHA256),
        ("SHK2", SHA512),
    ]
    live = run(store.key("SHK2"))
    assert live is not None and live.revoked_ms is None


# ---------------------------------------------------------------- SCRAM credentials


def test_scram_credentials_keep_their_bytes_and_are_replaced_per_mechanism(
    store: MetadataStore,
) -> None:
    with_orgs(store, "acme")
    run(store.set_scram_credential(credential("SHK2", "acme", SHA512, seed=1)))
    run(store.set_scram_credential(credential("SHK2", "acme", SHA256, seed=2)))
    run(store.set_scram_credential(credential("SHK1", "acme", SHA256, seed=3)))
    run(store.set_scram_credential(credential("SHK2", "acme", SHA256, seed=4)))  # replaces seed 2
    assert run(store.scram_credentials()) == [
        credential("SHK1", "acme", SHA256, seed=3),
        credential("SHK2", "acme", SHA256, seed=4),
        credential("SHK2", "acme", SHA512, seed=1),
    ]
    assert run(store.scram_credentials("SHK1")) == [credential("SHK1", "acme", SHA256, seed=3)]
    assert run(store.delete_scram_credential("SHK2", SHA256))
    assert not run(store.delete_scram_credential("SHK2", SHA256))
    assert not run(store.delete_scram_credential("nobody", SHA512))
    assert run(store.scram_credentials("SHK2")) == [credential("SHK2", "acme", SHA512, seed=1)]


def test_empty_scram_bytes_come_back_empty(store: MetadataStore) -> None:
    empty = ScramCredential("SHK1", DEFAULT_ORG, SHA256, b"", 1, b"", b"")
    run(store.set_scram_credential(empty))
    assert run(store.scram_credentials("SHK1")) == [empty]


# ---------------------------------------------------------------- ACLs


def test_acls_are_kept_once_per_org_in_a_stable_order(store: MetadataStore) -> None:
    with_orgs(store, "acme", "globex")
    bindings = [
        acl("orders", operation=WRITE),
        acl("orders"),
        AclBinding(GROUP, "billing", PREFIXED, "User:*", "*", READ, DENY),
        acl("Orders"),
        acl("orders", principal="User:SHK0"),
    ]
    run(store.add_acls("acme", bindings))
    run(store.add_acls("acme", [bindings[1], bindings[1], acl("audit")]))  # kept once each
    run(store.add_acls("acme", []))
    run(store.add_acls("globex", [bindings[0]]))
    listed = run(store.acls("acme"))
    assert sorted(listed, key=repr) == sorted([*bindings, acl("audit")], key=repr)
    assert listed == run(store.acls("acme")), "the same order every time"
    assert listed[0] == acl("Orders"), "by resource type, then name by code point"
    assert run(store.acls("globex")) == [bindings[0]]
    assert run(store.acls("nobody")) == []


def test_removing_acls_counts_exactly_the_bindings_removed(store: MetadataStore) -> None:
    with_orgs(store, "acme", "globex")
    run(store.add_acls("acme", [acl("a"), acl("b"), acl("c")]))
    run(store.add_acls("globex", [acl("a")]))
    gone = run(store.remove_acls("acme", [acl("a"), acl("a"), acl("b", operation=WRITE)]))
    assert gone == 1, "a binding named twice is one; a near miss is none"
    assert run(store.remove_acls("acme", [])) == 0
    assert run(store.acls("acme")) == [acl("b"), acl("c")]
    assert run(store.acls("globex")) == [acl("a")], "another org's binding stays"
    assert run(store.remove_acls("acme", [acl("b"), acl("c"), acl("z")])) == 2
    assert run(store.acls("acme")) == []


# ---------------------------------------------------------------- quotas

ALICE = (("user", "alice"),)
ALICE_APP = (("client-id", "app"), ("user", "alice"))
USERS_DEFAULT = (("user", None),)


def test_quotas_are_set_replaced_and_removed_in_one_call(store: MetadataStore) -> None:
    with_orgs(store, "acme")
    run(
        store.alter_quotas(
            "acme",
            [
                QuotaChange(ALICE, "producer_byte_rate", 1e6),
                QuotaChange(ALICE, "consumer_byte_rate", 2e6),
                QuotaChange(USERS_DEFAULT, "producer_byte_rate", 1024.0),
                QuotaChange((), "request_percentage", 12.5),
                QuotaChange(ALICE_APP, "producer_byte_rate", 0.1),
            ],
        )
    )
    run(
        store.alter_quotas(
            "acme",
            [
                QuotaChange(ALICE, "producer_byte_rate", 3e6),  # replaced
                QuotaChange(ALICE, "consumer_byte_rate", None),  # removed
                QuotaChange(ALICE, "request_percentage", None),  # never set: nothing
            ],
        )
    )
    assert run(store.quotas("acme")) == [
        QuotaValue((), "request_percentage", 12.5),
        QuotaValue(ALICE_APP, "producer_byte_rate", 0.1),
        QuotaValue(USERS_DEFAULT, "producer_byte_rate", 1024.0),
        QuotaValue(ALICE, "producer_byte_rate", 3e6),
    ]
    assert run(store.quotas(DEFAULT_ORG)) == []


def test_a_quota_set_then_removed_in_one_call_is_gone(store: MetadataStore) -> None:
    with_orgs(store, "acme")
    change = QuotaChange(ALICE, "producer_byte_rate", 5.0)
    run(store.alter_quotas("acme", [change, QuotaChange(ALICE, "producer_byte_rate", None)]))
    assert run(store.quotas("acme")) == []
    run(store.alter_quotas("acme", [QuotaChange(ALICE, "producer_byte_rate", None), change]))
    assert run(store.quotas("acme")) == [QuotaValue(ALICE, "producer_byte_rate", 5.0)]


def test_an_entity_is_one_whatever_the_order_of_its_pairs(store: MetadataStore) -> None:
    with_orgs(store, "acme")
    reversed_pairs = (("user", "alice"), ("client-id", "app"))
    run(store.alter_quotas("acme", [QuotaChange(reversed_pairs, "producer_byte_rate", 1.0)]))
    run(store.alter_quotas("acme", [QuotaChange(ALICE_APP, "producer_byte_rate", 2.0)]))
    assert run(store.quotas("acme")) == [QuotaValue(ALICE_APP, "producer_byte_rate", 2.0)]


def test_a_failed_alteration_changes_nothing(store: MetadataStore) -> None:
    """Every change of a call, or none: a change that cannot be kept fails the whole call
    after the changes before it were made."""
    run(store.alter_quotas(DEFAULT_ORG, [QuotaChange((), "producer_byte_rate", 1.0)]))
    unkeepable: Any = (("user", b"not a name"),)
    with pytest.raises(TypeError):
        run(
            store.alter_quotas(
                DEFAULT_ORG,
                [
                    QuotaChange((), "producer_byte_rate", 2.0),
                    QuotaChange((), "consumer_byte_rate", 3.0),
                    QuotaChange(unkeepable, "producer_byte_rate", 4.0),
                ],
            )
        )
    assert run(store.quotas(DEFAULT_ORG)) == [QuotaValue((), "producer_byte_rate", 1.0)]


# ---------------------------------------------------------------- faults


def test_the_simulator_faults_tenancy_calls_like_any_other() -> None:
    store = SimMetadataStore(SeededRng(1), MetadataFaults(unavailable_rate=1.0))
    with pytest.raises(MetadataUnavailable):
        run(store.orgs())
    with pytest.raises(MetadataUnavailable):
        run(store.create_org("acme", T0_MS))
    store.faults = MetadataFaults(unknown_outcome_rate=1.0)
    with pytest.raises(MetadataUnknownOutcome):  # applied, its outcome lost
        run(store.create_org("acme", T0_MS))
    with pytest.raises(MetadataUnknownOutcome):
        run(store.add_acls("acme", [acl("orders")]))
    store.faults = MetadataFaults()
    assert [org.name for org in run(store.orgs())] == ["acme", DEFAULT_ORG]
    assert run(store.acls("acme")) == [acl("orders")]
    run(store.close())


# ---------------------------------------------------------------- agents at once

WORKERS = 8


def test_agents_adding_the_same_things_at_once_all_succeed(sql_store: SqlMetadataStore) -> None:
    """Every worker creates the same org, adds the same ACLs (and one of its own), sets the
    same quota and the same SCRAM credential: one creation wins, nothing fails, each thing is
    kept once."""
    shared = [acl("orders"), acl("payments", operation=WRITE)]

    def worker(index: int) -> bool:
        created = run(sql_store.create_org("acme", T0_MS + index))
        run(sql_store.add_acls("acme", [*shared, acl(f"own-{index}")]))
        run(sql_store.add_acls(DEFAULT_ORG, shared))
        change = QuotaChange(ALICE, "producer_byte_rate", float(index))
        run(sql_store.alter_quotas("acme", [change]))
        run(sql_store.set_scram_credential(credential("SHK1", "acme", seed=index)))
        return created

    created = all_at_once([lambda index=index: worker(index) for index in range(WORKERS)])
    assert created.count(True) == 1, created
    [acme] = [org for org in run(sql_store.orgs()) if org.name == "acme"]
    assert acme.created_ms == T0_MS + created.index(True), "the winner's row"
    own = [acl(f"own-{index}") for index in range(WORKERS)]
    assert sorted(run(sql_store.acls("acme")), key=repr) == sorted([*shared, *own], key=repr)
    assert sorted(run(sql_store.acls(DEFAULT_ORG)), key=repr) == sorted(shared, key=repr)
    [quota] = run(sql_store.quotas("acme"))
    assert quota.value in {float(index) for index in range(WORKERS)}
    [kept] = run(sql_store.scram_credentials())
    assert kept in {credential("SHK1", "acme", seed=index) for index in range(WORKERS)}


def test_agents_adding_one_key_id_at_once_see_it_taken(sql_store: SqlMetadataStore) -> None:
    with_orgs(sql_store, "acme")

    def worker(index: int) -> str:
        try:
            run(sql_store.add_key(api_key("SHK1", "acme", created_ms=T0_MS + index)))
        except KeyTaken:
            return "taken"
        return "added"

    outcomes = all_at_once([lambda index=index: worker(index) for index in range(WORKERS)])
    assert sorted(outcomes) == ["added"] + ["taken"] * (WORKERS - 1)
    assert len(run(sql_store.keys("acme"))) == 1
