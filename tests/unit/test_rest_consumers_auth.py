"""REST v2 consumer instances with authentication on, beside confluent-kafka clients with SASL:
two orgs' groups and topics called alike stay apart (records, instance paths, committed
offsets), another org's internal name is an unknown topic, and an org member gets what its
org's ACLs grant, refused as the Kafka door refuses (READ on the group to be a member, READ
on the topic to subscribe and read; a DENY wins), in Confluent's shape (403/40301)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError
from confluent_kafka import TopicPartition as KafkaPartition
from confluent_kafka.admin import (
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from tests.unit.rest_world import V2_BINARY, V2_JSON, Answer, call, rest_port, start_rest_agent
from tests.unit.sasl_world import AgentThread
from tests.unit.test_org_isolation import (
    ACME,
    CLIENT_TIMEOUT_S,
    DEFAULT,
    GLOBEX,
    MEMBER,
    SECRET,
    OrgAuthenticator,
    allow,
    config,
    create_topic,
    produce,
    unique,
)

ORGS = ("acme", "globex")
GROUP, TOPIC = "orders-readers", "orders"
ROUNDS_MAX = 40  # of the bounded polls below
POLL_S = 0.25
READ_TIMEOUT_MS = 250
ALLOW, DENY = AclPermissionType.ALLOW, AclPermissionType.DENY
LITERAL = ResourcePatternType.LITERAL


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentThread]:
    directory: Path = tmp_path_factory.mktemp("rest-consumers-auth")
    running = start_rest_agent(directory / "data", OrgAuthenticator(), "SASL_PLAINTEXT")
    for org in ORGS:
        running.call(_create_org(running, org))
    yield running
    assert running.agent is not None and running.agent.failure.error is None
    running.stop()


async def _create_org(running: AgentThread, org: str) -> None:
    assert running.agent is not None
    await running.agent.tenancy.create_org(org)


def basic(user: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{SECRET}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Instance:
    """One REST consumer instance by its path, called as `user`."""

    def __init__(self, port: int, user: str, group: str, name: str) -> None:
        self.port, self.user = port, user
        self.base = f"/consumers/{group}/instances/{name}"

    def as_user(self, user: str) -> Instance:
        other = Instance(self.port, user, "", "")
        other.base = self.base
        return other

    def call(self, method: str, path: str = "", body: Any = None, **headers: str) -> Answer:
        sent = {**basic(self.user), **headers}
        return call(self.port, method, self.base + path, body, V2_JSON, headers=sent)

    def read(self) -> Answer:
        return self.call("GET", f"/records?timeout={READ_TIMEOUT_MS}", Accept=V2_BINARY)


def create(port: int, user: str, group: str, name: str) -> Answer:
    body = {"name": name, "auto.offset.reset": "earliest", "auto.commit.enable": "false"}
    return call(port, "POST", f"/consumers/{group}", body, V2_JSON, headers=basic(user))


def created(port: int, user: str, group: str, name: str) -> Instance:
    answer = create(port, user, group, name)
    assert answer.status == 200, answer.raw
    return Instance(port, user, group, name)


def read_values(instance: Instance, count: int) -> list[bytes]:
    """What the instance reads until `count` values came (bounded)."""
    values: list[bytes] = []
    for _ in range(ROUNDS_MAX):
        if len(values) >= count:
            break
        answer = instance.read()
        assert answer.status == 200, answer.raw
        values += [base64.b64decode(record["value"]) for record in answer.json]
    return values


def refusal(answer: Answer) -> tuple[int, int]:
    return answer.status, answer.json["error_code"]


def committed(agent: AgentThread, user: str, group: str, topic: str) -> int:
    """The group's committed offset of topic-0 as `user`'s confluent-kafka consumer sees it."""
    consumer = Consumer({**config(agent, user), "group.id": group})
    try:
        found = consumer.committed([KafkaPartition(topic, 0)], timeout=CLIENT_TIMEOUT_S)
        offset: int = found[0].offset
        return offset
    finally:
        consumer.close()


def eventually(attempt: Any, wanted: Any) -> Any:
    """attempt() until it answers `wanted` (ACLs are cached for a moment), bounded."""
    found = attempt()
    for _ in range(ROUNDS_MAX):
        if found == wanted:
            break
        time.sleep(POLL_S)
        found = attempt()
    return found


def test_two_orgs_groups_and_topics_called_alike_stay_apart(agent: AgentThread) -> None:
    port = rest_port(agent)
    sent = {ACME: [b"acme-1", b"acme-2", b"acme-3"], GLOBEX: [b"globex-1", b"globex-2"]}
    instances: dict[str, Instance] = {}
    for user, values in sent.items():
        create_topic(agent, user, TOPIC)
        for value in values:
            produce(agent, user, TOPIC, value)
        instances[user] = created(port, user, GROUP, f"{user.lower()}-reader")
        subscribed = instances[user].call("POST", "/subscription", {"topics": [TOPIC]})
        assert subscribed.status == 204, subscribed.raw
    for user, values in sent.items():
        assert read_values(instances[user], len(values)) == values
        assert instances[user].call("GET", "/subscription").json == {"topics": [TOPIC]}

    # one org's instance paths are unknown instances to the other
    for owner, intruder in ((ACME, GLOBEX), (GLOBEX, ACME)):
        theirs = instances[owner].as_user(intruder)
        offsets = {"offsets": [{"topic": TOPIC, "partition": 0, "offset": 0}]}
        for answer in (
            theirs.read(),
            theirs.call("POST", "/offsets", offsets),
            theirs.call("POST", "/offsets"),
            theirs.call("GET", "/offsets", {"partitions": [{"topic": TOPIC, "partition": 0}]}),
            theirs.call("GET", "/subscription"),
            theirs.call("DELETE"),
        ):
            assert refusal(answer) == (404, 40403), answer.raw
    # the name of acme's instance is free in globex's group of the same name
    same_name = created(port, GLOBEX, GROUP, "acme-reader")
    assert same_name.call("DELETE").status == 204

    # commits through one org's instance leave the other org's offsets as they were
    assert instances[ACME].call("POST", "/offsets").status == 204
    assert committed(agent, ACME, GROUP, TOPIC) == 3
    assert committed(agent, GLOBEX, GROUP, TOPIC) < 0
    assert instances[GLOBEX].call("POST", "/offsets").status == 204
    assert committed(agent, GLOBEX, GROUP, TOPIC) == 2
    assert committed(agent, ACME, GROUP, TOPIC) == 3
    listed = instances[ACME].call(
        "GET", "/offsets", {"partitions": [{"topic": TOPIC, "partition": 0}]}
    )
    assert [o["offset"] for o in listed.json["offsets"]] == [3]
    for instance in instances.values():
        assert instance.call("DELETE").status == 204
        assert refusal(instance.read()) == (404, 40403)
    assert committed(agent, GLOBEX, GROUP, TOPIC) == 2  # still there (no auto commit asked)


def test_another_orgs_internal_name_is_an_unknown_topic(agent: AgentThread) -> None:
    port = rest_port(agent)
    topic = unique("secret")
    create_topic(agent, GLOBEX, topic)
    produce(agent, GLOBEX, topic, b"globex's secret")
    globex_group = unique("theirs")
    theirs = created(port, GLOBEX, globex_group, "reader")

    ours = created(port, ACME, unique("curious"), "reader")
    for name in (f"globex:{topic}", f"acme:globex:{topic}", topic):
        subscribed = ours.call("POST", "/subscription", {"topics": [name]})
        assert refusal(subscribed) == (404, 40401), subscribed.raw
        assert "globex:" not in subscribed.json["message"].replace(f"{name}", "")
        assigned = ours.call(
            "POST", "/assignments", {"partitions": [{"topic": name, "partition": 0}]}
        )
        assert refusal(assigned) == (404, 40401), assigned.raw
    assert ours.call("GET", "/subscription").json == {"topics": []}
    answer = ours.read()
    assert answer.status == 200 and answer.json == []
    # globex's group by the internal name is acme's own group of that name, not globex's
    reached = ours.as_user(ACME)
    reached.base = f"/consumers/globex:{globex_group}/instances/reader"
    assert refusal(reached.read()) == (404, 40403)
    assert refusal(reached.call("DELETE")) == (404, 40403)
    assert theirs.call("DELETE").status == 204
    assert ours.call("DELETE").status == 204


def kafka_poll_error(agent: AgentThread, user: str, group: str, topic: str) -> int | None:
    """The first error a `user` confluent-kafka consumer of `group` subscribed to `topic` meets
    (None: it read a record first)."""
    consumer = Consumer({**config(agent, user), "group.id": group, "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while time.monotonic() < deadline:
            message = consumer.poll(POLL_S)
            if message is None:
                continue
            error = message.error()
            if error is None:
                return None
            if error.code() != KafkaError._PARTITION_EOF:
                code: int = error.code()
                return code
        raise AssertionError("the Kafka consumer met neither a record nor an error")
    finally:
        consumer.close()


def test_a_member_gets_what_its_orgs_acls_grant(agent: AgentThread) -> None:
    port = rest_port(agent)
    topic, group = unique("ledger"), unique("auditors")
    create_topic(agent, ACME, topic)
    produce(agent, ACME, topic, b"entry")

    # no ACL: Kafka refuses (librdkafka asks the topic's metadata before it joins the group);
    # REST refuses the instance: JoinGroup needs READ on the group
    refused_kafka = kafka_poll_error(agent, MEMBER, group, topic)
    assert refused_kafka in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
    )
    assert refusal(create(port, MEMBER, group, "m")) == (403, 40301)

    # READ on the group: a member, but the topic is not its to read
    allow(agent, (ResourceType.GROUP, group, LITERAL, AclOperation.READ, ALLOW))
    assert eventually(lambda: create(port, MEMBER, group, "m").status, 200) == 200
    instance = Instance(port, MEMBER, group, "m")
    subscribe = {"topics": [topic]}
    assert refusal(instance.call("POST", "/subscription", subscribe)) == (403, 40301)
    assigned = instance.call(
        "POST", "/assignments", {"partitions": [{"topic": topic, "partition": 0}]}
    )
    assert refusal(assigned) == (403, 40301)
    assert kafka_poll_error(agent, MEMBER, group, topic) == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # READ on the topic too: it reads
    allow(agent, (ResourceType.TOPIC, topic, LITERAL, AclOperation.READ, ALLOW))
    status = eventually(lambda: instance.call("POST", "/subscription", subscribe).status, 204)
    assert status == 204
    assert read_values(instance, 1) == [b"entry"]
    assert instance.call("POST", "/offsets").status == 204
    assert committed(agent, ACME, group, topic) == 1

    # a DENY on the topic wins over the ALLOW: reading and committing are refused again
    allow(agent, (ResourceType.TOPIC, topic, LITERAL, AclOperation.READ, DENY))
    assert eventually(lambda: refusal(instance.read()), (403, 40301)) == (403, 40301)
    commit = {"offsets": [{"topic": topic, "partition": 0, "offset": 0}]}
    assert refusal(instance.call("POST", "/offsets", commit)) == (403, 40301)
    assert refusal(instance.call("POST", "/offsets")) == (403, 40301)
    assert committed(agent, ACME, group, topic) == 1
    assert instance.call("DELETE").status == 204  # leaves the group: Kafka's consumer fetches
    assert kafka_poll_error(agent, MEMBER, group, topic) == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_the_default_org_cannot_name_an_orgs_group_or_topic(agent: AgentThread) -> None:
    port = rest_port(agent)
    topic, group = unique("private"), unique("private-readers")
    create_topic(agent, ACME, topic)
    acme = created(port, ACME, group, "reader")
    intruder = acme.as_user(DEFAULT)
    intruder.base = f"/consumers/acme:{group}/instances/reader"
    for answer in (intruder.read(), intruder.call("POST", "/offsets"), intruder.call("DELETE")):
        assert refusal(answer) == (404, 40403), answer.raw
    own = created(port, DEFAULT, unique("open"), "reader")
    subscribed = own.call("POST", "/subscription", {"topics": [f"acme:{topic}"]})
    assert refusal(subscribed) == (404, 40401), subscribed.raw
    assert own.call("DELETE").status == 204
    assert acme.read().status == 200  # untouched
    assert acme.call("DELETE").status == 204
