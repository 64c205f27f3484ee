"""e2e phase 15 (orgs at the Kafka door): cross-org attempts against a real agent requiring
keys, with keys issued by streamctl in two orgs (acme, globex) and the default org's admin key.

Each org naming another org's topic or group by its bare name reaches its own (or nothing):
reading, writing, committing offsets, describing, listing and deleting all leave the other
org's records, committed offsets and topics as they were, checked afterwards through that
org's own key. A default-org key naming `acme:orders` or group `acme:g` is refused with
Kafka's authorization codes; transactional ids of one name in two orgs do not fence each
other; broker-side schema validation checks an org's topic against that org's subject.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioTopicPartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.e2e.conftest import produce_each
from tests.e2e.secured_agent import Secured, secured_agent
from tests.unit.test_sasl_clients import (
    CLIENT_TIMEOUT_S,
    aiokafka_config,
    confluent_config,
    kafka_python_config,
)

ACME, GLOBEX, DEFAULT = "acme", "globex", "default"
# each org's clients authenticate by another mechanism, so every one crosses the door
MECHANISM = {ACME: "SCRAM-SHA-256", GLOBEX: "SCRAM-SHA-512", DEFAULT: "PLAIN"}
REFUSED_DELIVERY_TIMEOUT_MS = 5000  # a refused produce is final: no need to retry long
REFUSAL_WAIT_S = 5


class Orgs:
    """The running agent and an admin key of each org (an org's admin is still only its org's:
    the stronger case, and no ACL stands between it and its own resources)."""

    def __init__(self, secured: Secured) -> None:
        self.secured = secured
        self.keys = {
            ACME: secured.issue(ACME, "admin"),
            GLOBEX: secured.issue(GLOBEX, "admin"),
            DEFAULT: secured.admin,
        }

    def confluent(self, org: str) -> dict[str, Any]:
        return confluent_config(self.secured.listener, MECHANISM[org], *self.keys[org])

    def aiokafka(self, org: str) -> dict[str, Any]:
        return aiokafka_config(self.secured.listener, MECHANISM[org], *self.keys[org])

    def kafka_python(self, org: str) -> dict[str, Any]:
        return kafka_python_config(self.secured.listener, MECHANISM[org], *self.keys[org])

    def admin(self, org: str) -> AdminClient:
        return AdminClient(self.confluent(org))

    def registry(self, org: str) -> SchemaRegistryClient:
        key, secret = self.keys[org]
        url = self.secured.agent.registry_url
        return SchemaRegistryClient({"url": url, "basic.auth.user.info": f"{key}:{secret}"})


@pytest.fixture(scope="module")
def orgs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orgs]:
    with secured_agent(tmp_path_factory.mktemp("orgs")) as secured:
        yield Orgs(secured)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def kafka_code(refused: pytest.ExceptionInfo[KafkaException]) -> int:
    code: int = refused.value.args[0].code()
    return code


# ------------------------------------------------------------------ confluent-kafka helpers


def create_topic(orgs: Orgs, org: str, topic: str, config: dict[str, str] | None = None) -> None:
    admin = orgs.admin(org)  # kept: a collected client fails its futures
    admin.create_topics([NewTopic(topic, 1, config=config or {})])[topic].result(CLIENT_TIMEOUT_S)


def produce(orgs: Orgs, org: str, topic: str, values: list[bytes]) -> list[KafkaError | None]:
    """Each value's delivery error (None: written), sent one after another."""
    config = {**orgs.confluent(org), "message.timeout.ms": REFUSED_DELIVERY_TIMEOUT_MS}
    return produce_each({**config, "retries": 0}, topic, values, CLIENT_TIMEOUT_S)


def read(orgs: Orgs, org: str, topic: str) -> list[bytes]:
    """Every value of the topic's partition 0 as `org` reads it, up to its end."""
    low, high = watermarks(orgs, org, topic)
    if low >= high:
        return []
    consumer = Consumer({**orgs.confluent(org), "group.id": unique("reader")})
    values: list[bytes] = []
    try:
        consumer.assign([TopicPartition(topic, 0, low)])
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while max(low, _position(consumer, topic)) < high and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                values.append(message.value())
    finally:
        consumer.close()
    return values


def _position(consumer: Consumer, topic: str) -> int:
    """Where the consumer reads next in partition 0 (negative before its first fetch): past
    transaction markers too, which a count of the values read would never reach."""
    [position] = consumer.position([TopicPartition(topic, 0)])
    return int(position.offset)


