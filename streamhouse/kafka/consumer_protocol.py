"""The consumer protocol's member metadata and assignments, which group members exchange through
the broker's JoinGroup and SyncGroup as opaque bytes: Subscription and Assignment codecs.

Both are Kafka's classic (non-flexible) encoding: int16 version, then int16-length strings,
int32-count arrays and int32-length nullable bytes. Later versions only append fields, so a
reader takes the fields of the versions it knows and ignores what follows (Kafka's own
forward compatibility), and fields missing at the end (older or terse clients) keep their
defaults.

Subscription: v0 topics, user data; v1 + owned partitions; v2 + generation; v3 + rack.
Assignment: v0-v3 assigned partitions, user data.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from streamhouse.errors import Blame, ErrorCode, StreamHouseError
from streamhouse.kafka.sentinels import NO_GENERATION
from streamhouse.names import TopicPartition

SUBSCRIPTION_VERSION_MAX = 3  # the newest version `encode_subscription` writes
ASSIGNMENT_VERSION_MAX = 3
OWNED_PARTITIONS_VERSION_MIN = 1
GENERATION_VERSION_MIN = 2
RACK_VERSION_MIN = 3
ARRAY_LENGTH_MAX = 1_000_000  # a count beyond this is corrupt, not a real subscription
NULL_LENGTH = -1


class MalformedConsumerProtocol(StreamHouseError):
    """Member metadata or an assignment that is not a readable consumer protocol message."""

    code = ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    blame = Blame.REMOTE


@dataclass(frozen=True)
class Subscription:
    """What a consumer group member subscribes to (its JoinGroup protocol metadata)."""

    topics: tuple[str, ...]
    user_data: bytes | None = None
    owned_partitions: tuple[TopicPartition, ...] = ()
    generation: int = NO_GENERATION
    rack_id: str | None = None


@dataclass(frozen=True)
class Assignment:
    """The partitions a leader gives a member (its SyncGroup assignment)."""

    partitions: tuple[TopicPartition, ...]
    user_data: bytes | None = None


# --- reading ------------------------------------------------------------------------------


class _Reader:
    """Reads classic-encoded fields from a buffer; a read past the end is malformed."""

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._position = 0
        self._what = what

    def at_end(self) -> bool:
        return self._position >= len(self._data)

    def _unpack(self, layout: str) -> int:
        size = struct.calcsize(layout)
        if self._position + size > len(self._data):
            raise self._malformed("cut short")
        (value,) = struct.unpack_from(layout, self._data, self._position)
        self._position += size
        return int(value)

    def int16(self) -> int:
        return self._unpack(">h")

    def int32(self) -> int:
        return self._unpack(">i")

    def _raw(self, length: int) -> bytes:
        if self._position + length > len(self._data):
            raise self._malformed(f"a field of {length} bytes runs past the end")
        raw = self._data[self._position : self._position + length]
        self._position += length
        return raw

    def nullable_string(self) -> str | None:
        length = self.int16()
        if length < 0:
            return None
        try:
            return self._raw(length).decode()
        except UnicodeDecodeError as error:
            raise self._malformed("a string is not UTF-8") from error

    def string(self) -> str:
        text = self.nullable_string()
        if text is None:
            raise self._malformed("a required string is null")
        return text

    def nullable_bytes(self) -> bytes | None:
        length = self.int32()
        return None if length < 0 else self._raw(length)

    def count(self) -> int:
        """An array's length; null (-1) reads as empty."""
        length = self.int32()
        if length > ARRAY_LENGTH_MAX:
            raise self._malformed(f"an array of {length} entries (at most {ARRAY_LENGTH_MAX})")
        return max(length, 0)

    def topic_partitions(self) -> tuple[TopicPartition, ...]:
        found: list[TopicPartition] = []
        for _ in range(self.count()):
            topic = self.string()
            found += [TopicPartition(topic, self.int32()) for _ in range(self.count())]
        return tuple(found)

    def _malformed(self, why: str) -> MalformedConsumerProtocol:
        return MalformedConsumerProtocol(
            f"{self._what} is not a consumer protocol message ({why} at byte {self._position} "
            f"of {len(self._data)}); the member's client must send Kafka's consumer protocol"
        )


