"""Topic names and partition counts: Kafka's rules, so every client and tool accepts what we
accept, and a bound on partitions per topic."""

from __future__ import annotations

import re

from streamhouse.errors import InvalidPartitions, InvalidTopic
from streamhouse.tenancy.names import org_of, unscoped

TOPIC_NAME_CHARS_MAX = 249
_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")


def validate_topic_name(internal: str) -> None:
    """Raise InvalidTopic unless `internal` is an org's legal Kafka topic name (`org:name` for
    an org other than the default, tenancy/names.py): Kafka's rules hold for the part the org's
    clients name."""
    org = org_of(internal)
    name = unscoped(org, internal)
    assert name is not None, internal
    if not name:
        raise InvalidTopic("topic name is empty")
    if name in (".", ".."):
        raise InvalidTopic(f"topic name {name!r} is reserved")
    if len(name) > TOPIC_NAME_CHARS_MAX:
        raise InvalidTopic(f"topic name is {len(name)} characters; at most {TOPIC_NAME_CHARS_MAX}")
    if not _LEGAL.fullmatch(name):
        raise InvalidTopic(
            f"topic name {name!r} may only hold ASCII letters, digits, '.', '_', '-'"
        )


def validate_partition_count(count: int, partitions_max: int) -> None:
    """Raise InvalidPartitions unless a topic may have `count` partitions."""
    if not 1 <= count <= partitions_max:
        raise InvalidPartitions(
            f"a topic has 1 to {partitions_max} partitions (topic_partitions_max), not {count}"
        )
