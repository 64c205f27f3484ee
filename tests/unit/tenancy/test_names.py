"""Org names and the internal names that keep orgs apart: the default org's names stay bare,
every other org's carry `org:`, and no two orgs' names can collide."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from streamhouse.tenancy.names import (
    DEFAULT_ORG,
    ORG_SEPARATOR,
    InvalidOrgName,
    is_foreign_looking,
    org_of,
    scoped,
    unscoped,
    validate_org_name,
)
from tests.property_budget import examples

ORG_NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,63}", fullmatch=True)
ORGS = st.one_of(st.just(DEFAULT_ORG), ORG_NAMES)
# Group ids and transactional ids: any text, ":" included.
RESOURCE_NAMES = st.text(alphabet=st.sampled_from("abcAZ09._-:"), min_size=1, max_size=20)


@pytest.mark.parametrize("name", ["a", "default", "acme", "acme-2", "a" * 64, "x1-"])
def test_valid_org_names(name: str) -> None:
    validate_org_name(name)


@pytest.mark.parametrize(
    "name", ["", "1acme", "-acme", "Acme", "ac_me", "ac.me", "ac:me", "a" * 65, "acmé", "acme "]
)
def test_invalid_org_names(name: str) -> None:
    with pytest.raises(InvalidOrgName, match="invalid org name"):
        validate_org_name(name)


def test_invalid_org_name_is_a_value_error() -> None:
    assert issubclass(InvalidOrgName, ValueError)


def test_the_separator_is_a_colon_no_topic_name_can_hold() -> None:
    assert ORG_SEPARATOR == ":"


def test_the_default_org_keeps_bare_names() -> None:
    assert scoped(DEFAULT_ORG, "orders") == "orders"
    assert unscoped(DEFAULT_ORG, "orders") == "orders"
    assert org_of("orders") == DEFAULT_ORG


def test_another_org_prefixes_its_names() -> None:
    assert scoped("acme", "orders") == "acme:orders"
    assert org_of("acme:orders") == "acme"
    assert unscoped("acme", "acme:orders") == "orders"
    assert unscoped("acme", "orders") is None
    assert unscoped(DEFAULT_ORG, "acme:orders") is None
    assert unscoped("other", "acme:orders") is None


def test_names_of_another_org_may_hold_colons() -> None:
    assert scoped("acme", "app:group") == "acme:app:group"
    assert unscoped("acme", "acme:app:group") == "app:group"


def test_default_org_names_that_read_as_another_orgs_are_foreign_looking() -> None:
    assert is_foreign_looking("acme:orders")
    assert not is_foreign_looking("orders")
    assert not is_foreign_looking("Acme:orders")  # no org is named Acme
    assert not is_foreign_looking("my_app:orders")
    assert not is_foreign_looking("default:orders")  # the default org has no prefix
    assert not is_foreign_looking(":orders")
    with pytest.raises(ValueError, match="org 'acme'"):
        scoped(DEFAULT_ORG, "acme:orders")


def test_colon_names_that_name_no_org_stay_the_default_orgs() -> None:
    for name in ("Acme:orders", "default:orders", ":x", "1x:y", "a_b:c"):
        assert scoped(DEFAULT_ORG, name) == name
        assert org_of(name) == DEFAULT_ORG
        assert unscoped(DEFAULT_ORG, name) == name


@given(org=ORGS, name=RESOURCE_NAMES)
@settings(max_examples=examples(400))
def test_scoped_and_unscoped_round_trip(org: str, name: str) -> None:
    assume(not (org == DEFAULT_ORG and is_foreign_looking(name)))
    internal = scoped(org, name)
    assert org_of(internal) == org
    assert unscoped(org, internal) == name


@given(orgs=st.tuples(ORGS, ORGS), names=st.tuples(RESOURCE_NAMES, RESOURCE_NAMES))
@settings(max_examples=examples(400))
def test_no_two_orgs_names_collide(orgs: tuple[str, str], names: tuple[str, str]) -> None:
    (org_a, org_b), (name_a, name_b) = orgs, names
    assume(org_a != org_b)
    for org, name in ((org_a, name_a), (org_b, name_b)):
        assume(not (org == DEFAULT_ORG and is_foreign_looking(name)))
    assert scoped(org_a, name_a) != scoped(org_b, name_b)


@given(org=ORG_NAMES, internal=RESOURCE_NAMES)
@settings(max_examples=examples(400))
def test_unscoped_answers_only_for_the_owner(org: str, internal: str) -> None:
    name = unscoped(org, internal)
    assert (name is not None) == (org_of(internal) == org)
    if name is not None:
        assert scoped(org, name) == internal