def decode_subscription(metadata: bytes) -> Subscription:
    """A member's subscription from its protocol metadata, any version; raises
    MalformedConsumerProtocol if it cannot be read."""
    reader = _Reader(metadata, "member metadata")
    version = reader.int16()
    topics = tuple(reader.string() for _ in range(reader.count()))
    user_data = None if reader.at_end() else reader.nullable_bytes()
    owned: tuple[TopicPartition, ...] = ()
    generation = NO_GENERATION
    rack_id = None
    if version >= OWNED_PARTITIONS_VERSION_MIN and not reader.at_end():
        owned = reader.topic_partitions()
    if version >= GENERATION_VERSION_MIN and not reader.at_end():
        generation = reader.int32()
    if version >= RACK_VERSION_MIN and not reader.at_end():
        rack_id = reader.nullable_string()
    return Subscription(topics, user_data, owned, generation, rack_id)


def decode_assignment(assignment: bytes) -> Assignment:
    """A member's assignment from SyncGroup's bytes, any version; empty bytes (a leader that
    gave the member nothing, or a failed rebalance) are an empty assignment. Raises
    MalformedConsumerProtocol if it cannot be read."""
    if not assignment:
        return Assignment(())
    reader = _Reader(assignment, "assignment")
    reader.int16()  # every version has the same fields
    partitions = reader.topic_partitions()
    user_data = None if reader.at_end() else reader.nullable_bytes()
    return Assignment(partitions, user_data)


def subscribed_topics(metadata: bytes) -> set[str]:
    """The topics a consumer protocol subscription (any version) names; empty if unreadable
    (OffsetDelete refuses a topic the group still subscribes to)."""
    try:
        return set(decode_subscription(metadata).topics)
    except MalformedConsumerProtocol:
        return set()


# --- writing ------------------------------------------------------------------------------


def _string(text: str) -> bytes:
    encoded = text.encode()
    return struct.pack(">h", len(encoded)) + encoded


def _nullable_string(text: str | None) -> bytes:
    return struct.pack(">h", NULL_LENGTH) if text is None else _string(text)


def _nullable_bytes(data: bytes | None) -> bytes:
    return struct.pack(">i", NULL_LENGTH) if data is None else struct.pack(">i", len(data)) + data


def _topic_partitions(partitions: Iterable[TopicPartition]) -> bytes:
    """Grouped by topic in first-seen order, partitions in the order given."""
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    parts = [struct.pack(">i", len(by_topic))]
    for topic, indexes in by_topic.items():
        parts += [_string(topic), struct.pack(f">i{len(indexes)}i", len(indexes), *indexes)]
    return b"".join(parts)


def encode_subscription(subscription: Subscription, version: int = 0) -> bytes:
    """Protocol metadata for JoinGroup. Version 0 (the default) is read by every client a
    leader may run (kafka-python and aiokafka read no later fields); a field the version
    does not carry is left out."""
    assert 0 <= version <= SUBSCRIPTION_VERSION_MAX, f"subscription version {version}"
    parts = [
        struct.pack(">hi", version, len(subscription.topics)),
        *(_string(topic) for topic in subscription.topics),
        _nullable_bytes(subscription.user_data),
    ]
    if version >= OWNED_PARTITIONS_VERSION_MIN:
        parts.append(_topic_partitions(subscription.owned_partitions))
    if version >= GENERATION_VERSION_MIN:
        parts.append(struct.pack(">i", subscription.generation))
    if version >= RACK_VERSION_MIN:
        parts.append(_nullable_string(subscription.rack_id))
    return b"".join(parts)


def encode_assignment(assignment: Assignment, version: int = 0) -> bytes:
    """A member's assignment for SyncGroup (every version has the same fields)."""
    assert 0 <= version <= ASSIGNMENT_VERSION_MAX, f"assignment version {version}"
    return (
        struct.pack(">h", version)
        + _topic_partitions(assignment.partitions)
        + _nullable_bytes(assignment.user_data)
    )


def encode_assignments(
    assignments: Mapping[str, Iterable[TopicPartition]],
) -> dict[str, bytes]:
    """Every member's assignment bytes (version 0, no user data), partitions sorted."""
    return {
        member_id: encode_assignment(Assignment(tuple(sorted(partitions))))
        for member_id, partitions in assignments.items()
    }
