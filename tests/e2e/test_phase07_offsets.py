"""Phase 7: offsets by position and by time, and DeleteRecords, from real clients.

Records produced with explicit timestamps are found again by ListOffsets
(earliest, latest, by timestamp) from kafka-python and confluent-kafka with the
exact expected offsets; DeleteRecords from confluent's AdminClient moves the
log start, and a consumer asking for offset 0 afterwards is reset to it.
"""

from __future__ import annotations

import datetime
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as CTopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kio.schema.fetch.v12 import request as fetch_v12
from kio.schema.list_offsets.v7 import request as list_offsets_v7
from kio.schema.types import BrokerId, TopicName
from kio.static.primitive import i8, i32, i32Timedelta, i64

from streamhouse.errors import ErrorCode
from tests.e2e.conftest import Agent
from tests.fixtures.kafka_wire import raw_call

RECORDS = 40
BASE_MS = 1_700_000_000_000
STEP_MS = 10
TIMEOUT_S = 15
DELETE_BEFORE = 17


def _timestamp(index: int) -> int:
    return BASE_MS + index * STEP_MS


def _create(agent: Agent, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=agent.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.close()


def _produce_kafka_python(agent: Agent, topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=agent.bootstrap, acks=1)
    for index in range(RECORDS):
        producer.send(topic, value=b"v%d" % index, timestamp_ms=_timestamp(index), partition=0)
    producer.flush(TIMEOUT_S)
    producer.close()


def _produce_confluent(agent: Agent, topic: str) -> None:
    producer = Producer({"bootstrap.servers": agent.bootstrap, "acks": "all", "linger.ms": 5})
    for index in range(RECORDS):
        producer.produce(topic, value=b"v%d" % index, timestamp=_timestamp(index), partition=0)
    assert producer.flush(TIMEOUT_S) == 0


def _kafka_python_consumer(agent: Agent) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=agent.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=TIMEOUT_S * 1000,
    )


