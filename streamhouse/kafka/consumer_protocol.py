"""The consumer protocol's subscription metadata, which group members exchange through the
broker: only the topic list is read here (OffsetDelete refuses a topic the group still
subscribes to)."""

from __future__ import annotations

import struct


def subscribed_topics(metadata: bytes) -> set[str]:
    """The topics a consumer protocol subscription (any version) names; empty if unreadable.

    Layout: int16 version, int32 topic count, then each topic as int16 length + UTF-8.
    """
    try:
        (count,) = struct.unpack_from(">i", metadata, 2)
        position = 6
        topics = set()
        for _ in range(max(count, 0)):
            (length,) = struct.unpack_from(">h", metadata, position)
            position += 2
            if length < 0 or position + length > len(metadata):
                return set()
            topics.add(metadata[position : position + length].decode())
            position += length
        return topics
    except (struct.error, UnicodeDecodeError):
        return set()