def subscription_error(orgs: Orgs, org: str, topic: str, group: str = "") -> int | None:
    """The first error a consumer of `org` (in `group`, else a new one) subscribed to `topic`
    gets; None when it gets a record."""
    config = {**orgs.confluent(org), "group.id": group or unique("subscriber")}
    consumer = Consumer({**config, "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None:
                return None if message.error() is None else int(message.error().code())
    finally:
        consumer.close()
    raise AssertionError(f"no record and no error for {topic} within {CLIENT_TIMEOUT_S} s")


def watermarks(orgs: Orgs, org: str, topic: str) -> tuple[int, int]:
    consumer = Consumer({**orgs.confluent(org), "group.id": unique("watermarks")})
    try:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, 0), timeout=CLIENT_TIMEOUT_S
        )
    finally:
        consumer.close()
    return low, high


def commit(orgs: Orgs, org: str, group: str, topic: str, offset: int) -> None:
    consumer = Consumer({**orgs.confluent(org), "group.id": group})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    finally:
        consumer.close()


def committed(orgs: Orgs, org: str, group: str, topic: str) -> int:
    """The group's committed offset of the topic's partition 0; negative when none."""
    consumer = Consumer({**orgs.confluent(org), "group.id": group})
    try:
        [found] = consumer.committed([TopicPartition(topic, 0)], timeout=CLIENT_TIMEOUT_S)
    finally:
        consumer.close()
    offset: int = found.offset
    return offset


def topics_seen(orgs: Orgs, org: str) -> set[str]:
    return set(orgs.admin(org).list_topics(timeout=CLIENT_TIMEOUT_S).topics)


def groups_listed(orgs: Orgs, org: str) -> set[str]:
    admin = orgs.admin(org)  # kept until the answer: a collected client fails its futures
    listed = admin.list_consumer_groups().result(CLIENT_TIMEOUT_S)
    return {group.group_id for group in listed.valid}


def org_with_topic_and_group(orgs: Orgs, org: str, values: list[bytes]) -> tuple[str, str]:
    """A new topic of `org` holding `values`, and a new group that committed all of them."""
    topic, group = unique("orders"), unique("g")
    create_topic(orgs, org, topic)
    assert produce(orgs, org, topic, values) == [None] * len(values)
    commit(orgs, org, group, topic, len(values))
    return topic, group


def unchanged(orgs: Orgs, org: str, topic: str, group: str, values: list[bytes]) -> None:
    """The org's topic is still listed, holds `values`, and `group` still committed them all."""
    assert topic in topics_seen(orgs, org)
    assert read(orgs, org, topic) == values
    assert committed(orgs, org, group, topic) == len(values)
    assert group in groups_listed(orgs, org)


# ------------------------------------------------------------------ one topic name, two orgs


def confluent_round(orgs: Orgs, org: str, topic: str, value: bytes) -> tuple[list[bytes], set[str]]:
    """Write `value`, then read the topic back and list the topics, with confluent-kafka."""
    assert produce(orgs, org, topic, [value]) == [None]
    return read(orgs, org, topic), topics_seen(orgs, org)


def aiokafka_round(orgs: Orgs, org: str, topic: str, value: bytes) -> tuple[list[bytes], set[str]]:
    config = orgs.aiokafka(org)

    async def round_trip() -> tuple[list[bytes], set[str]]:
        producer = AIOKafkaProducer(**config)
        await producer.start()
        try:
            await producer.send_and_wait(topic, value)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(**config)
        await consumer.start()
        try:
            partition = AioTopicPartition(topic, 0)
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            end = (await consumer.end_offsets([partition]))[partition]
            values: list[bytes] = []
            while await consumer.position(partition) < end:
                batches = await consumer.getmany(partition, timeout_ms=500)
                values += [bytes(m.value) for m in batches.get(partition, [])]
            return values, set(await consumer.topics())
        finally:
            await consumer.stop()

    return asyncio.run(asyncio.wait_for(round_trip(), CLIENT_TIMEOUT_S * 2))


def kafka_python_round(
    orgs: Orgs, org: str, topic: str, value: bytes
) -> tuple[list[bytes], set[str]]:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.structs import TopicPartition as KafkaPythonTopicPartition

    config = orgs.kafka_python(org)
    producer = KafkaProducer(**config)
    try:
        producer.send(topic, value).get(timeout=CLIENT_TIMEOUT_S)
    finally:
        producer.close()
    consumer = KafkaConsumer(**config)
    try:
        partition = KafkaPythonTopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        end = consumer.end_offsets([partition])[partition]
        values: list[bytes] = []
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while consumer.position(partition) < end and time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=500)
            values += [m.value for m in batches.get(partition, [])]
        return values, set(consumer.topics())
    finally:
        consumer.close()


Round = Callable[[Orgs, str, str, bytes], tuple[list[bytes], set[str]]]
CLIENTS: dict[str, Round] = {
    "confluent-kafka": confluent_round,
    "aiokafka": aiokafka_round,
    "kafka-python": kafka_python_round,
}


