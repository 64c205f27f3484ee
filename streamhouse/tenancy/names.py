"""Org names, and the internal names that keep orgs' topics, groups and transactional ids apart.

An org's resource `name` is kept as `org:name`; the default org's resources keep their bare
names, so a single-tenant cluster reads exactly as before tenancy. ":" is the separator
because no legal Kafka topic name contains it (topic names are [a-zA-Z0-9._-]), so no topic
of the default org can pass for another org's. Group ids and transactional ids may contain
":", though: a default-org group `acme:orders` would read as org `acme`'s group `orders`, so
the default org refuses such names (`is_foreign_looking`) and `scoped` refuses them too.
"""

from __future__ import annotations

import re

DEFAULT_ORG = "default"  # the built-in org: the open, single-tenant cluster of before
ORG_SEPARATOR = ":"
ORG_NAME_MAX_CHARS = 64
_ORG_NAME = re.compile(r"[a-z][a-z0-9-]{0,63}")


class InvalidOrgName(ValueError):
    """An org name breaks the naming rules."""


def validate_org_name(name: str) -> None:
    """Raise InvalidOrgName unless `name` is 1-64 chars of [a-z0-9-] starting with a letter."""
    if not is_org_name(name):
        raise InvalidOrgName(
            f"invalid org name {name!r}: use 1-{ORG_NAME_MAX_CHARS} characters of a-z, 0-9"
            " and '-', starting with a letter"
        )


def is_org_name(name: str) -> bool:
    return _ORG_NAME.fullmatch(name) is not None


def scoped(org: str, name: str) -> str:
    """The internal name of the org's resource `name`."""
    if org == DEFAULT_ORG:
        if is_foreign_looking(name):
            raise ValueError(f"{name!r} would read as org {org_of(name)!r}'s resource")
        return name
    return f"{org}{ORG_SEPARATOR}{name}"


def unscoped(org: str, internal: str) -> str | None:
    """The name the org knows `internal` by; None when it belongs to another org."""
    owner = org_of(internal)
    if owner != org:
        return None
    if owner == DEFAULT_ORG:
        return internal
    return internal[len(owner) + len(ORG_SEPARATOR) :]


def org_of(internal: str) -> str:
    """The org an internal name belongs to."""
    prefix, separator, _ = internal.partition(ORG_SEPARATOR)
    if separator and prefix != DEFAULT_ORG and is_org_name(prefix):
        return prefix
    return DEFAULT_ORG


def is_foreign_looking(name: str) -> bool:
    """Whether a default-org name would read as another org's internal name."""
    return org_of(name) != DEFAULT_ORG
