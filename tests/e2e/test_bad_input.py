"""Bad input on the Kafka port: the offending connection is closed, nothing else is disturbed,
and acknowledged data stays readable."""

from __future__ import annotations

import socket
import struct

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.e2e.conftest import Agent

SOCKET_TIMEOUT_S = 10
GARBAGE = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # an HTTP client on the Kafka port
    struct.pack(">i", 0x7FFFFFF0) + b"\x00" * 16,  # a frame far over frame_bytes_max
    struct.pack(">i", -5),  # a negative size
    struct.pack(">ihhi", 10, 9999, 0, 1) + b"\x00\x00",  # an unknown API key
    struct.pack(">ihhi", 12, 3, 12, 1) + b"\xff\xff" + b"\x7f\xff\xff\xff",  # a lying body
]


def _closed_by_agent(agent: Agent, payload: bytes) -> bool:
    with socket.create_connection(("127.0.0.1", agent.port), timeout=SOCKET_TIMEOUT_S) as sock:
        sock.sendall(payload)
        try:
            return sock.recv(1024) == b""
        except ConnectionResetError:
            return True


def test_malformed_frames_close_only_their_connection(agent: Agent) -> None:
    producer = KafkaProducer(bootstrap_servers=agent.bootstrap, acks=1)
    before = producer.send("steady", value=b"before", partition=0).get(SOCKET_TIMEOUT_S)
    for payload in GARBAGE:
        assert _closed_by_agent(agent, payload), payload
    after = producer.send("steady", value=b"after", partition=0).get(SOCKET_TIMEOUT_S)
    producer.close()
    assert (before.offset, after.offset) == (0, 1)
    consumer = KafkaConsumer(
        bootstrap_servers=agent.bootstrap,
        group_id=None,
        consumer_timeout_ms=SOCKET_TIMEOUT_S * 1000,
    )
    consumer.assign([TopicPartition("steady", 0)])
    consumer.seek_to_beginning()
    values = [message.value for _, message in zip(range(2), consumer, strict=False)]
    consumer.close()
    assert values == [b"before", b"after"]
    assert agent.process.poll() is None
