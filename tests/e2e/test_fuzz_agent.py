"""Random and mutated frames against a running agent: each lands on its own connection, which
the agent answers, closes or keeps waiting on; a client connected the whole time keeps
working, acknowledged data stays readable and the agent exits cleanly afterwards."""

from __future__ import annotations

import socket
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.e2e.conftest import start_agent
from tests.fixtures.kafka_wire import VALID_FRAMES

SOCKET_TIMEOUT_S = 5
RESPONSE_BYTES_MAX = 1 << 20
FUZZ_EXAMPLES = 150
QUIET_S = 0.2


def _exchange(port: int, payload: bytes) -> None:
    """Send, then read until the agent closes or stays quiet for `QUIET_S` (it waits for more)."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S) as sock:
        try:
            sock.sendall(payload)
            sock.settimeout(QUIET_S)
            received = 0
            while received < RESPONSE_BYTES_MAX:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                received += len(chunk)
        except (ConnectionResetError, BrokenPipeError, TimeoutError):
            return


def test_fuzzed_frames_never_disturb_the_agent(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "data")
    producer = KafkaProducer(bootstrap_servers=agent.bootstrap, acks=1)
    sent = [producer.send("steady", value=b"before", partition=0).get(SOCKET_TIMEOUT_S)]

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        st.one_of(
            st.binary(max_size=200),
            st.tuples(
                st.sampled_from(VALID_FRAMES),
                st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
                st.integers(-8, 8),
            ).map(_mutated),
        )
    )
    def one_exchange(payload: bytes) -> None:
        _exchange(agent.port, payload)
        assert agent.process.poll() is None, "the agent died"

    try:
        one_exchange()
        sent.append(producer.send("steady", value=b"after", partition=0).get(SOCKET_TIMEOUT_S))
        producer.close()
        consumer = KafkaConsumer(
            bootstrap_servers=agent.bootstrap,
            group_id=None,
            consumer_timeout_ms=SOCKET_TIMEOUT_S * 1000,
        )
        consumer.assign([TopicPartition("steady", 0)])
        consumer.seek(TopicPartition("steady", 0), sent[0].offset)
        values = [message.value for _, message in zip(range(2), consumer, strict=False)]
        consumer.close()
        assert values == [b"before", b"after"]
        assert sent[1].offset == sent[0].offset + 1
    finally:
        assert agent.stop() == 0


def _mutated(spec: tuple[bytes, list[tuple[int, int]], int]) -> bytes:
    valid, flips, cut = spec
    data = bytearray(valid)
    for position, value in flips:
        data[position % len(data)] = value
    return bytes(data[:cut] if cut < 0 else data + bytes(cut))
