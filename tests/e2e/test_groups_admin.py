"""Group administration on a real agent: FindCoordinator, OffsetCommit/Fetch, ListGroups,
DescribeGroups, OffsetDelete and DeleteGroups, sent raw (every field checked) and through
confluent-kafka's and kafka-python's admin clients.

A confluent-kafka consumer keeps group "busy" stable on topic "adm"; group "solo" only
has standalone commits (generation -1), so it is listed as Empty.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import TopicPartition as KafkaTopicPartition
from kafka.admin import KafkaAdminClient, MemberToRemove
from kafka.errors import NoError

from streamhouse.kafka import codec
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.entities import build
from tests.e2e.conftest import Agent, start_agent
from tests.e2e.test_groups_clients import FAST_GROUPS, _confluent
from tests.fixtures.kafka_wire import raw_call

WAIT_S = 30
E_NONE = 0
E_INVALID_REQUEST = 42
E_NON_EMPTY_GROUP = 68
E_GROUP_ID_NOT_FOUND = 69
E_GROUP_SUBSCRIBED_TO_TOPIC = 86


def call(agent: Agent, api_key: ApiKey, version: int, values: dict[str, Any]) -> Any:
    """Send one request built from `values`; the decoded response."""
    return raw_call(agent.port, build(codec.request_schema(api_key, version), values))


@pytest.fixture
def busy_agent(tmp_path: Path) -> Iterator[Agent]:
    running = start_agent(tmp_path / "data", *FAST_GROUPS)
    admin = AdminClient({"bootstrap.servers": running.bootstrap})
    for topic in ("adm", "other"):
        admin.create_topics([NewTopic(topic, 2)])[topic].result(timeout=WAIT_S)
    yield running
    if running.process.poll() is None:
        assert running.stop() == 0


def _commit_solo(agent: Agent) -> None:
    answer = call(
        agent,
        ApiKey.OFFSET_COMMIT,
        8,
        {
            "group_id": "solo",
            "generation_id_or_member_epoch": -1,
            "member_id": "",
            "topics": [
                {
                    "name": "adm",
                    "partitions": [
                        {"partition_index": 0, "committed_offset": 4, "committed_metadata": "m"}
                    ],
                },
                {
                    "name": "other",
                    "partitions": [{"partition_index": 1, "committed_offset": 9}],
                },
            ],
        },
    )
    assert [p.error_code for t in answer.topics for p in t.partitions] == [E_NONE, E_NONE]


def _stable_busy_group(agent: Agent) -> Any:
    consumer = _confluent(agent.bootstrap, "busy")
    consumer.subscribe(["adm"])
    deadline = time.monotonic() + WAIT_S
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.2)
    assert consumer.assignment()
    consumer.commit(offsets=[TopicPartition("other", 0, 2)], asynchronous=False)
    return consumer


def test_find_coordinator_answers_this_agent(busy_agent: Agent) -> None:
    single = call(busy_agent, ApiKey.FIND_COORDINATOR, 3, {"key": "g", "key_type": 0})
    assert (single.error_code, single.host, single.port) == (E_NONE, "127.0.0.1", busy_agent.port)
    batched = call(
        busy_agent, ApiKey.FIND_COORDINATOR, 4, {"key_type": 1, "coordinator_keys": ["a", "b"]}
    )
    assert [(c.key, c.error_code, c.port) for c in batched.coordinators] == [
        ("a", E_NONE, busy_agent.port),
        ("b", E_NONE, busy_agent.port),
    ]
    unknown = call(
        busy_agent, ApiKey.FIND_COORDINATOR, 4, {"key_type": 7, "coordinator_keys": ["a"]}
    )
    assert unknown.coordinators[0].error_code == E_INVALID_REQUEST


def test_group_administration_raw(busy_agent: Agent) -> None:
    _commit_solo(busy_agent)
    consumer = _stable_busy_group(busy_agent)
    try:
        fetched = call(
            busy_agent,
            ApiKey.OFFSET_FETCH,
            8,
            {
                "groups": [
                    {"group_id": "solo", "topics": None},
                    {
                        "group_id": "busy",
                        "topics": [{"name": "other", "partition_indexes": [0, 1]}],
                    },
                ]
            },
        )
        solo, busy = fetched.groups
        assert [
            (t.name, p.partition_index, p.committed_offset, p.metadata)
            for t in solo.topics
            for p in t.partitions
        ] == [
            ("adm", 0, 4, "m"),
            ("other", 1, 9, ""),
        ]
        assert [p.committed_offset for t in busy.topics for p in t.partitions] == [2, -1]

        def listed(states: list[str]) -> list[str]:
            answer = call(busy_agent, ApiKey.LIST_GROUPS, 4, {"states_filter": states})
            return [g.group_id for g in answer.groups]

        assert listed(["Stable"]) == ["busy"]
        assert listed(["Empty"]) == ["solo"]
        assert listed([]) == ["busy", "solo"]

        described = call(
            busy_agent, ApiKey.DESCRIBE_GROUPS, 5, {"groups": ["busy", "solo", "none"]}
        )
        states = [(g.group_id, g.group_state, g.protocol_type) for g in described.groups]
        assert states == [
            ("busy", "Stable", "consumer"),
            ("solo", "Empty", ""),
            ("none", "Dead", ""),
        ]
        (member,) = described.groups[0].members
        assert member.member_assignment and member.member_metadata
        assert member.client_host == "/127.0.0.1"

        deleted = call(
            busy_agent,
            ApiKey.OFFSET_DELETE,
            0,
            {
                "group_id": "busy",
                "topics": [
                    {"name": "adm", "partitions": [{"partition_index": 0}]},
                    {"name": "other", "partitions": [{"partition_index": 0}]},
                ],
            },
        )
        assert deleted.error_code == E_NONE
        assert [(t.name, t.partitions[0].error_code) for t in deleted.topics] == [
            ("adm", E_GROUP_SUBSCRIBED_TO_TOPIC),
            ("other", E_NONE),
        ]
        gone = call(busy_agent, ApiKey.DELETE_GROUPS, 2, {"groups_names": ["busy", "solo", "none"]})
        assert [(r.group_id, r.error_code) for r in gone.results] == [
            ("busy", E_NON_EMPTY_GROUP),
            ("solo", E_NONE),
            ("none", E_GROUP_ID_NOT_FOUND),
        ]
    finally:
        consumer.close()
    assert listed(["Stable"]) == []  # the consumer left


def test_group_administration_with_admin_clients(busy_agent: Agent) -> None:
    _commit_solo(busy_agent)
    consumer = _stable_busy_group(busy_agent)
    try:
        admin = AdminClient({"bootstrap.servers": busy_agent.bootstrap})
        groups = admin.list_consumer_groups().result(timeout=WAIT_S)
        assert sorted(g.group_id for g in groups.valid) == ["busy", "solo"]
        (described,) = admin.describe_consumer_groups(["busy"]).values()
        group = described.result(timeout=WAIT_S)
        assert str(group.state.name) == "STABLE" and len(group.members) == 1
        assert {tp.partition for tp in group.members[0].assignment.topic_partitions} == {0, 1}
        request = [ConsumerGroupTopicPartitions("solo", [TopicPartition("adm", 0)])]
        (offsets,) = admin.list_consumer_group_offsets(request).values()
        assert [tp.offset for tp in offsets.result(timeout=WAIT_S).topic_partitions] == [4]
        for future in admin.delete_consumer_groups(["solo"]).values():
            future.result(timeout=WAIT_S)
        legacy = KafkaAdminClient(bootstrap_servers=busy_agent.bootstrap)
        assert [g["group_id"] for g in legacy.list_groups(states_filter=["Stable"])] == ["busy"]
        member_id = legacy.describe_groups(["busy"])["busy"]["members"][0]["member_id"]
        kicked = legacy.remove_group_members("busy", [MemberToRemove(member_id=member_id)])
        assert kicked == {member_id: NoError}
        assert [(g["group_id"], g["group_state"]) for g in legacy.list_groups()] == [
            ("busy", "Empty")
        ]
        assert legacy.delete_group_offsets("busy", [KafkaTopicPartition("adm", 0)]) == {
            KafkaTopicPartition("adm", 0): NoError  # nobody is subscribed any more
        }
        assert legacy.delete_groups(["busy", "none"]) == {
            "busy": "OK",
            "none": "GroupIdNotFoundError",
        }
        legacy.close()
    finally:
        consumer.close()
