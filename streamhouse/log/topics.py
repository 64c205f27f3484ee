"""Topic names: Kafka's rules, so every client and tool accepts what we accept."""

from __future__ import annotations

import re

from streamhouse.errors import InvalidTopic

TOPIC_NAME_CHARS_MAX = 249
_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")


def validate_topic_name(name: str) -> None:
    """Raise InvalidTopic unless `name` is a legal Kafka topic name."""
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
