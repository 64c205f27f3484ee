"""Quotas at the Kafka door of an agent run in the test process, with real clients: a producer
over its producer_byte_rate is answered with throttle_time_ms and slowed (its throughput stays
under a generous bound; no lower bound on speed) while another client goes unthrottled;
Describe/AlterClientQuotas round trips (confluent-kafka, kafka-python and aiokafka expose no
client-quota admin call, so the agent's own Kafka client sends them); the org's partition
limit refuses a CreateTopics with POLICY_VIOLATION."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streamhouse.errors import ErrorCode
from streamhouse.io.kafka_client import KafkaClient
from streamhouse.kafka.apis import ApiKey
from tests.unit.sasl_world import AgentThread, agent_settings

QUOTA_BYTES_PER_S = 20_000
# Kafka's rate counts at least 10 windows of 1 s, so a young client may send 10 s of its
# quota at once; past that burst it is throttled request by request
BURST_BYTES = 10 * QUOTA_BYTES_PER_S
SENT_BYTES = BURST_BYTES + 2 * QUOTA_BYTES_PER_S
VALUE_BYTES = 1_000
# Generous (the throttled tail runs near the quota; without throttling a local producer
# sends it all in well under a second): a slow machine only sends slower
TAIL_THROUGHPUT_MAX_BYTES_PER_S = 2 * QUOTA_BYTES_PER_S
CLIENT_TIMEOUT_S = 60
CLIENT_ID = "client-id"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    directory: Path = tmp_path_factory.mktemp("quotas")
    started = AgentThread(agent_settings(directory / "data", "PLAINTEXT"), None).start()
    yield started
    started.stop()


def _call(agent: AgentThread, api: ApiKey, values: dict[str, Any]) -> Any:
    with KafkaClient("127.0.0.1", agent.port, CLIENT_TIMEOUT_S) as client:
        return client.call(api, values)


def _alter(agent: AgentThread, entity: list[tuple[str, str | None]], **ops: float | None) -> Any:
    entry = {
        "entity": [{"entity_type": kind, "entity_name": name} for kind, name in entity],
        "ops": [
            {"key": key, "value": value or 0.0, "remove": value is None}
            for key, value in ops.items()
        ],
    }
    return _call(agent, ApiKey.ALTER_CLIENT_QUOTAS, {"entries": [entry], "validate_only": False})


def produce_timed(config: dict[str, Any], topic: str) -> tuple[float, int]:
    """(seconds a producer of `config` takes to send SENT_BYTES, the largest throttle time it
    was told)."""
    throttles = [0]
    producer = Producer(
        {
            **config,
            "linger.ms": 5,
            # requests of 10 KB: a throttle holds back the next request, so one request of
            # everything would pass whole
            "batch.size": 10 * VALUE_BYTES,
            "throttle_cb": lambda event: throttles.append(int(event.throttle_time * 1000)),
        }
    )
    value = b"q" * VALUE_BYTES
    started = time.monotonic()
    for _ in range(SENT_BYTES // VALUE_BYTES):
        producer.produce(topic, value)
        producer.poll(0)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0
    return time.monotonic() - started, max(throttles)


@pytest.mark.slow  # in make test-all: make test stays under 3 minutes
def test_a_producer_over_its_quota_is_throttled_and_another_is_not(agent: AgentThread) -> None:
    answer = _alter(agent, [(CLIENT_ID, "throttled")], producer_byte_rate=QUOTA_BYTES_PER_S)
    assert [entry.error_code for entry in answer.entries] == [ErrorCode.NONE]
    topic = "quota-" + uuid.uuid4().hex[:8]
    config = {"bootstrap.servers": agent.bootstrap}
    elapsed_s, throttle_ms = produce_timed({**config, "client.id": "throttled"}, topic)
    assert throttle_ms > 0
    assert (SENT_BYTES - BURST_BYTES) / elapsed_s < TAIL_THROUGHPUT_MAX_BYTES_PER_S, elapsed_s
    _, free_throttle_ms = produce_timed({**config, "client.id": "free"}, topic)
    assert free_throttle_ms == 0


def test_client_quotas_are_described_and_refused_as_kafka_does(agent: AgentThread) -> None:
    _alter(agent, [("user", "alice"), (CLIENT_ID, "app")], consumer_byte_rate=5_000)
    described = _call(
        agent,
        ApiKey.DESCRIBE_CLIENT_QUOTAS,
        {
            "components": [{"entity_type": "user", "match_type": 0, "match": "alice"}],
            "strict": True,
        },
    )
    assert described.error_code == ErrorCode.NONE and described.entries == ()
    loose = _call(
        agent,
        ApiKey.DESCRIBE_CLIENT_QUOTAS,
        {
            "components": [{"entity_type": "user", "match_type": 0, "match": "alice"}],
            "strict": False,
        },
    )
    [entry] = loose.entries
    assert {(e.entity_type, e.entity_name) for e in entry.entity} == {
        ("user", "alice"),
        (CLIENT_ID, "app"),
    }
    assert [(v.key, v.value) for v in entry.values] == [("consumer_byte_rate", 5_000.0)]
    refused = _alter(agent, [("user", "alice")], producer_bytes_per_s=1)
    [result] = refused.entries
    assert result.error_code == ErrorCode.INVALID_REQUEST
    assert "Unknown quota key" in (result.error_message or "")
    bad_filter = _call(
        agent,
        ApiKey.DESCRIBE_CLIENT_QUOTAS,
        {"components": [{"entity_type": "group", "match_type": 2, "match": None}], "strict": False},
    )
    assert bad_filter.error_code == ErrorCode.INVALID_REQUEST and bad_filter.entries is None


def test_the_orgs_partition_limit_refuses_a_create_topics(agent: AgentThread) -> None:
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    listed = admin.list_topics(timeout=CLIENT_TIMEOUT_S).topics.values()
    count = sum(len(topic.partitions) for topic in listed)
    _alter(agent, [], org_partitions=count + 2)
    try:
        refused = admin.create_topics([NewTopic("too-big-" + uuid.uuid4().hex[:8], 3)])
        [future] = refused.values()
        with pytest.raises(KafkaException) as error:
            future.result(CLIENT_TIMEOUT_S)
        kafka_error = error.value.args[0]
        assert kafka_error.code() == ErrorCode.POLICY_VIOLATION
        assert f"at most {count + 2} partitions" in kafka_error.str()
        created = admin.create_topics([NewTopic("fits-" + uuid.uuid4().hex[:8], 2)])
        [future] = created.values()
        future.result(CLIENT_TIMEOUT_S)
    finally:
        _alter(agent, [], org_partitions=None)


@pytest.mark.slow  # in make test-all: make test stays under 3 minutes
def test_a_client_over_its_request_time_share_is_muted(agent: AgentThread) -> None:
    """A share no request fits in (a millionth of a thread): every request of that client id
    is over it, so the agent counts throttle time for it; another client id is not measured."""
    assert agent.agent is not None
    quotas = agent.agent.kafka.context.quotas
    assert quotas is not None
    answer = _alter(agent, [(CLIENT_ID, "busy")], request_percentage=0.0001)
    assert [entry.error_code for entry in answer.entries] == [ErrorCode.NONE]
    before_ms = quotas.traffic["default"].throttle_ms if "default" in quotas.traffic else 0
    admin = AdminClient({"bootstrap.servers": agent.bootstrap, "client.id": "busy"})
    for _ in range(3):
        admin.list_topics(timeout=CLIENT_TIMEOUT_S)
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    while quotas.traffic["default"].throttle_ms == before_ms and time.monotonic() < deadline:
        time.sleep(0.05)  # the charge follows the answer
    assert quotas.traffic["default"].throttle_ms > before_ms
    _alter(agent, [(CLIENT_ID, "busy")], request_percentage=None)
