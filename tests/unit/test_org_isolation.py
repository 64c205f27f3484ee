"""Orgs at the Kafka door, with real clients: two orgs each have a topic, a group and a
transactional id called alike, and neither sees, reads, writes, commits to, describes or
deletes the other's; the default org's principals cannot name another org's resources."""

from __future__ import annotations

import asyncio
import hmac
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from streamhouse.engine.authentication import Authenticator, Principal
from streamhouse.ports.tenancy import ScramCredential
from streamhouse.tenancy.names import DEFAULT_ORG
from tests.unit.sasl_world import AgentThread, agent_settings, sasl_plain

CLIENT_TIMEOUT_S = 20
SECRET = "org-isolation-secret-0123"
# user → org; each an org admin (ACLs do not stand between them and their own org)
USERS = {"SHKACME": "acme", "SHKGLOBEX": "globex", "SHKDEFAULT": DEFAULT_ORG}
ACME, GLOBEX, DEFAULT = USERS
MEMBER = "SHKACMEMEMBER"  # a member of acme: what it may do is what acme's ACLs allow


class OrgAuthenticator(Authenticator):
    """PLAIN users of several orgs, kept in memory."""

    async def plain(self, user: str, password: str) -> Principal | None:
        if not hmac.compare_digest(password.encode(), SECRET.encode()):
            return None
        if user == MEMBER:
            return Principal("acme", user, "member")
        return Principal(USERS[user], user, "admin") if user in USERS else None

    async def scram_credential(
        self, user: str, mechanism: str
    ) -> tuple[Principal, ScramCredential] | None:
        return None


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    directory: Path = tmp_path_factory.mktemp("orgs")
    settings = agent_settings(directory / "data", "SASL_PLAINTEXT")
    running = AgentThread(settings, OrgAuthenticator()).start()
    assert running.agent is not None and running._loop is not None
    for org in ("acme", "globex"):  # ACLs are kept per org: the orgs exist
        created = running.agent.tenancy.create_org(org)
        asyncio.run_coroutine_threadsafe(created, running._loop).result(CLIENT_TIMEOUT_S)
    yield running
    running.stop()


def config(agent: AgentThread, user: str) -> dict[str, Any]:
    return sasl_plain(agent.bootstrap, user, SECRET)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(agent: AgentThread, user: str, topic: str) -> None:
    admin = AdminClient(config(agent, user))  # kept: a collected client fails its futures
    admin.create_topics([NewTopic(topic, 1)])[topic].result(CLIENT_TIMEOUT_S)


def produce(agent: AgentThread, user: str, topic: str, value: bytes) -> None:
    producer = Producer(config(agent, user))
    producer.produce(topic, value)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0


def consume_all(agent: AgentThread, user: str, topic: str, group: str) -> list[bytes]:
    """Every value of the topic's partition 0, read from the start and committed by `group`."""
    consumer = Consumer({**config(agent, user), "group.id": group, "auto.offset.reset": "earliest"})
    values: list[bytes] = []
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                if values:
                    break
                continue
            if message.error():
                continue
            values.append(message.value())
        if values:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return values


def topics_seen(agent: AgentThread, user: str) -> set[str]:
    return set(AdminClient(config(agent, user)).list_topics(timeout=CLIENT_TIMEOUT_S).topics)


def internal_topics(agent: AgentThread) -> set[str]:
    assert agent.agent is not None and agent._loop is not None
    listing = asyncio.run_coroutine_threadsafe(agent.agent.admin.list_topics(), agent._loop)
    return {topic.name for topic in listing.result(CLIENT_TIMEOUT_S)}


def test_two_orgs_have_their_own_topic_of_one_name(agent: AgentThread) -> None:
    topic = unique("orders")
    create_topic(agent, ACME, topic)
    create_topic(agent, GLOBEX, topic)  # not TOPIC_ALREADY_EXISTS: another org's name
    produce(agent, ACME, topic, b"acme's")
    produce(agent, GLOBEX, topic, b"globex's")
    assert consume_all(agent, ACME, topic, unique("g")) == [b"acme's"]
    assert consume_all(agent, GLOBEX, topic, unique("g")) == [b"globex's"]
    assert {f"acme:{topic}", f"globex:{topic}"} <= internal_topics(agent)


