"""Phase 12: compaction and retention, seen by real clients.

So far: a compacted topic refuses a record without a key with Kafka's INVALID_RECORD (the
record errors named, as Produce v8+ answers them), its batch is not appended, and the other
partitions of the same request are."""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamhouse.kafka import codec
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.entities import build
from streamhouse.kafka.records import SimpleRecord, build_batch
from tests.e2e.conftest import Agent
from tests.fixtures.kafka_wire import PRODUCE_TIMEOUT_MS, PRODUCE_VERSION, raw_call

WAIT_S = 20
ADMIN_TIMEOUT_S = 15
ACKS_ALL = -1
INVALID_RECORD = 87
KEYLESS_MESSAGE = "Compacted topic cannot accept message without key in topic partition {}."


def _create(agent: Agent, *topics: NewTopic) -> None:
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    for future in admin.create_topics(list(topics)).values():
        future.result(ADMIN_TIMEOUT_S)


def _read_all(agent: Agent, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    consumer = Consumer(
        {
            "bootstrap.servers": agent.bootstrap,
            "group.id": f"p12-{topic}",
            "enable.auto.commit": False,
        }
    )
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=WAIT_S)
    consumer.assign([TopicPartition(topic, 0, 0)])
    found = []
    while len(found) < high:
        message = consumer.poll(WAIT_S)
        assert message is not None and message.error() is None, message
        found.append((message.offset(), message.key(), message.value()))
    consumer.close()
    return found


def test_confluent_kafka_is_refused_a_record_without_a_key(agent: Agent) -> None:
    _create(agent, NewTopic("p12-table", 1, config={"cleanup.policy": "compact"}))
    producer = Producer({"bootstrap.servers": agent.bootstrap, "retries": 0, "acks": "all"})
    outcomes: dict[bytes, KafkaError | None] = {}

    def delivered(error: KafkaError | None, message: object) -> None:
        outcomes[message.value()] = error  # type: ignore[attr-defined]

    producer.produce("p12-table", b"keyed", key=b"k", on_delivery=delivered)
    producer.flush(WAIT_S)
    producer.produce("p12-table", b"no key", on_delivery=delivered)
    assert producer.flush(WAIT_S) == 0
    assert outcomes[b"keyed"] is None
    refused = outcomes[b"no key"]
    assert refused is not None and refused.code() == KafkaError.INVALID_RECORD, refused
    assert not refused.retriable()
    assert _read_all(agent, "p12-table") == [(0, b"k", b"keyed")]


def test_the_other_partitions_of_the_request_are_appended(agent: Agent) -> None:
    _create(
        agent,
        NewTopic("p12-compacted", 1, config={"cleanup.policy": "compact,delete"}),
        NewTopic("p12-plain", 1),
    )
    keyless = build_batch([SimpleRecord(b"k", b"v"), SimpleRecord(None, b"no key")])
    request = build(
        codec.request_schema(ApiKey.PRODUCE, PRODUCE_VERSION),
        {
            "acks": ACKS_ALL,
            "timeout": PRODUCE_TIMEOUT_MS,
            "topic_data": [
                {"name": name, "partition_data": [{"index": 0, "records": keyless}]}
                for name in ("p12-compacted", "p12-plain")
            ],
        },
    )
    answers = {
        topic.name: topic.partition_responses[0]
        for topic in raw_call(agent.port, request).responses
    }
    refused, appended = answers["p12-compacted"], answers["p12-plain"]
    message = KEYLESS_MESSAGE.format("p12-compacted-0")
    assert int(refused.error_code) == INVALID_RECORD
    assert [(e.batch_index, e.batch_index_error_message) for e in refused.record_errors] == [
        (1, message)
    ]
    assert refused.error_message == (
        "One or more records have been rejected due to 1 record errors in total, and only "
        f"showing the first three errors at most: [RecordError(batchIndex=1, message='{message}')]"
    )
    assert (int(appended.error_code), appended.base_offset) == (0, 0)
    assert _read_all(agent, "p12-plain") == [(0, b"k", b"v"), (1, None, b"no key")]
    assert _read_all(agent, "p12-compacted") == []