@pytest.mark.parametrize("client", CLIENTS)
def test_each_org_writes_reads_and_lists_its_own_topic_of_one_name(orgs: Orgs, client: str) -> None:
    topic, acme_only = unique("orders"), unique("acme-only")
    for org in (ACME, GLOBEX):
        create_topic(orgs, org, topic)
    create_topic(orgs, ACME, acme_only)
    for org in (ACME, GLOBEX):
        values, listed = CLIENTS[client](orgs, org, topic, f"{org}'s".encode())
        assert values == [f"{org}'s".encode()]
        assert topic in listed and not any(":" in name for name in listed)
        assert (acme_only in listed) == (org == ACME)


# ------------------------------------------------------------------ another org's, by name


def test_reading_another_orgs_topic_by_name_finds_only_your_own(orgs: Orgs) -> None:
    topic, group = org_with_topic_and_group(orgs, ACME, [b"acme-1", b"acme-2"])
    # globex has no topic of that name
    assert subscription_error(orgs, GLOBEX, topic) == KafkaError.UNKNOWN_TOPIC_OR_PART
    create_topic(orgs, GLOBEX, topic)
    assert read(orgs, GLOBEX, topic) == []
    unchanged(orgs, ACME, topic, group, [b"acme-1", b"acme-2"])


def test_writing_to_another_orgs_topic_name_writes_your_own(orgs: Orgs) -> None:
    topic, group = org_with_topic_and_group(orgs, ACME, [b"acme"])
    create_topic(orgs, GLOBEX, topic)
    assert produce(orgs, GLOBEX, topic, [b"globex"]) == [None]
    assert read(orgs, GLOBEX, topic) == [b"globex"]
    unchanged(orgs, ACME, topic, group, [b"acme"])


def test_committing_to_a_group_of_another_orgs_name_commits_your_own(orgs: Orgs) -> None:
    values = [b"a", b"b", b"c"]
    topic, group = org_with_topic_and_group(orgs, ACME, values)
    create_topic(orgs, GLOBEX, topic)
    assert committed(orgs, GLOBEX, group, topic) < 0  # globex's group of that name: nothing
    commit(orgs, GLOBEX, group, topic, 0)
    assert committed(orgs, GLOBEX, group, topic) == 0
    unchanged(orgs, ACME, topic, group, values)


def test_describing_and_listing_show_only_your_orgs_topics_and_groups(orgs: Orgs) -> None:
    from confluent_kafka import TopicCollection

    topic, group = org_with_topic_and_group(orgs, ACME, [b"acme"])
    assert topic not in topics_seen(orgs, GLOBEX)
    assert group not in groups_listed(orgs, GLOBEX)
    globex = orgs.admin(GLOBEX)
    [described] = globex.describe_topics(TopicCollection([topic])).values()
    with pytest.raises(KafkaException) as unknown:
        described.result(CLIENT_TIMEOUT_S)
    assert kafka_code(unknown) == KafkaError.UNKNOWN_TOPIC_OR_PART
    [description] = globex.describe_consumer_groups([group]).values()
    assert description.result(CLIENT_TIMEOUT_S).members == []
    [offsets] = globex.list_consumer_group_offsets([_group_request(group, topic)]).values()
    assert [p.offset for p in offsets.result(CLIENT_TIMEOUT_S).topic_partitions] == [-1001]
    default_view = topics_seen(orgs, DEFAULT) | groups_listed(orgs, DEFAULT)
    assert not {topic, group} & default_view and not any(":" in n for n in default_view)
    unchanged(orgs, ACME, topic, group, [b"acme"])


def _group_request(group: str, topic: str) -> Any:
    from confluent_kafka import ConsumerGroupTopicPartitions

    return ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])


def test_deleting_another_orgs_topic_or_group_by_name_deletes_nothing_of_theirs(
    orgs: Orgs,
) -> None:
    topic, group = org_with_topic_and_group(orgs, ACME, [b"kept"])
    globex = orgs.admin(GLOBEX)
    with pytest.raises(KafkaException) as unknown:
        globex.delete_topics([topic])[topic].result(CLIENT_TIMEOUT_S)
    assert kafka_code(unknown) == KafkaError.UNKNOWN_TOPIC_OR_PART
    with pytest.raises(KafkaException) as no_group:
        globex.delete_consumer_groups([group])[group].result(CLIENT_TIMEOUT_S)
    assert kafka_code(no_group) == KafkaError.GROUP_ID_NOT_FOUND
    unchanged(orgs, ACME, topic, group, [b"kept"])
    create_topic(orgs, GLOBEX, topic)  # now globex has one of that name: it deletes its own
    commit(orgs, GLOBEX, group, topic, 0)
    globex.delete_consumer_groups([group])[group].result(CLIENT_TIMEOUT_S)
    globex.delete_topics([topic])[topic].result(CLIENT_TIMEOUT_S)
    assert topic not in topics_seen(orgs, GLOBEX)
    unchanged(orgs, ACME, topic, group, [b"kept"])