def test_metadata_lists_only_the_principals_org(agent: AgentThread) -> None:
    topic = unique("listed")
    create_topic(agent, ACME, topic)
    assert topic in topics_seen(agent, ACME)
    assert topic not in topics_seen(agent, GLOBEX)
    seen_by_default = topics_seen(agent, DEFAULT)
    assert not any(name.endswith(topic) for name in seen_by_default)
    assert not any(":" in name for name in topics_seen(agent, GLOBEX) | seen_by_default)


def test_default_org_cannot_name_another_orgs_topic(agent: AgentThread) -> None:
    topic = unique("hidden")
    create_topic(agent, ACME, topic)
    produce(agent, ACME, topic, b"secret")
    producer = Producer({**config(agent, DEFAULT), "message.timeout.ms": 5000})
    failures: list[KafkaError] = []
    producer.produce(
        f"acme:{topic}", b"intruder", on_delivery=lambda error, _: failures.append(error)
    )
    producer.flush(CLIENT_TIMEOUT_S)
    assert failures and failures[0] is not None
    metadata = AdminClient(config(agent, DEFAULT)).list_topics(
        f"acme:{topic}", timeout=CLIENT_TIMEOUT_S
    )
    assert metadata.topics[f"acme:{topic}"].error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert consume_all(agent, ACME, topic, unique("g")) == [b"secret"]


def test_groups_and_offsets_are_the_orgs_own(agent: AgentThread) -> None:
    topic, group = unique("offsets"), unique("shared-group")
    for user in (ACME, GLOBEX):
        create_topic(agent, user, topic)
    produce(agent, ACME, topic, b"one")
    assert consume_all(agent, ACME, topic, group) == [b"one"]
    acme_admin = AdminClient(config(agent, ACME))
    globex_admin = AdminClient(config(agent, GLOBEX))
    listed = acme_admin.list_consumer_groups().result(CLIENT_TIMEOUT_S)
    assert group in {g.group_id for g in listed.valid}
    listed = globex_admin.list_consumer_groups().result(CLIENT_TIMEOUT_S)
    assert group not in {g.group_id for g in listed.valid}
    # globex's group of that name has committed nothing, and deleting it leaves acme's
    consumer = Consumer({**config(agent, GLOBEX), "group.id": group})
    try:
        committed = consumer.committed([TopicPartition(topic, 0)], timeout=CLIENT_TIMEOUT_S)
        assert committed[0].offset < 0
    finally:
        consumer.close()
    consumer = Consumer({**config(agent, ACME), "group.id": group})
    try:
        committed = consumer.committed([TopicPartition(topic, 0)], timeout=CLIENT_TIMEOUT_S)
        assert committed[0].offset == 1
    finally:
        consumer.close()


def test_default_org_cannot_use_another_orgs_group(agent: AgentThread) -> None:
    topic = unique("open")
    create_topic(agent, DEFAULT, topic)
    consumer = Consumer({**config(agent, DEFAULT), "group.id": "acme:intruders"})
    errors: list[int] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while not errors and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error():
                errors.append(message.error().code())
    finally:
        consumer.close()
    assert errors == [KafkaError.GROUP_AUTHORIZATION_FAILED]


def test_deleting_a_topic_deletes_only_the_orgs_own(agent: AgentThread) -> None:
    topic = unique("doomed")
    for user in (ACME, GLOBEX):
        create_topic(agent, user, topic)
    produce(agent, ACME, topic, b"kept")
    admin = AdminClient(config(agent, GLOBEX))
    admin.delete_topics([topic])[topic].result(CLIENT_TIMEOUT_S)
    assert f"globex:{topic}" not in internal_topics(agent)
    assert topic in topics_seen(agent, ACME)
    assert consume_all(agent, ACME, topic, unique("g")) == [b"kept"]