def _confluent_consumer(agent: Agent) -> Any:
    return Consumer(
        {
            "bootstrap.servers": agent.bootstrap,
            "group.id": "phase7",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )


# (asked timestamp, expected offset or None when no record is stamped at or after it)
BY_TIME = [
    (0, 0),
    (BASE_MS, 0),
    (_timestamp(5), 5),
    (_timestamp(5) + 1, 6),
    (_timestamp(12) - 1, 12),
    (_timestamp(RECORDS - 1), RECORDS - 1),
    (_timestamp(RECORDS - 1) + 1, None),
]


def test_kafka_python_list_offsets(agent: Agent) -> None:
    _create(agent, "phase7-kp")
    _produce_confluent(agent, "phase7-kp")
    tp = TopicPartition("phase7-kp", 0)
    consumer = _kafka_python_consumer(agent)
    assert consumer.beginning_offsets([tp]) == {tp: 0}
    assert consumer.end_offsets([tp]) == {tp: RECORDS}
    for asked, expected in BY_TIME:
        found = consumer.offsets_for_times({tp: asked})[tp]
        if expected is None:
            assert found is None
        else:
            assert found is not None
            assert (found.offset, found.timestamp) == (expected, _timestamp(expected))
    consumer.close()


def test_confluent_list_offsets(agent: Agent) -> None:
    _create(agent, "phase7-ck")
    _produce_kafka_python(agent, "phase7-ck")
    consumer = _confluent_consumer(agent)
    assert consumer.get_watermark_offsets(CTopicPartition("phase7-ck", 0), timeout=TIMEOUT_S) == (
        0,
        RECORDS,
    )
    asked = [CTopicPartition("phase7-ck", 0, timestamp) for timestamp, _ in BY_TIME]
    for (_, expected), asked_tp in zip(BY_TIME, asked, strict=True):
        [found] = consumer.offsets_for_times([asked_tp], timeout=TIMEOUT_S)
        assert found.error is None
        assert found.offset == (-1 if expected is None else expected)
    consumer.close()


def test_delete_records_moves_log_start(agent: Agent) -> None:
    _create(agent, "phase7-del")
    _produce_kafka_python(agent, "phase7-del")
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    futures = admin.delete_records([CTopicPartition("phase7-del", 0, DELETE_BEFORE)])
    [deleted] = [future.result(TIMEOUT_S) for future in futures.values()]
    assert deleted.low_watermark == DELETE_BEFORE

    confluent = _confluent_consumer(agent)
    assert confluent.get_watermark_offsets(CTopicPartition("phase7-del", 0), timeout=TIMEOUT_S) == (
        DELETE_BEFORE,
        RECORDS,
    )
    confluent.close()

    tp = TopicPartition("phase7-del", 0)
    consumer = _kafka_python_consumer(agent)
    assert consumer.beginning_offsets([tp]) == {tp: DELETE_BEFORE}
    assert consumer.end_offsets([tp]) == {tp: RECORDS}
    # below the log start: OFFSET_OUT_OF_RANGE, reset by auto_offset_reset=earliest
    consumer.assign([tp])
    consumer.seek(tp, 0)
    found = []
    for message in consumer:
        found.append((message.offset, message.value, message.timestamp))
        if len(found) == RECORDS - DELETE_BEFORE:
            break
    consumer.close()
    assert found == [
        (index, b"v%d" % index, _timestamp(index)) for index in range(DELETE_BEFORE, RECORDS)
    ]

    # librdkafka too: an out-of-range fetch at 0 resets to the new log start
    confluent = _confluent_consumer(agent)
    confluent.assign([CTopicPartition("phase7-del", 0, 0)])
    message = confluent.poll(TIMEOUT_S)
    confluent.close()
    assert message is not None and message.error() is None
    assert message.offset() == DELETE_BEFORE


def test_stale_and_future_leader_epochs_are_told_apart(agent: Agent) -> None:
    """KIP-320: Fetch and ListOffsets naming the wrong leader epoch get FENCED_LEADER_EPOCH
    (older than the leader's) or UNKNOWN_LEADER_EPOCH (newer); the right one or none reads."""
    _create(agent, "epochs")
    _produce_kafka_python(agent, "epochs")
    unnamed = raw_call(agent.port, _list_offsets_request("epochs", -1))
    leader_epoch = int(unnamed.topics[0].partitions[0].leader_epoch)
    assert leader_epoch >= 1
    outcomes = {}
    for named in (-1, leader_epoch, leader_epoch - 1, leader_epoch + 1):
        fetched = raw_call(agent.port, _fetch_request("epochs", named))
        listed = raw_call(agent.port, _list_offsets_request("epochs", named))
        outcomes[named] = (
            fetched.responses[0].partitions[0].error_code,
            listed.topics[0].partitions[0].error_code,
        )
    assert outcomes == {
        -1: (0, 0),
        leader_epoch: (0, 0),
        leader_epoch - 1: (ErrorCode.FENCED_LEADER_EPOCH,) * 2,
        leader_epoch + 1: (ErrorCode.UNKNOWN_LEADER_EPOCH,) * 2,
    }


def _fetch_request(topic: str, leader_epoch: int) -> Any:
    return fetch_v12.FetchRequest(
        max_wait=i32Timedelta.parse(datetime.timedelta(0)),
        min_bytes=i32(0),
        forgotten_topics_data=(),
        topics=(
            fetch_v12.FetchTopic(
                topic=TopicName(topic),
                partitions=(
                    fetch_v12.FetchPartition(
                        partition=i32(0),
                        current_leader_epoch=i32(leader_epoch),
                        fetch_offset=i64(0),
                        partition_max_bytes=i32(1 << 20),
                    ),
                ),
            ),
        ),
    )


def _list_offsets_request(topic: str, leader_epoch: int) -> Any:
    return list_offsets_v7.ListOffsetsRequest(
        replica_id=BrokerId(-1),
        isolation_level=i8(0),
        topics=(
            list_offsets_v7.ListOffsetsTopic(
                name=TopicName(topic),
                partitions=(
                    list_offsets_v7.ListOffsetsPartition(
                        partition_index=i32(0),
                        current_leader_epoch=i32(leader_epoch),
                        timestamp=i64(-1),
                    ),
                ),
            ),
        ),
    )