# ------------------------------------------------------------------ the default org's names


def test_the_default_org_naming_another_orgs_resources_is_refused(orgs: Orgs) -> None:
    topic, group = org_with_topic_and_group(orgs, ACME, [b"acme's"])
    foreign_topic, foreign_group = f"acme:{topic}", f"acme:{group}"
    [refused] = produce(orgs, DEFAULT, foreign_topic, [b"intruder"])
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    admin = orgs.admin(DEFAULT)
    metadata = admin.list_topics(foreign_topic, timeout=CLIENT_TIMEOUT_S)  # answered per topic
    assert metadata.topics[foreign_topic].error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    create_topic(orgs, DEFAULT, topic)
    assert subscription_error(orgs, DEFAULT, topic, foreign_group) == (
        KafkaError.GROUP_AUTHORIZATION_FAILED
    )
    with pytest.raises(KafkaException) as group_deletion:
        admin.delete_consumer_groups([foreign_group])[foreign_group].result(CLIENT_TIMEOUT_S)
    assert kafka_code(group_deletion) == KafkaError.GROUP_AUTHORIZATION_FAILED
    unchanged(orgs, ACME, topic, group, [b"acme's"])


def test_the_default_org_deleting_another_orgs_topic_is_refused(orgs: Orgs) -> None:
    topic, group = org_with_topic_and_group(orgs, ACME, [b"acme's"])
    admin = orgs.admin(DEFAULT)
    with pytest.raises(KafkaException) as deletion:  # answered per topic
        future = admin.delete_topics([f"acme:{topic}"], request_timeout=REFUSAL_WAIT_S)
        future[f"acme:{topic}"].result(REFUSAL_WAIT_S)
    assert kafka_code(deletion) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    unchanged(orgs, ACME, topic, group, [b"acme's"])


# ------------------------------------------------------------------ transactions, schemas


def test_transactional_ids_of_one_name_in_two_orgs_do_not_fence_each_other(orgs: Orgs) -> None:
    topic, transactional_id = unique("txn"), unique("tx")
    producers = {}
    for org in (ACME, GLOBEX):
        create_topic(orgs, org, topic)
        producers[org] = Producer({**orgs.confluent(org), "transactional.id": transactional_id})
    for producer in producers.values():  # globex's init would fence acme's were they one id
        producer.init_transactions(CLIENT_TIMEOUT_S)
    for org, producer in producers.items():
        producer.begin_transaction()
        producer.produce(topic, org.encode())
        producer.commit_transaction(CLIENT_TIMEOUT_S)
    for org in (ACME, GLOBEX):
        assert read(orgs, org, topic) == [org.encode()]


def _avro(name: str) -> str:
    return json.dumps({"type": "record", "name": name, "fields": [{"name": "id", "type": "long"}]})


def test_schema_validation_checks_an_orgs_topic_against_its_own_subject(orgs: Orgs) -> None:
    topic = unique("validated")
    context = SerializationContext(topic, MessageField.VALUE)
    framed = {}
    for org, record in ((ACME, "Order"), (GLOBEX, "Invoice")):
        create_topic(orgs, org, topic, {"confluent.value.schema.validation": "true"})
        serializer = AvroSerializer(orgs.registry(org), _avro(record))  # registers <topic>-value
        framed[org] = serializer({"id": 7}, context)
    acme_id, globex_id = (struct.unpack(">i", framed[org][1:5])[0] for org in (ACME, GLOBEX))
    assert acme_id != globex_id
    outcomes = produce(orgs, ACME, topic, [framed[ACME], framed[GLOBEX], b"plain bytes"])
    assert outcomes[0] is None
    for refused in outcomes[1:]:  # globex's id is not one of acme's subject's
        assert refused is not None and refused.code() == KafkaError.INVALID_RECORD, refused
    assert produce(orgs, GLOBEX, topic, [framed[GLOBEX]]) == [None]
    [refused] = produce(orgs, GLOBEX, topic, [framed[ACME]])
    assert refused is not None and refused.code() == KafkaError.INVALID_RECORD
    assert read(orgs, ACME, topic) == [framed[ACME]]
    assert read(orgs, GLOBEX, topic) == [framed[GLOBEX]]
    assert orgs.registry(ACME).get_versions(f"{topic}-value") == [1]
