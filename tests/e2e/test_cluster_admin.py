"""The cluster-shape admin APIs on a real agent, as a diskless broker answers them: broker
configs (alone and mixed with topics), ElectLeaders, DescribeLogDirs, AlterReplicaLogDirs,
DescribeQuorum, List- and AlterPartitionReassignments and DescribeTopicPartitions. Called
through kafka-python's and confluent-kafka's admin clients where they expose the API, and
sent raw at every version ApiVersions advertises (each field checked)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import ElectionType, KafkaError, Producer
from confluent_kafka import TopicPartition as ConfluentPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic, ResourceType
from kafka import TopicPartition
from kafka.admin import ConfigResource as KafkaConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient
from kafka.errors import InvalidReplicationAssignmentError, LogDirNotFoundError, NoError

from streamhouse.kafka import codec
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.entities import build
from tests.e2e.conftest import Agent, start_agent
from tests.fixtures.kafka_wire import api_versions_request, raw_call

WAIT_S = 15
NUM_PARTITIONS = "3"  # set by flag: num.partitions is a STATIC_BROKER_CONFIG
RECORDS = 20
E_NONE = 0
E_UNKNOWN_TOPIC_OR_PARTITION = 3
E_INVALID_REPLICA_ASSIGNMENT = 39
E_INVALID_REQUEST = 42
E_LOG_DIR_NOT_FOUND = 57
E_ELECTION_NOT_NEEDED = 84
E_NO_REASSIGNMENT_IN_PROGRESS = 85
STATIC_BROKER_CONFIG = 4
DEFAULT_CONFIG = 5
QUORUM = {"topic_name": "__cluster_metadata", "partitions": [{"partition_index": 0}]}
SERVED = {  # every version kio knows is served
    ApiKey.DESCRIBE_CONFIGS: (1, 4),
    ApiKey.ELECT_LEADERS: (0, 2),
    ApiKey.DESCRIBE_LOG_DIRS: (1, 5),
    ApiKey.ALTER_REPLICA_LOG_DIRS: (1, 2),
    ApiKey.DESCRIBE_QUORUM: (0, 2),
    ApiKey.LIST_PARTITION_REASSIGNMENTS: (0, 0),
    ApiKey.ALTER_PARTITION_REASSIGNMENTS: (0, 1),
    ApiKey.DESCRIBE_TOPIC_PARTITIONS: (0, 0),
}


def call(agent: Agent, api_key: ApiKey, version: int, values: dict[str, Any]) -> Any:
    """Send one request built from `values` (fields the version lacks are dropped)."""
    return raw_call(agent.port, build(codec.request_schema(api_key, version), values))


def versions(api_key: ApiKey) -> list[int]:
    low, high = SERVED[api_key]
    return list(range(low, high + 1))


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """An agent with topic "t" (2 partitions, records acknowledged durable in partition 0)."""
    data_dir: Path = tmp_path_factory.mktemp("cluster-admin") / "data"
    with start_agent(data_dir, "--num-partitions", NUM_PARTITIONS) as running:
        admin = AdminClient({"bootstrap.servers": running.bootstrap})
        admin.create_topics([NewTopic("t", 2)])["t"].result(WAIT_S)
        producer = Producer({"bootstrap.servers": running.bootstrap, "acks": "all"})
        for index in range(RECORDS):
            producer.produce("t", b"v%d" % index, partition=0)
        assert producer.flush(WAIT_S) == 0
        yield running
        running.stop_cleanly()


@pytest.fixture
def kafka_admin(agent: Agent) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=agent.bootstrap, request_timeout_ms=WAIT_S * 1000)
    yield client
    client.close()


def _log_dir_name(agent: Agent) -> str:
    (result,) = call(agent, ApiKey.DESCRIBE_LOG_DIRS, 4, {"topics": []}).results
    return str(result.log_dir)


# --- ApiVersions -------------------------------------------------------------------------------


def test_api_versions_advertise_the_served_ranges(agent: Agent) -> None:
    answer = raw_call(agent.port, api_versions_request(2))  # v3+: raw_call reads a v1 header
    listed = {key.api_key: (key.min_version, key.max_version) for key in answer.api_keys}
    assert {key: listed[key] for key in SERVED} == SERVED


# --- DescribeConfigs for brokers ---------------------------------------------------------------


def test_kafka_python_describes_broker_configs_alone_and_with_topics(
    kafka_admin: KafkaAdminClient,
) -> None:
    broker = KafkaConfigResource(ConfigResourceType.BROKER, "0")
    every = kafka_admin.describe_configs([broker], config_filter="all")["broker"]["0"]
    assert every["num.partitions"]["value"] == NUM_PARTITIONS
    assert every["num.partitions"]["config_source"] == "STATIC_BROKER_CONFIG"
    assert every["auto.create.topics.enable"]["config_source"] == "DEFAULT_CONFIG"
    assert every["default.replication.factor"]["value"] == "1"
    assert all(entry["read_only"] for entry in every.values())
    topic = KafkaConfigResource(ConfigResourceType.TOPIC, "t")
    mixed = kafka_admin.describe_configs([broker, topic], config_filter="all")
    assert mixed["broker"]["0"] == every
    assert mixed["topic"]["t"]["retention.ms"]["value"] == "604800000"
    static = kafka_admin.describe_configs([broker], config_filter="static")["broker"]["0"]
    # flags set these; the node id comes from membership, fixed for the agent's life
    assert set(static) == {
        "num.partitions",
        "streamhouse.flush.interval.ms",
        "node.id",
        "broker.id",
    }
    assert kafka_admin.describe_configs([broker])["broker"]["0"] == {}  # none set at run time


def test_confluent_describes_broker_configs_alone_and_with_topics(agent: Agent) -> None:
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    broker = ConfigResource(ResourceType.BROKER, "0")
    futures = admin.describe_configs([broker, ConfigResource(ResourceType.TOPIC, "t")])
    answers = {resource.restype: future.result(WAIT_S) for resource, future in futures.items()}
    configs = answers[ResourceType.BROKER]
    assert configs["num.partitions"].value == NUM_PARTITIONS
    assert ConfigSource(configs["num.partitions"].source) is ConfigSource.STATIC_BROKER_CONFIG
    assert configs["log.retention.ms"].value == answers[ResourceType.TOPIC]["retention.ms"].value
    assert configs["streamhouse.agent.id"].value == _log_dir_name(agent).rsplit("/", 1)[1]
    assert all(entry.is_read_only for entry in configs.values())


@pytest.mark.parametrize("version", versions(ApiKey.DESCRIBE_CONFIGS))
def test_raw_broker_configs_at_every_version(agent: Agent, version: int) -> None:
    request = {
        "resources": [
            {"resource_type": 4, "resource_name": "0", "configuration_keys": ["num.partitions"]},
            {"resource_type": 4, "resource_name": "1", "configuration_keys": None},
            {"resource_type": 4, "resource_name": "", "configuration_keys": None},
        ],
        "include_synonyms": True,
        "include_documentation": True,
    }
    here, other, defaults = call(agent, ApiKey.DESCRIBE_CONFIGS, version, request).results
    assert (here.error_code, other.error_code, defaults.error_code) == (0, E_INVALID_REQUEST, 0)
    assert "this agent is broker 0" in other.error_message
    assert defaults.configs == ()
    (entry,) = here.configs
    assert (entry.name, entry.value, entry.read_only) == ("num.partitions", NUM_PARTITIONS, True)
    assert entry.config_source == STATIC_BROKER_CONFIG
    synonyms = [(s.value, s.source) for s in entry.synonyms]
    assert synonyms == [(NUM_PARTITIONS, STATIC_BROKER_CONFIG), ("1", DEFAULT_CONFIG)]
    if version >= 3:
        assert entry.config_type == 3  # INT
        assert "auto-created topic" in entry.documentation


# --- ElectLeaders ------------------------------------------------------------------------------


def test_kafka_python_elects_no_leader(kafka_admin: KafkaAdminClient) -> None:
    answer = kafka_admin.elect_leaders(0, {"t": [0, 1]})
    codes = [p.error_code for r in answer.replica_election_results for p in r.partition_result]
    assert codes == [E_ELECTION_NOT_NEEDED, E_ELECTION_NOT_NEEDED]


def test_confluent_elects_no_leader(agent: Agent) -> None:
    admin = AdminClient({"bootstrap.servers": agent.bootstrap})
    wanted = [ConfluentPartition("t", 1), ConfluentPartition("missing", 0)]
    results = admin.elect_leaders(ElectionType.PREFERRED, wanted).result(WAIT_S)
    errors = {(tp.topic, tp.partition): error.code() for tp, error in results.items()}
    assert errors == {
        ("t", 1): KafkaError.ELECTION_NOT_NEEDED,
        ("missing", 0): KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
    assert admin.elect_leaders(ElectionType.UNCLEAN, None).result(WAIT_S) == {}


@pytest.mark.parametrize("version", versions(ApiKey.ELECT_LEADERS))
def test_raw_elect_leaders_at_every_version(agent: Agent, version: int) -> None:
    named = {"topic_partitions": [{"topic": "t", "partitions": [0, 7]}], "timeout": 1000}
    answer = call(agent, ApiKey.ELECT_LEADERS, version, {**named, "election_type": 1})
    (result,) = answer.replica_election_results
    codes = [(p.partition_id, p.error_code) for p in result.partition_result]
    assert (result.topic, codes) == ("t", [(0, E_ELECTION_NOT_NEEDED), (7, 3)])
    every = call(agent, ApiKey.ELECT_LEADERS, version, {"topic_partitions": None, "timeout": 1000})
    assert [(r.topic, r.partition_result) for r in every.replica_election_results] == [("t", ())]
    if version >= 1:
        unknown = call(agent, ApiKey.ELECT_LEADERS, version, {**named, "election_type": 9})
        assert unknown.error_code == E_INVALID_REQUEST
        codes = [p.error_code for p in unknown.replica_election_results[0].partition_result]
        assert codes == [E_INVALID_REQUEST, E_INVALID_REQUEST]


# --- DescribeLogDirs and AlterReplicaLogDirs ---------------------------------------------------


def test_kafka_python_describes_the_one_log_dir(
    agent: Agent, kafka_admin: KafkaAdminClient
) -> None:
    (described,) = kafka_admin.describe_log_dirs()
    (log_dir,) = described["log_dirs"]
    assert (described["broker"], log_dir["error_code"]) == (0, E_NONE)
    assert log_dir["log_dir"].startswith("/streamhouse/agents/agent-")
    (topic,) = log_dir["topics"]
    sizes = {p["partition_index"]: p["partition_size"] for p in topic["partitions"]}
    assert topic["name"] == "t" and sizes[1] == 0
    assert sizes[0] > RECORDS * len(b"v0")  # acks=all: in a committed object
    lags = [p["offset_lag"] for p in topic["partitions"]]
    assert lags == [0, 0]  # everything acknowledged is durable


def test_kafka_python_moves_a_replica_only_where_it_is(
    agent: Agent, kafka_admin: KafkaAdminClient
) -> None:
    own = _log_dir_name(agent)
    moved = kafka_admin.alter_replica_log_dirs({("t", 0, 0): "/var/lib/kafka", ("t", 1, 0): own})
    assert {key.partition: error for key, error in moved.items()} == {
        0: LogDirNotFoundError,
        1: NoError,
    }


@pytest.mark.parametrize("version", versions(ApiKey.DESCRIBE_LOG_DIRS))
def test_raw_describe_log_dirs_at_every_version(agent: Agent, version: int) -> None:
    asked = {"topics": [{"topic": "t", "partitions": [0, 9]}, {"topic": "gone", "partitions": [0]}]}
    (result,) = call(agent, ApiKey.DESCRIBE_LOG_DIRS, version, asked).results
    assert result.error_code == E_NONE and result.log_dir == _log_dir_name(agent)
    (topic,) = result.topics
    (partition,) = topic.partitions
    assert (topic.name, partition.partition_index, partition.offset_lag) == ("t", 0, 0)
    assert partition.partition_size > 0 and not partition.is_future_key
    if version >= 4:
        assert (result.total_bytes, result.usable_bytes) == (-1, -1)  # the object store: unsized


@pytest.mark.parametrize("version", versions(ApiKey.ALTER_REPLICA_LOG_DIRS))
def test_raw_alter_replica_log_dirs_at_every_version(agent: Agent, version: int) -> None:
    def moved(path: str, topic: str) -> int:
        dirs = [{"path": path, "topics": [{"name": topic, "partitions": [1]}]}]
        answer = call(agent, ApiKey.ALTER_REPLICA_LOG_DIRS, version, {"dirs": dirs})
        (result,) = answer.results
        return int(result.partitions[0].error_code)

    assert moved("/elsewhere", "t") == E_LOG_DIR_NOT_FOUND
    assert moved(_log_dir_name(agent), "t") == E_NONE
    assert moved(_log_dir_name(agent), "gone") == E_UNKNOWN_TOPIC_OR_PARTITION


# --- DescribeQuorum ----------------------------------------------------------------------------


def test_kafka_python_describes_the_metadata_quorum(
    agent: Agent, kafka_admin: KafkaAdminClient
) -> None:
    quorum = kafka_admin.describe_metadata_quorum()
    (topic,) = quorum["topics"]
    (partition,) = topic["partitions"]
    assert (topic["topic_name"], partition["error"], partition["leader_id"]) == (
        "__cluster_metadata",
        None,
        0,
    )
    assert [voter["replica_id"] for voter in partition["current_voters"]] == [0]
    assert partition["observers"] == []
    (node,) = quorum["nodes"]
    assert [(listener["host"], listener["port"]) for listener in node["listeners"]] == [
        ("127.0.0.1", agent.port)
    ]


@pytest.mark.parametrize("version", versions(ApiKey.DESCRIBE_QUORUM))
def test_raw_describe_quorum_at_every_version(agent: Agent, version: int) -> None:
    answer = call(agent, ApiKey.DESCRIBE_QUORUM, version, {"topics": [QUORUM]})
    (partition,) = answer.topics[0].partitions
    assert (answer.error_code, partition.error_code, partition.leader_id) == (0, 0, 0)
    (voter,) = partition.current_voters
    assert voter.replica_id == 0 and voter.log_end_offset == -1
    if version >= 1:
        assert voter.last_caught_up_timestamp > 0
    if version >= 2:
        assert [node.node_id for node in answer.nodes] == [0]
    other = {"topic_name": "orders", "partitions": [{"partition_index": 0}]}
    refused = call(agent, ApiKey.DESCRIBE_QUORUM, version, {"topics": [QUORUM, other]})
    codes = [(t.topic_name, p.error_code) for t in refused.topics for p in t.partitions]
    assert codes == [("__cluster_metadata", 3), ("orders", 3)]


# --- List- and AlterPartitionReassignments -----------------------------------------------------


def test_kafka_python_lists_and_alters_reassignments(kafka_admin: KafkaAdminClient) -> None:
    assert kafka_admin.list_partition_reassignments() == {}
    assert kafka_admin.alter_partition_reassignments({TopicPartition("t", 0): [0]}) == {
        TopicPartition("t", 0): None
    }
    refused = kafka_admin.alter_partition_reassignments({TopicPartition("t", 1): [3]})
    assert refused == {TopicPartition("t", 1): InvalidReplicationAssignmentError}
    assert kafka_admin.list_partition_reassignments() == {}


@pytest.mark.parametrize("version", versions(ApiKey.ALTER_PARTITION_REASSIGNMENTS))
def test_raw_alter_partition_reassignments_at_every_version(agent: Agent, version: int) -> None:
    # one agent: a second replica names an agent not in the cluster before it is one too many
    targets = [[0], None, [0, 1], [4], [], [0, 0]]
    partitions = [{"partition_index": 0, "replicas": target} for target in targets]
    request = {"timeout": 1000, "topics": [{"name": "t", "partitions": partitions}]}
    answer = call(agent, ApiKey.ALTER_PARTITION_REASSIGNMENTS, version, request)
    assert answer.error_code == E_NONE
    codes = [p.error_code for p in answer.responses[0].partitions]
    assert codes == [E_NONE, E_NO_REASSIGNMENT_IN_PROGRESS] + [E_INVALID_REPLICA_ASSIGNMENT] * 4
    assert "not in the cluster" in answer.responses[0].partitions[2].error_message


def test_raw_list_partition_reassignments(agent: Agent) -> None:
    for topics in (None, [{"name": "t", "partition_indexes": [0, 1]}]):
        request = {"timeout": 1000, "topics": topics}
        answer = call(agent, ApiKey.LIST_PARTITION_REASSIGNMENTS, 0, request)
        assert (answer.error_code, answer.topics) == (E_NONE, ())


# --- DescribeTopicPartitions -------------------------------------------------------------------


def test_kafka_python_pages_through_topic_partitions(kafka_admin: KafkaAdminClient) -> None:
    first = kafka_admin.describe_topic_partitions(["t"], response_partition_limit=1)
    assert [p["partition_index"] for p in first["topics"][0]["partitions"]] == [0]
    assert first["next_cursor"] == {"topic_name": "t", "partition_index": 1}
    rest = kafka_admin.describe_topic_partitions(["t"], cursor=first["next_cursor"])
    (topic,) = rest["topics"]
    assert [p["partition_index"] for p in topic["partitions"]] == [1]
    assert (topic["partitions"][0]["leader_id"], rest["next_cursor"]) == (0, None)


def test_raw_describe_topic_partitions(agent: Agent) -> None:
    def page(names: list[str], limit: int, cursor: dict[str, Any] | None) -> Any:
        request = {
            "topics": [{"name": name} for name in names],
            "response_partition_limit": limit,
            "cursor": cursor,
        }
        return call(agent, ApiKey.DESCRIBE_TOPIC_PARTITIONS, 0, request)

    answer = page(["t", "missing"], 10, None)
    assert [(t.name, t.error_code, len(t.partitions)) for t in answer.topics] == [
        ("missing", E_UNKNOWN_TOPIC_OR_PARTITION, 0),
        ("t", E_NONE, 2),
    ]
    (partition, _) = answer.topics[1].partitions
    assert (partition.replica_nodes, partition.isr_nodes, partition.eligible_leader_replicas) == (
        (0,),
        (0,),
        (),
    )
    assert answer.next_cursor is None
    refused = page(["t"], 10, {"topic_name": "other", "partition_index": 0})
    assert [(t.name, t.error_code) for t in refused.topics] == [("t", E_INVALID_REQUEST)]
