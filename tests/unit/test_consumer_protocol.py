"""The consumer protocol subscription decoding OffsetDelete relies on."""

from __future__ import annotations

import struct

from streamhouse.kafka.consumer_protocol import subscribed_topics


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
