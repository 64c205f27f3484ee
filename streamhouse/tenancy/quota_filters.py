"""Which quota entities a DescribeClientQuotas filter matches, and which entities and quota
changes an alteration may name (Kafka's rules, plus the org's own entity `()`).

A filter is a list of components, one per entity type at most: EXACT matches one name, DEFAULT
the type's default entity, SPECIFIED any named (not default) entity of the type. `strict`
matches only entities of exactly the filtered types; otherwise entities may have more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from streamhouse.tenancy.quotas import (
    CLIENT_ID,
    ORG_LIMIT_KEYS,
    USER,
    InvalidQuota,
    QuotaEntity,
    check_quota_value,
)

MATCH_EXACT = 0
MATCH_DEFAULT = 1
MATCH_SPECIFIED = 2
ENTITY_TYPES = (CLIENT_ID, USER)


@dataclass(frozen=True)
class FilterComponent:
    entity_type: str
    match_type: int
    match: str | None = None


def check_filter(components: Sequence[FilterComponent]) -> None:
    """Raise InvalidQuota for a filter Kafka refuses: an unknown type or match type, a type
    named twice, an EXACT match without a name."""
    seen: set[str] = set()
    for component in components:
        _check_type(component.entity_type)
        if component.entity_type in seen:
            raise InvalidQuota(f"Duplicate filter component entity type {component.entity_type}")
        seen.add(component.entity_type)
        if component.match_type not in (MATCH_EXACT, MATCH_DEFAULT, MATCH_SPECIFIED):
            raise InvalidQuota(f"Unknown match type {component.match_type}")
        if component.match_type == MATCH_EXACT and component.match is None:
            raise InvalidQuota(f"An EXACT match of {component.entity_type} needs a name")


def matches(entity: QuotaEntity, components: Sequence[FilterComponent], strict: bool) -> bool:
    """Whether the filter (checked already) matches `entity`."""
    names = dict(entity)
    if strict and set(names) != {component.entity_type for component in components}:
        return False
    return all(
        component.entity_type in names and _component_matches(component, names)
        for component in components
    )


def _component_matches(component: FilterComponent, names: Mapping[str, str | None]) -> bool:
    name = names[component.entity_type]
    if component.match_type == MATCH_EXACT:
        return name == component.match
    if component.match_type == MATCH_DEFAULT:
        return name is None
    return name is not None


def entity_of(pairs: Sequence[tuple[str, str | None]]) -> QuotaEntity:
    """The canonical entity of (type, name) pairs; InvalidQuota for an unknown or repeated
    type or an empty name."""
    seen: dict[str, str | None] = {}
    for entity_type, name in pairs:
        _check_type(entity_type)
        if entity_type in seen:
            raise InvalidQuota(f"Duplicate quota entity type {entity_type}")
        if name == "":
            raise InvalidQuota(f"An empty {entity_type} name: name one, or use the default")
        seen[entity_type] = name
    return tuple(sorted(seen.items()))


def check_change(entity: QuotaEntity, key: str, value: float | None) -> None:
    """InvalidQuota unless `key` may be set to `value` (None: removed) on `entity`: a known key
    with a legal value, and an org limit only on the org's own entity."""
    if value is not None:
        check_quota_value(key, value)
    else:
        check_quota_value(key, 0)  # a removal still names a known key
    if key in ORG_LIMIT_KEYS and entity:
        raise InvalidQuota(f"{key} is a limit of the whole org: set it on the org, not a client")


def _check_type(entity_type: str) -> None:
    if entity_type not in ENTITY_TYPES:
        raise InvalidQuota(
            f"Unexpected quota entity type {entity_type!r} (known: {', '.join(ENTITY_TYPES)})"
        )
