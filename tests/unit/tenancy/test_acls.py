"""Kafka's ACL model: the codes are Kafka's, CreateAcls refuses what Kafka refuses (with
Kafka's messages), filters select as AclBindingFilter does, and authorization follows
StandardAuthorizer: DENY wins, ALL covers everything, READ/WRITE/DELETE/ALTER imply DESCRIBE,
ALTER_CONFIGS implies DESCRIBE_CONFIGS."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.ports.tenancy import AclBinding
from streamhouse.tenancy.acls import (
    AclFilter,
    AclOperation,
    AclPermissionType,
    InvalidAcl,
    PatternType,
    ResourceType,
    allows_on_some_resource,
    authorize,
    check_binding,
    check_filter,
    matches_filter,
    may_write_idempotently,
)
from tests.property_budget import examples

Op = AclOperation
Perm = AclPermissionType
Res = ResourceType
Pat = PatternType
ALICE = "User:alice"


def acl(
    name: str = "orders",
    *,
    resource_type: int = Res.TOPIC,
    pattern_type: int = Pat.LITERAL,
    principal: str = ALICE,
    host: str = "*",
    operation: int = Op.READ,
    permission: int = Perm.ALLOW,
) -> AclBinding:
    return AclBinding(resource_type, name, pattern_type, principal, host, operation, permission)


def test_the_codes_are_kafkas() -> None:
    assert [(m.name, m.value) for m in Res] == [
        ("UNKNOWN", 0), ("ANY", 1), ("TOPIC", 2), ("GROUP", 3), ("CLUSTER", 4),
        ("TRANSACTIONAL_ID", 5), ("DELEGATION_TOKEN", 6), ("USER", 7),
    ]  # fmt: skip
    assert [(m.name, m.value) for m in Pat] == [
        ("UNKNOWN", 0), ("ANY", 1), ("MATCH", 2), ("LITERAL", 3), ("PREFIXED", 4),
    ]  # fmt: skip
    assert [(m.name, m.value) for m in Op] == [
        ("UNKNOWN", 0), ("ANY", 1), ("ALL", 2), ("READ", 3), ("WRITE", 4), ("CREATE", 5),
        ("DELETE", 6), ("ALTER", 7), ("DESCRIBE", 8), ("CLUSTER_ACTION", 9),
        ("DESCRIBE_CONFIGS", 10), ("ALTER_CONFIGS", 11), ("IDEMPOTENT_WRITE", 12),
        ("CREATE_TOKENS", 13), ("DESCRIBE_TOKENS", 14), ("TWO_PHASE_COMMIT", 15),
    ]  # fmt: skip
    assert [(m.name, m.value) for m in Perm] == [
        ("UNKNOWN", 0), ("ANY", 1), ("DENY", 2), ("ALLOW", 3),
    ]  # fmt: skip


def test_the_codes_agree_with_confluent_kafka() -> None:
    from confluent_kafka import admin

    for ours, theirs in (
        (Pat, admin.ResourcePatternType),
        (Op, admin.AclOperation),
        (Perm, admin.AclPermissionType),
        (Res, admin.ResourceType),  # librdkafka names CLUSTER "BROKER"
    ):
        for member in theirs:
            assert int(ours[member.name.replace("BROKER", "CLUSTER")]) == int(member.value)


# -- CreateAcls validation -------------------------------------------------------------------


def test_a_valid_binding_passes() -> None:
    check_binding(acl())
    check_binding(acl("orders-", pattern_type=Pat.PREFIXED, operation=Op.ALL))
    check_binding(acl("*", principal="User:*", permission=Perm.DENY))
    check_binding(acl("kafka-cluster", resource_type=Res.CLUSTER, operation=Op.IDEMPOTENT_WRITE))


@pytest.mark.parametrize(
    ("binding", "message"),
    [
        (acl(resource_type=Res.UNKNOWN), "Invalid resourceType UNKNOWN"),
        (acl(resource_type=Res.ANY), "Invalid resourceType ANY"),
        (acl(resource_type=99), "Invalid resourceType UNKNOWN"),
        (acl(pattern_type=Pat.ANY), "Invalid patternType ANY"),
        (acl(pattern_type=Pat.MATCH), "Invalid patternType MATCH"),
        (acl(pattern_type=Pat.UNKNOWN), "Invalid patternType UNKNOWN"),
        (acl(operation=Op.ANY), "Invalid operation ANY"),
        (acl(operation=Op.UNKNOWN), "Invalid operation UNKNOWN"),
        (acl(operation=42), "Invalid operation UNKNOWN"),
        (acl(permission=Perm.ANY), "Invalid permissionType ANY"),
        (acl(permission=Perm.UNKNOWN), "Invalid permissionType UNKNOWN"),
        (
            acl("my-cluster", resource_type=Res.CLUSTER),
            "The only valid name for the CLUSTER resource is kafka-cluster",
        ),
        (acl(""), "Invalid empty resource name"),
        (acl(principal="alice"), "Could not parse principal from `alice` \\(no colon"),
        (acl(principal="User:"), "expected a string in format principalType:principalName"),
        (acl(principal=":alice"), "expected a string in format principalType:principalName"),
        (acl(principal="Group:ops"), "Unsupported principal type `Group`"),
        (acl("*", pattern_type=Pat.PREFIXED), "A PREFIXED '\\*' matches no resource"),
    ],
)
def test_invalid_bindings_are_refused_with_kafkas_words(binding: AclBinding, message: str) -> None:
    with pytest.raises(InvalidAcl, match=message):
        check_binding(binding)


def test_invalid_acl_is_a_value_error() -> None:
    assert issubclass(InvalidAcl, ValueError)


def test_filters_with_unknown_elements_are_refused() -> None:
    check_filter(AclFilter())
    with pytest.raises(InvalidAcl, match=r"Unknown patternFilter\."):
        check_filter(AclFilter(resource_type=Res.UNKNOWN))
    with pytest.raises(InvalidAcl, match=r"Unknown patternFilter\."):
        check_filter(AclFilter(pattern_type=Pat.UNKNOWN))
    with pytest.raises(InvalidAcl, match=r"Unknown entryFilter\."):
        check_filter(AclFilter(operation=Op.UNKNOWN))
    with pytest.raises(InvalidAcl, match=r"Unknown entryFilter\."):
        check_filter(AclFilter(permission=99))


# -- Describe/DeleteAcls filters -------------------------------------------------------------


def test_the_any_filter_matches_everything() -> None:
    for binding in (acl(), acl("x-", pattern_type=Pat.PREFIXED), acl("*", permission=Perm.DENY)):
        assert matches_filter(binding, AclFilter())


def test_filter_fields_narrow() -> None:
    binding = acl("orders", host="10.0.0.1", operation=Op.WRITE)
    assert matches_filter(binding, AclFilter(resource_type=Res.TOPIC))
    assert not matches_filter(binding, AclFilter(resource_type=Res.GROUP))
    assert matches_filter(binding, AclFilter(principal=ALICE, host="10.0.0.1"))
    assert not matches_filter(binding, AclFilter(principal="User:bob"))
    assert not matches_filter(binding, AclFilter(host="*"))
    assert matches_filter(binding, AclFilter(operation=Op.WRITE, permission=Perm.ALLOW))
    assert not matches_filter(binding, AclFilter(operation=Op.READ))
    assert not matches_filter(binding, AclFilter(permission=Perm.DENY))


def test_a_filters_principal_is_compared_as_written() -> None:
    wildcard = acl(principal="User:*")
    assert matches_filter(wildcard, AclFilter(principal="User:*"))
    assert not matches_filter(wildcard, AclFilter(principal=ALICE))
    assert not matches_filter(acl(), AclFilter(principal="User:*"))


def test_literal_and_prefixed_filters_compare_names_exactly() -> None:
    prefixed = acl("ord", pattern_type=Pat.PREFIXED)
    assert matches_filter(prefixed, AclFilter(resource_name="ord", pattern_type=Pat.PREFIXED))
    assert not matches_filter(
        prefixed, AclFilter(resource_name="orders", pattern_type=Pat.PREFIXED)
    )
    assert not matches_filter(prefixed, AclFilter(resource_name="ord", pattern_type=Pat.LITERAL))
    assert matches_filter(prefixed, AclFilter(resource_name="ord"))  # ANY: exact name
    assert not matches_filter(prefixed, AclFilter(resource_name="orders"))
    assert not matches_filter(acl("*"), AclFilter(resource_name="orders", pattern_type=Pat.LITERAL))


def test_a_match_filter_selects_every_binding_that_applies_to_the_name() -> None:
    match = AclFilter(resource_name="orders", pattern_type=Pat.MATCH)
    assert matches_filter(acl("orders"), match)
    assert matches_filter(acl("*"), match)
    assert matches_filter(acl("ord", pattern_type=Pat.PREFIXED), match)
    assert matches_filter(acl("orders", pattern_type=Pat.PREFIXED), match)
    assert not matches_filter(acl("order"), match)
    assert not matches_filter(acl("ordersx", pattern_type=Pat.PREFIXED), match)
    assert not matches_filter(acl("*", pattern_type=Pat.PREFIXED), match)
    assert matches_filter(acl("x"), AclFilter(pattern_type=Pat.MATCH))  # no name: any


# -- authorization -------------------------------------------------------------------------


def allowed(
    bindings: list[AclBinding],
    operation: Op = Op.READ,
    name: str = "orders",
    *,
    resource_type: Res = Res.TOPIC,
) -> bool:
    return authorize(bindings, ALICE, "10.0.0.1", operation, resource_type, name)


def test_no_binding_allows_nothing() -> None:
    assert not allowed([])


def test_a_literal_allow_applies_to_its_resource_only() -> None:
    assert allowed([acl("orders")])
    assert not allowed([acl("orders")], name="orders2")
    assert not allowed([acl("orders")], resource_type=Res.GROUP)
    assert not allowed([acl("orders")], operation=Op.WRITE)


def test_the_wildcard_resource_and_prefixes_apply() -> None:
    assert allowed([acl("*")], name="anything")
    assert allowed([acl("ord", pattern_type=Pat.PREFIXED)])
    assert allowed([acl("orders", pattern_type=Pat.PREFIXED)])
    assert not allowed([acl("orders-", pattern_type=Pat.PREFIXED)])


def test_principal_and_host_wildcards() -> None:
    assert allowed([acl(principal="User:*")])
    assert not allowed([acl(principal="User:bob")])
    assert allowed([acl(host="10.0.0.1")])
    assert not allowed([acl(host="10.0.0.2")])
    assert authorize(
        [acl(principal="User:*", host="*")], "User:bob", "h", Op.READ, Res.TOPIC, "orders"
    )


def test_deny_wins_over_allow() -> None:
    assert not allowed([acl(), acl(permission=Perm.DENY)])
    assert not allowed([acl("*"), acl("ord", pattern_type=Pat.PREFIXED, permission=Perm.DENY)])
    assert not allowed([acl(), acl(principal="User:*", permission=Perm.DENY)])
    assert allowed([acl(), acl(principal="User:bob", permission=Perm.DENY)])


def test_all_covers_every_operation_both_ways() -> None:
    for operation in (Op.READ, Op.WRITE, Op.CREATE, Op.DESCRIBE, Op.ALTER_CONFIGS):
        assert allowed([acl(operation=Op.ALL)], operation)
        assert not allowed(
            [acl(operation=Op.ALL), acl(operation=Op.ALL, permission=Perm.DENY)], operation
        )
        assert not allowed(
            [acl(operation=Op.ALL), acl(operation=operation, permission=Perm.DENY)], operation
        )


@pytest.mark.parametrize("implying", [Op.READ, Op.WRITE, Op.DELETE, Op.ALTER])
def test_read_write_delete_and_alter_imply_describe(implying: Op) -> None:
    assert allowed([acl(operation=implying)], Op.DESCRIBE)
    # DENY implies nothing: denying READ leaves DESCRIBE to the allows.
    assert allowed(
        [acl(operation=Op.DESCRIBE), acl(operation=implying, permission=Perm.DENY)], Op.DESCRIBE
    )


def test_alter_configs_implies_describe_configs_only() -> None:
    assert allowed([acl(operation=Op.ALTER_CONFIGS)], Op.DESCRIBE_CONFIGS)
    assert not allowed([acl(operation=Op.ALTER_CONFIGS)], Op.DESCRIBE)
    assert not allowed([acl(operation=Op.CREATE)], Op.DESCRIBE)
    assert not allowed([acl(operation=Op.DESCRIBE)], Op.READ)


@pytest.mark.parametrize("operation", [Op.UNKNOWN, Op.ANY, Op.ALL])
def test_a_request_cannot_ask_for_wildcard_operations(operation: Op) -> None:
    with pytest.raises(ValueError, match="not an operation"):
        allowed([acl(operation=Op.ALL)], operation)


def test_idempotent_write_by_cluster_acl_or_write_on_some_topic() -> None:
    cluster = acl("kafka-cluster", resource_type=Res.CLUSTER, operation=Op.IDEMPOTENT_WRITE)
    assert may_write_idempotently([cluster], ALICE, "h")
    assert may_write_idempotently([acl("orders", operation=Op.WRITE)], ALICE, "h")
    assert may_write_idempotently(
        [acl("ord", pattern_type=Pat.PREFIXED, operation=Op.ALL)], ALICE, "h"
    )
    assert not may_write_idempotently([acl("orders", operation=Op.READ)], ALICE, "h")
    assert not may_write_idempotently([acl("orders", operation=Op.WRITE)], "User:bob", "h")
    assert not may_write_idempotently([], ALICE, "h")


def write(name: str, pattern_type: Pat = Pat.LITERAL) -> AclBinding:
    return acl(name, pattern_type=pattern_type, operation=Op.WRITE)


def deny_write(name: str, pattern_type: Pat = Pat.LITERAL) -> AclBinding:
    return acl(name, pattern_type=pattern_type, operation=Op.WRITE, permission=Perm.DENY)


def writes_somewhere(bindings: list[AclBinding]) -> bool:
    return allows_on_some_resource(bindings, ALICE, "h", Op.WRITE, Res.TOPIC)


def test_allows_on_some_resource_follows_authorize_by_resource_type() -> None:
    assert writes_somewhere([write("orders")])
    assert not writes_somewhere([write("orders"), deny_write("*")])
    assert not writes_somewhere([write("orders"), deny_write("orders")])
    assert not writes_somewhere([write("orders"), deny_write("or", Pat.PREFIXED)])
    assert writes_somewhere([write("orders"), deny_write("x", Pat.PREFIXED)])
    assert writes_somewhere([write("orders"), write("payments"), deny_write("orders")])
    # A literal deny leaves a prefixed allow of the same name alone (it allows other names).
    assert writes_somewhere([write("orders", Pat.PREFIXED), deny_write("orders")])
    assert not writes_somewhere([write("orders", Pat.PREFIXED), deny_write("ord", Pat.PREFIXED)])
    assert not writes_somewhere([acl("orders", operation=Op.READ)])


def test_ports_bindings_fit() -> None:
    binding = acl()
    assert dataclasses.is_dataclass(binding)
    check_binding(binding)


# -- properties ----------------------------------------------------------------------------

NAMES = st.sampled_from(["orders", "ord", "o", "payments", "*"])
BINDINGS = st.builds(
    acl,
    NAMES,
    resource_type=st.sampled_from([Res.TOPIC, Res.GROUP]),
    pattern_type=st.sampled_from([Pat.LITERAL, Pat.PREFIXED]),
    principal=st.sampled_from([ALICE, "User:bob", "User:*"]),
    host=st.sampled_from(["*", "10.0.0.1", "10.0.0.2"]),
    operation=st.sampled_from([op for op in Op if op not in (Op.UNKNOWN, Op.ANY)]),
    permission=st.sampled_from([Perm.ALLOW, Perm.DENY]),
)
QUESTIONS = st.tuples(
    st.sampled_from([ALICE, "User:bob"]),
    st.sampled_from(["10.0.0.1", "10.0.0.2"]),
    st.sampled_from([op for op in Op if op not in (Op.UNKNOWN, Op.ANY, Op.ALL)]),
    st.sampled_from([Res.TOPIC, Res.GROUP]),
    st.sampled_from(["orders", "ord", "payments", "x"]),
)


@given(bindings=st.lists(BINDINGS, max_size=8), extra=BINDINGS, question=QUESTIONS)
@settings(max_examples=examples(800))
def test_authorize_is_monotone(
    bindings: list[AclBinding], extra: AclBinding, question: tuple[str, str, Op, Res, str]
) -> None:
    before = authorize(bindings, *question)
    after = authorize([*bindings, extra], *question)
    if extra.permission == Perm.DENY:
        assert not (after and not before), "adding a DENY granted access"
    else:
        assert not (before and not after), "adding an ALLOW revoked access"


@given(bindings=st.lists(BINDINGS, max_size=8), question=QUESTIONS)
@settings(max_examples=examples(400))
def test_order_of_bindings_does_not_matter(
    bindings: list[AclBinding], question: tuple[str, str, Op, Res, str]
) -> None:
    assert authorize(bindings, *question) == authorize(list(reversed(bindings)), *question)


@given(binding=BINDINGS, question=QUESTIONS)
@settings(max_examples=examples(400))
def test_a_binding_that_grants_is_found_by_a_match_filter(
    binding: AclBinding, question: tuple[str, str, Op, Res, str]
) -> None:
    *_, resource_type, name = question
    if authorize([binding], *question):
        match = AclFilter(resource_type=resource_type, resource_name=name, pattern_type=Pat.MATCH)
        assert matches_filter(binding, match)
