"""The admin service's cluster-shape answers on simulated ports: broker configs, elections, the
log directory, replica moves, the quorum, reassignments and DescribeTopicPartitions' pages,
each refusal with Kafka's error code; and the paging rule alone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from streamhouse.engine.admin import TopicDescription, TopicRefusal
from streamhouse.engine.broker_configs import RESPONSE_PARTITIONS_MAX
from streamhouse.engine.cluster import AgentAddress
from streamhouse.engine.cluster_shape import (
    PageCursor,
    PageSlice,
    QuorumReplica,
    Reassignment,
    log_dir_path,
    plan_page,
)
from streamhouse.errors import ErrorCode, StreamHouseError
from streamhouse.kafka.records import SimpleRecord, build_batch
from streamhouse.log.topic_configs import ConfigSource, ConfigSynonym, ConfigType
from streamhouse.names import TopicPartition
from tests.unit.test_admin_service import AGENT, World, code_of, run

E = ErrorCode
AGENT_B = AgentAddress("agent-b", 1, "10.0.0.2", 9093)
LEASE_TTL_MS = 10_000
QUORUM = TopicPartition("__cluster_metadata", 0)


def two_agents(scenario: Callable[[World], Awaitable[None]]) -> Callable[[World], Awaitable[None]]:
    """The scenario in a cluster of this agent (node 0) and agent-b (node 1), as membership
    would have listed them."""

    async def in_two(world: World) -> None:
        world.cluster.advertise("10.0.0.1", 9092, 0)
        world.cluster.update([AGENT_B])
        await scenario(world)

    return in_two


async def _led_by_b(world: World, tp: TopicPartition) -> None:
    lease = await world.metadata.acquire_lease(tp, AGENT_B.agent_id, LEASE_TTL_MS)
    assert lease is not None


async def _append(world: World, tp: TopicPartition, count: int) -> None:
    records = [SimpleRecord(None, b"v" * 100, (), 1) for _ in range(count)]
    appended = await world.log.append(tp, build_batch(records), durable=False)
    await appended.synced


# --- broker configs ------------------------------------------------------------------------


def test_broker_configs_have_kafka_names_values_and_sources() -> None:
    async def scenario(world: World) -> None:
        entries = {entry.name: entry for entry in world.admin.describe_broker_configs("2")}
        assert len(entries) == len(world.admin.describe_broker_configs("2"))  # names unique
        shown = {name: (e.value, e.source, e.type) for name, e in entries.items()}
        S, D = ConfigSource.STATIC_BROKER_CONFIG, ConfigSource.DEFAULT_CONFIG
        assert shown["num.partitions"] == ("3", S, ConfigType.INT)  # SETTINGS sets 3
        assert shown["node.id"] == shown["broker.id"] == ("2", S, ConfigType.INT)
        assert shown["message.max.bytes"] == (str(64 * 1024), S, ConfigType.INT)
        assert shown["group.initial.rebalance.delay.ms"] == ("0", S, ConfigType.INT)
        assert shown["auto.create.topics.enable"] == ("true", D, ConfigType.BOOLEAN)
        assert shown["offsets.retention.minutes"] == ("10080", D, ConfigType.INT)
        assert shown["log.cleanup.policy"] == ("delete", D, ConfigType.LIST)
        assert shown["log.retention.ms"] == ("604800000", D, ConfigType.LONG)
        assert shown["log.segment.bytes"] == ("1073741824", D, ConfigType.INT)
        assert shown["default.replication.factor"] == ("1", D, ConfigType.INT)
        assert shown["max.request.partition.size.limit"] == ("2000", D, ConfigType.INT)
        assert shown["streamhouse.agent.id"] == (AGENT, D, ConfigType.STRING)  # generated
        assert all(entry.read_only and entry.documentation for entry in entries.values())
        assert entries["num.partitions"].synonyms == (
            ConfigSynonym("num.partitions", "3", S),
            ConfigSynonym("num.partitions", "1", D),
        )
        assert entries["log.roll.ms"].synonyms == (ConfigSynonym("log.roll.ms", "604800000", D),)

    run(scenario)


def test_broker_configs_are_answered_for_this_broker_only() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        asked = admin.describe_broker_configs("2", ["num.partitions", "no.such.config"])
        assert [entry.name for entry in asked] == ["num.partitions"]
        assert admin.describe_broker_configs("") == []  # cluster-wide dynamic defaults: none
        for other in ("0", "7", "broker-2", "2.0"):
            with pytest.raises(StreamHouseError) as raised:
                admin.describe_broker_configs(other)
            assert raised.value.code == E.INVALID_REQUEST, other

    run(scenario)


# --- elections -----------------------------------------------------------------------------


def test_no_election_is_ever_needed() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        await admin.create_topic("t", 2)
        for election in (0, 1):
            answers = await admin.elect_leaders(election, {"t": [0, 1, 5], "nope": [0]})
            codes = {name: {i: e.code for i, e in parts.items()} for name, parts in answers.items()}
            assert codes == {
                "t": {
                    0: E.ELECTION_NOT_NEEDED,
                    1: E.ELECTION_NOT_NEEDED,
                    5: E.UNKNOWN_TOPIC_OR_PARTITION,
                },
                "nope": {0: E.UNKNOWN_TOPIC_OR_PARTITION},
            }
        assert "preferred election" in str((await admin.elect_leaders(0, {"t": [0]}))["t"][0])
        assert await admin.elect_leaders(1, None) == {"t": {}}  # Kafka lists only elections held
        assert await code_of(admin.elect_leaders(2, {"t": [0]})) == E.INVALID_REQUEST

    run(scenario)


# --- the log directory ---------------------------------------------------------------------


def test_the_log_dir_holds_what_metadata_names_this_agent_replica_of() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        await admin.create_topic("t", 3)
        await admin.create_topic("u", 1)
        t0, t1 = TopicPartition("t", 0), TopicPartition("t", 1)
        await _led_by_b(world, TopicPartition("t", 2))
        await _append(world, t0, 3)
        await world.log.flusher.flush_once()
        await _append(world, t0, 2)  # synced, not yet durable
        await _append(world, t1, 4)
        log_dir = await admin.describe_log_dir(None)
        assert log_dir.path == log_dir_path(AGENT) == f"/streamhouse/agents/{AGENT}"
        shown = {p.tp: (p.size_bytes > 0, p.durable_lag) for p in log_dir.partitions}
        assert shown == {
            t0: (True, 2),
            t1: (False, 4),
            TopicPartition("u", 0): (False, 0),  # no lease: this agent answers for it
        }
        sizes = await world.metadata.partition_sizes("t")
        assert [p.size_bytes for p in log_dir.partitions if p.tp == t0] == [sizes[0]]
        await world.log.flusher.flush_once()
        asked = await admin.describe_log_dir({"t": [1, 2, 9], "nope": [0]})
        assert [(p.tp, p.durable_lag, p.size_bytes > 0) for p in asked.partitions] == [
            (t1, 0, True)
        ]
        assert (await admin.describe_log_dir({})).partitions == ()

    run(two_agents(scenario))


def test_replicas_move_only_into_the_directory_they_are_in() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        await admin.create_topic("t", 1)
        own = log_dir_path(AGENT)
        await admin.alter_replica_log_dir(own, TopicPartition("t", 0))
        moved = admin.alter_replica_log_dir("/data/kafka-2", TopicPartition("t", 0))
        assert await code_of(moved) == E.LOG_DIR_NOT_FOUND
        unknown = admin.alter_replica_log_dir(own, TopicPartition("t", 1))
        assert await code_of(unknown) == E.UNKNOWN_TOPIC_OR_PARTITION

    run(scenario)


# --- the quorum ----------------------------------------------------------------------------


def test_the_quorum_is_the_metadata_store_spoken_for_by_the_agent_asked() -> None:
    async def scenario(world: World) -> None:
        world.clock.advance_ms(5_000)
        now = world.clock.now_ms()
        quorum = world.admin.describe_quorum([QUORUM])
        assert (quorum.leader_id, quorum.leader_epoch, quorum.high_watermark) == (0, 0, -1)
        assert quorum.voters == (QuorumReplica(0, -1, now, now),)
        assert quorum.observers == (QuorumReplica(1, -1, -1, -1),)
        assert quorum.voter_addresses == (AgentAddress(AGENT, 0, "10.0.0.1", 9092),)
        for named in ([], [TopicPartition("__cluster_metadata", 1)], [QUORUM, QUORUM]):
            with pytest.raises(StreamHouseError) as raised:
                world.admin.describe_quorum(named)
            assert raised.value.code == E.UNKNOWN_TOPIC_OR_PARTITION, named

    run(two_agents(scenario))


# --- reassignments -------------------------------------------------------------------------


def test_a_reassignment_pins_a_partition_to_the_named_agent_until_it_leads_there() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        await admin.create_topic("t", 2)
        t0, t1 = TopicPartition("t", 0), TopicPartition("t", 1)
        await _led_by_b(world, t1)
        await admin.reassign_partition(t1, [1])  # onto its holder: nothing to move
        assert await admin.list_reassignments() == []
        await admin.reassign_partition(t1, [0])  # b holds the lease until it hands it over
        await admin.reassign_partition(t0, [1])  # nobody holds it: b takes it
        assert await admin.list_reassignments() == [
            Reassignment(t0, (1,), (1,), ()),
            Reassignment(t1, (0,), (0,), (1,)),
        ]
        assert (await world.metadata.get_partition(t1)).preferred_agent == AGENT
        await admin.reassign_partition(t0, None)  # cancelled: the balancer places it again
        assert (await world.metadata.get_partition(t0)).preferred_agent is None
        assert [move.tp for move in await admin.list_reassignments()] == [t1]
        await world.metadata.release_lease(t1, AGENT_B.agent_id)  # b hands it over
        await world.log.take(t1)
        assert await admin.list_reassignments() == []  # done; the pin stays

    run(two_agents(scenario))


def test_reassignments_are_refused_with_kafkas_codes() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        await admin.create_topic("t", 1)
        t0 = TopicPartition("t", 0)
        refusals = {
            (t0, (0, 1)): E.INVALID_REPLICATION_FACTOR,
            (t0, ()): E.INVALID_REPLICA_ASSIGNMENT,
            (t0, (0, 0)): E.INVALID_REPLICA_ASSIGNMENT,
            (t0, (5,)): E.INVALID_REPLICA_ASSIGNMENT,
            (t0, (5, 6)): E.INVALID_REPLICA_ASSIGNMENT,  # unknown agents before the count
            (t0, None): E.NO_REASSIGNMENT_IN_PROGRESS,
            (TopicPartition("t", 2), (0,)): E.UNKNOWN_TOPIC_OR_PARTITION,
            (TopicPartition("nope", 0), None): E.UNKNOWN_TOPIC_OR_PARTITION,
        }
        for (tp, target), code in refusals.items():
            wanted = None if target is None else list(target)
            assert await code_of(admin.reassign_partition(tp, wanted)) == code, (tp, target)
        assert await admin.list_reassignments() == []
        assert (await world.metadata.get_partition(t0)).preferred_agent is None

    run(two_agents(scenario))


# --- DescribeTopicPartitions ---------------------------------------------------------------


def _shown(topics: tuple[TopicDescription | TopicRefusal, ...]) -> list[tuple[str, object]]:
    return [
        (t.name, t.error.code)
        if isinstance(t, TopicRefusal)
        else (t.name, [p.partition for p in t.partitions])
        for t in topics
    ]


def test_topic_partitions_come_in_pages_with_a_cursor() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        for name, count in (("b", 2), ("a", 3), ("c", 1)):
            await admin.create_topic(name, count)
        first = await admin.describe_topic_partitions([], None, 4)
        assert _shown(first.topics) == [("a", [0, 1, 2]), ("b", [0])]
        assert first.next_cursor == PageCursor("b", 1)
        second = await admin.describe_topic_partitions([], first.next_cursor, 4)
        assert _shown(second.topics) == [("b", [1]), ("c", [0])]
        assert second.next_cursor is None
        described = second.topics[0]
        assert isinstance(described, TopicDescription)
        assert (described.partitions[0].leader_node, described.partitions[0].leader_epoch) == (2, 0)
        named = await admin.describe_topic_partitions(["c", "bad name!", "a", "gone"], None, 10)
        assert _shown(named.topics) == [
            ("a", [0, 1, 2]),
            ("bad name!", E.INVALID_TOPIC_EXCEPTION),
            ("c", [0]),
            ("gone", E.UNKNOWN_TOPIC_OR_PARTITION),
        ]
        from_b = await admin.describe_topic_partitions(["c", "b", "a"], PageCursor("b", 1), 1)
        assert (_shown(from_b.topics), from_b.next_cursor) == ([("b", [1])], PageCursor("c", 0))

    run(scenario)


def test_malformed_page_requests_are_refused() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        await admin.create_topic("a", 1)
        for named, cursor, limit in (
            (["a"], PageCursor("b", 0), 10),  # the cursor's topic is not named
            (["a"], PageCursor("a", -1), 10),
            (["a"], None, 0),
            ([], None, -5),
        ):
            call = admin.describe_topic_partitions(named, cursor, limit)
            assert await code_of(call) == E.INVALID_REQUEST, (named, cursor, limit)

    run(scenario)


def test_a_page_holds_at_most_the_response_partition_limit() -> None:
    async def scenario(world: World) -> None:
        await world.admin.create_topic("wide", RESPONSE_PARTITIONS_MAX + 1)
        page = await world.admin.describe_topic_partitions(
            ["wide"], None, 10 * RESPONSE_PARTITIONS_MAX
        )
        (topic,) = page.topics
        assert isinstance(topic, TopicDescription)
        assert len(topic.partitions) == RESPONSE_PARTITIONS_MAX
        assert page.next_cursor == PageCursor("wide", RESPONSE_PARTITIONS_MAX)

    run(scenario)


@pytest.mark.parametrize(
    ("counts", "cursor", "limit", "page", "next_cursor"),
    [
        # a page that ends with a topic: the next starts at the following topic
        ([("a", 2), ("b", 1)], None, 2, [PageSlice("a", range(2))], PageCursor("b", 0)),
        # ... even one that does not exist (its error comes with the next page)
        ([("a", 2), ("x", None)], None, 2, [PageSlice("a", range(2))], PageCursor("x", 0)),
        # a topic that does not exist takes no room
        (
            [("a", 1), ("x", None), ("b", 1)],
            None,
            2,
            [PageSlice("a", range(1)), PageSlice("x", None), PageSlice("b", range(1))],
            None,
        ),
        # a cursor past the topic's end shows none of it and goes on
        (
            [("a", 2), ("b", 1)],
            PageCursor("a", 5),
            3,
            [PageSlice("a", range(5, 2)), PageSlice("b", range(1))],
            None,
        ),
        # the cursor's partition counts only for the cursor's topic
        ([("b", 3)], PageCursor("a", 2), 5, [PageSlice("b", range(3))], None),
    ],
)
def test_the_paging_rule(
    counts: list[tuple[str, int | None]],
    cursor: PageCursor | None,
    limit: int,
    page: list[PageSlice],
    next_cursor: PageCursor | None,
) -> None:
    assert plan_page(counts, cursor, limit) == (page, next_cursor)