def test_transactional_ids_of_one_name_do_not_fence_each_other(agent: AgentThread) -> None:
    topic, transactional_id = unique("txn"), unique("tx")
    for user in (ACME, GLOBEX):
        create_topic(agent, user, topic)
    producers = {
        user: Producer({**config(agent, user), "transactional.id": transactional_id})
        for user in (ACME, GLOBEX)
    }
    for producer in producers.values():
        producer.init_transactions(CLIENT_TIMEOUT_S)
    for user, producer in producers.items():  # acme's was initialised first: not fenced
        producer.begin_transaction()
        producer.produce(topic, user.encode())
        producer.commit_transaction(CLIENT_TIMEOUT_S)
    assert consume_all(agent, ACME, topic, unique("g")) == [ACME.encode()]
    assert consume_all(agent, GLOBEX, topic, unique("g")) == [GLOBEX.encode()]


def allow(
    agent: AgentThread,
    *bindings: tuple[ResourceType, str, ResourcePatternType, AclOperation, AclPermissionType],
) -> None:
    admin = AdminClient(config(agent, ACME))
    acls = [
        AclBinding(kind, name, pattern, f"User:{MEMBER}", "*", operation, permission)
        for kind, name, pattern, operation, permission in bindings
    ]
    for future in admin.create_acls(acls).values():
        future.result(CLIENT_TIMEOUT_S)


def delivery_errors(agent: AgentThread, user: str, topic: str) -> list[int]:
    producer = Producer({**config(agent, user), "message.timeout.ms": 5000})
    outcomes: list[int] = []
    producer.produce(
        topic, b"v", on_delivery=lambda error, _: outcomes.append(error.code() if error else 0)
    )
    producer.flush(CLIENT_TIMEOUT_S)
    return outcomes


@pytest.mark.slow  # in make test-all: make test stays under 3 minutes
def test_a_member_may_do_what_its_orgs_acls_allow(agent: AgentThread) -> None:
    ALLOW, DENY = AclPermissionType.ALLOW, AclPermissionType.DENY
    prefix = unique("pub")
    open_topic, denied_topic, closed_topic = f"{prefix}-open", f"{prefix}-denied", unique("closed")
    writable = unique("writable")  # WRITE (so DESCRIBE) but not CREATE
    for topic in (open_topic, denied_topic, closed_topic):
        create_topic(agent, ACME, topic)
    assert delivery_errors(agent, MEMBER, open_topic) == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    assert topics_seen(agent, MEMBER) == set()  # nothing it may DESCRIBE
    allow(
        agent,
        (ResourceType.TOPIC, prefix, ResourcePatternType.PREFIXED, AclOperation.ALL, ALLOW),
        (ResourceType.TOPIC, denied_topic, ResourcePatternType.LITERAL, AclOperation.WRITE, DENY),
        (ResourceType.GROUP, "readers", ResourcePatternType.LITERAL, AclOperation.READ, ALLOW),
        (ResourceType.TOPIC, writable, ResourcePatternType.LITERAL, AclOperation.WRITE, ALLOW),
    )
    assert delivery_errors(agent, MEMBER, open_topic) == [0]
    assert delivery_errors(agent, MEMBER, denied_topic) == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    assert delivery_errors(agent, MEMBER, closed_topic) == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    assert topics_seen(agent, MEMBER) == {open_topic, denied_topic}
    assert consume_all(agent, MEMBER, open_topic, "readers") == [b"v"]
    # auto-creation needs CREATE: ALL on the prefix grants it, nothing grants it elsewhere
    assert delivery_errors(agent, MEMBER, f"{prefix}-auto") == [0]
    assert delivery_errors(agent, MEMBER, writable) != [0]
    assert f"acme:{prefix}-auto" in internal_topics(agent)
    assert f"acme:{writable}" not in internal_topics(agent)
