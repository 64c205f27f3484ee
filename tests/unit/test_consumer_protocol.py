"""The consumer protocol's Subscription and Assignment codecs: round trips, the bytes real
clients write, tolerance of versions and terse messages, refusal of broken ones."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.errors import ErrorCode
from streamhouse.kafka.consumer_protocol import (
    SUBSCRIPTION_VERSION_MAX,
    Assignment,
    MalformedConsumerProtocol,
    Subscription,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
    subscribed_topics,
)
from streamhouse.names import TopicPartition
from tests.property_budget import examples


def _subscription(version: int, topics: list[str], tail: bytes = b"") -> bytes:
    encoded = b"".join(struct.pack(">h", len(t.encode())) + t.encode() for t in topics)
    user_data = struct.pack(">i", -1)  # null user data
    return struct.pack(">hi", version, len(topics)) + encoded + user_data + tail


def test_every_version_names_its_topics() -> None:
    assert subscribed_topics(_subscription(0, ["orders", "payments"])) == {"orders", "payments"}
    owned = struct.pack(">i", 1) + struct.pack(">h", 6) + b"orders" + struct.pack(">ii", 1, 0)
    generation_and_rack = struct.pack(">i", 4) + struct.pack(">h", -1)
    assert subscribed_topics(_subscription(3, ["orders"], owned + generation_and_rack)) == {
        "orders"
    }


def test_unreadable_metadata_names_nothing() -> None:
    assert subscribed_topics(b"") == set()
    assert subscribed_topics(struct.pack(">hi", 0, 1_000_000) + b"\x00\x03ab") == set()
    assert subscribed_topics(struct.pack(">hi", 0, 1) + b"\x00\x02\xff\xfe") == set()
    assert subscribed_topics(struct.pack(">hi", 0, 1) + b"\x00\x05abc") == set()  # cut short


# --- the codecs -------------------------------------------------------------------------------

names = st.text(st.characters(codec="utf-8"), max_size=12)
partition_lists = st.lists(st.builds(TopicPartition, names, st.integers(0, 2**31 - 1)), max_size=8)
optional_bytes = st.none() | st.binary(max_size=32)


def _grouped(partitions: list[TopicPartition]) -> tuple[TopicPartition, ...]:
    """The order the encoder writes: by topic in first-seen order, then as given."""
    order = list(dict.fromkeys(tp.topic for tp in partitions))
    return tuple(sorted(partitions, key=lambda tp: order.index(tp.topic)))


@settings(max_examples=examples(200))
@given(
    version=st.integers(0, SUBSCRIPTION_VERSION_MAX),
    topics=st.lists(names, max_size=6),
    user_data=optional_bytes,
    owned=partition_lists,
    generation=st.integers(-1, 2**31 - 1),
    rack_id=st.none() | names,
)
def test_a_subscription_reads_back_as_written(
    version: int,
    topics: list[str],
    user_data: bytes | None,
    owned: list[TopicPartition],
    generation: int,
    rack_id: str | None,
) -> None:
    written = Subscription(tuple(topics), user_data, _grouped(owned), generation, rack_id)
    read = decode_subscription(encode_subscription(written, version))
    assert read.topics == written.topics and read.user_data == user_data
    assert read.owned_partitions == (written.owned_partitions if version >= 1 else ())
    assert read.generation == (generation if version >= 2 else -1)
    assert read.rack_id == (rack_id if version >= 3 else None)


@settings(max_examples=examples(200))
@given(version=st.integers(0, 3), partitions=partition_lists, user_data=optional_bytes)
def test_an_assignment_reads_back_as_written(
    version: int, partitions: list[TopicPartition], user_data: bytes | None
) -> None:
    written = Assignment(_grouped(partitions), user_data)
    assert decode_assignment(encode_assignment(written, version)) == written


def test_kafka_python_subscription_bytes() -> None:
    """ConsumerProtocolMemberMetadata as kafka-python and aiokafka write it (hand-checked:
    version 0, one topic "t1", empty user data)."""
    sent = bytes.fromhex("0000000000010002743100000000")
    assert decode_subscription(sent) == Subscription(("t1",), b"")


def test_java_v1_subscription_with_owned_partitions() -> None:
    """Version 1 as the Java client writes it with cooperative rebalancing: topics, null user
    data, then owned partitions (hand-checked: "ab" partitions 0 and 2)."""
    sent = bytes.fromhex("00010000000100026162ffffffff0000000100026162000000020000000000000002")
    read = decode_subscription(sent)
    assert read.topics == ("ab",) and read.user_data is None
    assert read.owned_partitions == (TopicPartition("ab", 0), TopicPartition("ab", 2))


def test_a_newer_version_is_read_for_the_fields_we_know() -> None:
    later = encode_subscription(Subscription(("t",), None, (), 7, "rack-a"), 3) + b"\x01\x02\x03"
    newer = struct.pack(">h", 9) + later[2:]
    assert decode_subscription(newer) == Subscription(("t",), None, (), 7, "rack-a")


def test_a_terse_subscription_without_user_data_is_read() -> None:
    assert decode_subscription(struct.pack(">hi", 0, 1) + b"\x00\x01x") == Subscription(("x",))


def test_an_empty_assignment_is_no_partitions() -> None:
    assert decode_assignment(b"") == Assignment(())
    java_empty = bytes.fromhex("000100000000ffffffff")
    assert decode_assignment(java_empty) == Assignment(())


def test_kafka_python_assignment_bytes() -> None:
    """ConsumerProtocolMemberAssignment as kafka-python writes it: version 0, topic "t1"
    partitions 1 and 3, empty user data."""
    sent = bytes.fromhex("0000000000010002743100000002000000010000000300000000")
    assert decode_assignment(sent) == Assignment(
        (TopicPartition("t1", 1), TopicPartition("t1", 3)), b""
    )


def test_malformed_messages_are_refused_with_a_kafka_code() -> None:
    for broken in (b"\x00", b"\x00\x00\x00\x00\x00\x02\x00\x01", b"\x00\x00\xff\xff\xff\xff\xff"):
        with pytest.raises(MalformedConsumerProtocol) as refused:
            decode_assignment(broken)
        assert refused.value.code is ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    with pytest.raises(MalformedConsumerProtocol):
        decode_subscription(struct.pack(">hi", 0, 1) + struct.pack(">h", -1))  # null topic
