"""The admin service on simulated ports: every topic, group and cluster rule a door relies on,
each refusal with its Kafka error code."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from sim.clock import VirtualClock
from sim.disk import SimDisk
from sim.metadata import SimMetadataStore
from sim.object_store import SimObjectStore
from sim.rng import SeededRng
from streamhouse.config import Settings
from streamhouse.engine.admin import (
    LEADER_HINT_MAX_AGE_MS,
    AdminService,
    ConfigChange,
    ConfigOperation,
    topic_id,
)
from streamhouse.engine.cluster import AgentAddress, ClusterDirectory
from streamhouse.engine.coordinators import (
    COORDINATOR_SLOTS,
    COORDINATOR_TOPIC,
    ensure_coordinator_slots,
)
from streamhouse.engine.groups import GroupCoordinator
from streamhouse.engine.log_store import LogStore
from streamhouse.errors import ErrorCode, InvalidRecord, StreamHouseError
from streamhouse.kafka.records import SimpleRecord, build_batch
from streamhouse.log.group_state import GroupState, JoinRequest, JoinResponse
from streamhouse.log.topic_configs import ConfigSource, ConfigType
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import OffsetToCommit

E = ErrorCode
AGENT = "agent-a"
BATCH_BYTES_MAX = 64 * 1024
SETTINGS = Settings(
    batch_bytes_max=BATCH_BYTES_MAX,
    num_partitions=3,
    group_initial_rebalance_delay_ms=0,
)
NODE_ID = 2  # as the membership service would have registered it
SETTLE_ROUNDS = 20
JOIN_VERSION = 5
SESSION_MS = 10_000
TOPIC_NAME_STRATEGY = "io.confluent.kafka.serializers.subject.TopicNameStrategy"
DEFAULTS = {
    "cleanup.policy": "delete",
    "max.message.bytes": str(BATCH_BYTES_MAX),
    "retention.bytes": "-1",
    "retention.ms": "604800000",
    "segment.bytes": "1073741824",
    "segment.ms": "604800000",
    "delete.retention.ms": "86400000",
    "min.compaction.lag.ms": "0",
    "max.compaction.lag.ms": "9223372036854775807",
    "min.cleanable.dirty.ratio": "0.5",
    "confluent.key.schema.validation": "false",
    "confluent.value.schema.validation": "false",
    "confluent.key.subject.name.strategy": TOPIC_NAME_STRATEGY,
    "confluent.value.subject.name.strategy": TOPIC_NAME_STRATEGY,
}


class World:
    """An admin service over a log store, a group coordinator and the simulated metadata."""

    def __init__(self, settings: Settings) -> None:
        rng = SeededRng(5)
        self.clock = VirtualClock()
        self.metadata = SimMetadataStore(rng.fork("metadata"))
        self.log = LogStore(
            settings,
            self.clock,
            rng,
            SimDisk(rng.fork("disk")),
            SimObjectStore(None, rng.fork("objects")),
            AGENT,
            topics=self.metadata,
            leases=self.metadata,
            producers=self.metadata,
        )
        self.groups = GroupCoordinator(
            settings, self.clock, rng.fork("groups"), topics=self.metadata, groups=self.metadata
        )
        self.cluster = ClusterDirectory(AGENT)
        self.cluster.advertise("10.0.0.1", 9092, NODE_ID)
        self.joins: list[asyncio.Future[JoinResponse]] = []  # joins waiting for a rebalance
        self.admin = AdminService(
            settings,
            self.clock,
            self.metadata,
            self.log,
            self.groups,
            self.cluster,
            leases=self.metadata,
        )


def run(scenario: Callable[[World], Awaitable[None]], settings: Settings = SETTINGS) -> None:
    async def main() -> None:
        world = World(settings)
        await world.log.open(run_background=False)
        world.groups.start()
        try:
            await scenario(world)
        finally:
            await world.groups.close()
            await world.log.close(flush=False)

    asyncio.run(main())


async def refused(call: Awaitable[object]) -> StreamHouseError:
    with pytest.raises(StreamHouseError) as raised:
        await call
    return raised.value


async def code_of(call: Awaitable[object]) -> ErrorCode:
    return (await refused(call)).code


# --- create ------------------------------------------------------------------------------


def test_create_checks_name_count_and_configs_then_creates() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        created = await admin.create_topic("orders", 2, {"retention.ms": "1000"})
        assert (created.name, created.partition_count) == ("orders", 2)
        assert created.configs == {"retention.ms": "1000"}
        assert (await admin.create_topic("sized-by-broker")).partition_count == 3
        assert await code_of(admin.create_topic("bad name!", 1)) == E.INVALID_TOPIC_EXCEPTION
        assert await code_of(admin.create_topic("x" * 250, 1)) == E.INVALID_TOPIC_EXCEPTION
        assert await code_of(admin.create_topic("empty", 0)) == E.INVALID_PARTITIONS
        assert await code_of(admin.create_topic("negative", -2)) == E.INVALID_PARTITIONS
        assert await code_of(admin.create_topic("orders", 5)) == E.TOPIC_ALREADY_EXISTS
        names = [topic.name for topic in await admin.list_topics()]
        assert names == ["orders", "sized-by-broker"]

    run(scenario)


@pytest.mark.parametrize(
    ("configs", "message"),
    [
        ({"min.insync.replicas": "2"}, "unknown topic config 'min.insync.replicas'"),
        ({"retention.ms": "a week"}, "needs an integer"),
        ({"retention.ms": "-2"}, "must be in [-1,"),
        ({"segment.bytes": "13"}, "must be in [14,"),
        ({"segment.bytes": str(2**31)}, "must be in [14, 2147483647]"),
        ({"segment.ms": "0"}, "must be in [1,"),
        ({"cleanup.policy": "archive"}, "cleanup.policy 'archive' is not compact and/or delete"),
        ({"cleanup.policy": ""}, "is not compact and/or delete"),
        ({"min.cleanable.dirty.ratio": "1.5"}, "must be in [0, 1], got 1.5"),
        ({"min.cleanable.dirty.ratio": "half"}, "needs a number"),
        ({"min.cleanable.dirty.ratio": "nan"}, "needs a number"),
        ({"max.compaction.lag.ms": "0"}, "must be in [1,"),
        ({"confluent.value.schema.validation": "yes"}, "must be true or false"),
        ({"confluent.key.subject.name.strategy": "RecordNameStrategy"}, "must be one of"),
    ],
)
def test_configs_kafka_refuses_are_refused_at_create(configs: dict[str, str], message: str) -> None:
    async def scenario(world: World) -> None:
        error = await refused(world.admin.create_topic("t", 1, configs))
        assert error.code == E.INVALID_CONFIG and message in str(error)
        assert await world.admin.list_topics() == []

    run(scenario)


def test_validate_only_checks_everything_and_creates_nothing() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        record = await admin.create_topic(
            "t", -1, {"cleanup.policy": "compact"}, validate_only=True
        )
        assert (record.name, record.partition_count) == ("t", 3)
        assert await admin.list_topics() == []
        await admin.create_topic("t", 1)
        assert await code_of(admin.create_topic("t", 1, validate_only=True)) == (
            E.TOPIC_ALREADY_EXISTS
        )
        assert admin.partition_count(-1) == 3 and admin.partition_count(7) == 7

    run(scenario)


# --- Metadata's lookup and auto-create -------------------------------------------------------


def test_find_topic_auto_creates_with_the_broker_partition_count() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        assert await code_of(admin.find_topic("asked", auto_create=False)) == (
            E.UNKNOWN_TOPIC_OR_PARTITION
        )
        made = await admin.find_topic("asked", auto_create=True)
        assert made.partition_count == 3
        assert await admin.find_topic("asked", auto_create=False) == made
        for auto_create in (True, False):
            assert await code_of(admin.find_topic("bad name!", auto_create=auto_create)) == (
                E.INVALID_TOPIC_EXCEPTION
            )

    run(scenario)


def test_find_topic_never_creates_when_the_broker_says_no() -> None:
    async def scenario(world: World) -> None:
        error = await refused(world.admin.find_topic("asked", auto_create=True))
        assert error.code == E.UNKNOWN_TOPIC_OR_PARTITION and "'asked'" in str(error)
        assert await world.admin.list_topics() == []

    run(scenario, SETTINGS.with_overrides(auto_create_topics=False))


def test_a_create_lost_to_a_race_answers_the_winner() -> None:
    async def scenario(world: World) -> None:
        first = await world.admin.create_topic("raced", 2)
        winner = world.metadata.get_topic

        async def not_yet(name: str) -> None:  # the lookup ran before the other create
            world.metadata.get_topic = winner  # type: ignore[method-assign]
            return None

        world.metadata.get_topic = not_yet  # type: ignore[method-assign]
        assert await world.admin.find_topic("raced", auto_create=True) == first

    run(scenario)


# --- the data path's checks ------------------------------------------------------------------


def test_a_compacted_topic_refuses_records_without_a_key() -> None:
    keyed = build_batch([SimpleRecord(b"k", b"v"), SimpleRecord(b"k2", None)])
    keyless = build_batch([SimpleRecord(b"k", b"v"), SimpleRecord(None, b"x")] * 2)

    async def scenario(world: World) -> None:
        admin = world.admin
        await admin.create_topic("table", 1, {"cleanup.policy": "compact,delete"})
        await admin.create_topic("events", 1)
        table, events = TopicPartition("table", 0), TopicPartition("events", 0)
        await admin.check_produce(table, keyed)
        error = await refused(admin.check_produce(table, keyless))
        assert isinstance(error, InvalidRecord) and error.code == E.INVALID_RECORD
        message = "Compacted topic cannot accept message without key in topic partition table-0."
        assert error.record_errors == [(1, message), (3, message)]
        shown = ", ".join(f"RecordError(batchIndex={i}, message='{message}')" for i in (1, 3))
        assert str(error) == (
            "One or more records have been rejected due to 2 record errors in total, and only "
            f"showing the first three errors at most: [{shown}]"
        )
        # A topic that does not compact never decodes the batch: not even a corrupt one
        await admin.check_produce(events, keyless)
        await admin.check_produce(events, b"not a batch")
        assert await code_of(admin.check_produce(table, b"not a batch")) == E.CORRUPT_MESSAGE
        # This agent's own config change applies at once
        await admin.alter_configs(
            "events", [ConfigChange("cleanup.policy", ConfigOperation.SET, "compact")]
        )
        assert await code_of(admin.check_produce(events, keyless)) == E.INVALID_RECORD
        await admin.replace_configs("table", {})
        await admin.check_produce(table, keyless)

    run(scenario)


def test_a_batch_larger_than_the_topics_max_message_bytes_is_refused() -> None:
    batch = build_batch([SimpleRecord(b"k", b"v" * 300)])

    async def scenario(world: World) -> None:
        admin = world.admin
        await admin.create_topic("small", 1, {"max.message.bytes": str(len(batch) - 1)})
        await admin.create_topic("exact", 1, {"max.message.bytes": str(len(batch))})
        error = await refused(admin.check_produce(TopicPartition("small", 0), batch))
        assert error.code == E.MESSAGE_TOO_LARGE
        assert f"max.message.bytes {len(batch) - 1}" in str(error)
        await admin.check_produce(TopicPartition("exact", 0), batch)
        await admin.alter_configs(
            "small", [ConfigChange("max.message.bytes", ConfigOperation.DELETE, None)]
        )
        await admin.check_produce(TopicPartition("small", 0), batch)  # back to the default

    run(scenario)


def test_produce_learns_an_illegal_name_other_paths_an_unknown_partition() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        await admin.create_topic("t", 2)
        await admin.check_partition(TopicPartition("t", 1))
        await admin.check_produce_partition(TopicPartition("t", 1))
        for tp in (TopicPartition("t", 2), TopicPartition("missing", 0)):
            assert await code_of(admin.check_partition(tp)) == E.UNKNOWN_TOPIC_OR_PARTITION
            assert await code_of(admin.check_produce_partition(tp)) == (
                E.UNKNOWN_TOPIC_OR_PARTITION
            )
        illegal = TopicPartition("bad name!", 0)
        assert await code_of(admin.check_produce_partition(illegal)) == E.INVALID_TOPIC_EXCEPTION
        assert await code_of(admin.check_partition(illegal)) == E.UNKNOWN_TOPIC_OR_PARTITION

    run(scenario)


# --- delete and partitions -------------------------------------------------------------------


def test_delete_drops_the_topic_and_the_partitions_led_here() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        created = await admin.create_topic("t", 1)
        tp = TopicPartition("t", 0)
        appended = await world.log.append(
            tp, build_batch([SimpleRecord(None, b"v", (), 1)]), durable=False
        )
        await appended.synced
        assert world.log.led_partition(tp) is not None
        assert await admin.topic_by_id(topic_id(created)) == created
        assert await admin.delete_topic("t") == created
        assert world.log.led_partition(tp) is None
        assert await code_of(admin.delete_topic("t")) == E.UNKNOWN_TOPIC_OR_PARTITION
        assert await code_of(admin.topic_by_id(topic_id(created))) == (E.UNKNOWN_TOPIC_OR_PARTITION)
        world.clock.advance_ms(1)
        again = await admin.create_topic("t", 1)
        assert topic_id(again) != topic_id(created)

    run(scenario)


def test_partitions_are_added_never_removed() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        await admin.create_topic("t", 2)
        assert (await admin.add_partitions("t", 4, validate_only=True)).partition_count == 4
        assert (await admin.topic("t")).partition_count == 2
        assert (await admin.add_partitions("t", 4)).partition_count == 4
        error = await refused(admin.add_partitions("t", 3))
        assert error.code == E.INVALID_PARTITIONS and "has 4 partitions" in str(error)
        assert await code_of(admin.add_partitions("t", 4)) == E.INVALID_PARTITIONS
        assert await code_of(admin.add_partitions("none", 9)) == E.UNKNOWN_TOPIC_OR_PARTITION

    run(scenario)


# --- configs ---------------------------------------------------------------------------------


def test_described_configs_show_defaults_overrides_and_types() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        await admin.create_topic("t", 1, {"retention.ms": "1000"})
        entries = {entry.name: entry for entry in await admin.describe_configs("t")}
        assert {name: entry.value for name, entry in entries.items()} == {
            **DEFAULTS,
            "retention.ms": "1000",
        }
        assert entries["retention.ms"].source is ConfigSource.DYNAMIC_TOPIC_CONFIG
        assert not entries["retention.ms"].is_default
        assert entries["segment.ms"].source is ConfigSource.DEFAULT_CONFIG
        assert entries["segment.ms"].is_default
        assert entries["cleanup.policy"].type is ConfigType.LIST
        assert entries["segment.bytes"].type is ConfigType.INT
        assert entries["retention.bytes"].type is ConfigType.LONG
        assert entries["min.cleanable.dirty.ratio"].type is ConfigType.DOUBLE
        some = await admin.describe_configs("t", ["segment.ms", "no.such"])
        assert [entry.name for entry in some] == ["segment.ms"]
        assert await code_of(admin.describe_configs("none")) == E.UNKNOWN_TOPIC_OR_PARTITION

    run(scenario)


def test_replacing_configs_resets_every_other_one() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        await admin.create_topic("t", 1, {"retention.ms": "1000", "segment.ms": "60000"})
        await admin.replace_configs("t", {"retention.ms": "5"}, validate_only=True)
        assert (await admin.topic("t")).configs == {"retention.ms": "1000", "segment.ms": "60000"}
        await admin.replace_configs("t", {"retention.ms": "5", "segment.bytes": None})
        assert (await admin.topic("t")).configs == {"retention.ms": "5"}
        assert await code_of(admin.replace_configs("t", {"no.such": "1"})) == E.INVALID_CONFIG
        assert await code_of(admin.replace_configs("none", {})) == E.UNKNOWN_TOPIC_OR_PARTITION

    run(scenario)


def test_clients_cannot_write_delete_grow_or_configure_the_internal_topic() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        await ensure_coordinator_slots(world.metadata, world.clock.now_ms())
        slot = TopicPartition(COORDINATOR_TOPIC, 0)
        await world.log.partition(slot)  # this agent holds the slot: led here
        refusals = [
            admin.check_produce_partition(slot),
            admin.delete_topic(COORDINATOR_TOPIC),
            admin.add_partitions(COORDINATOR_TOPIC, COORDINATOR_SLOTS + 1),
            admin.replace_configs(COORDINATOR_TOPIC, {"retention.ms": "1"}),
            admin.alter_configs(COORDINATOR_TOPIC, []),
        ]
        for call in refusals:
            error = await refused(call)
            assert error.code == E.INVALID_TOPIC_EXCEPTION
            assert "internal topic" in str(error)
        assert (await admin.topic(COORDINATOR_TOPIC)).partition_count == COORDINATOR_SLOTS
        await admin.check_partition(slot)  # reading it is allowed, as Kafka's own

    run(scenario)


def test_incremental_changes_set_delete_append_and_subtract() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        await admin.create_topic("t", 1, {"retention.ms": "1000"})

        async def alter(*changes: tuple[str, ConfigOperation, str | None]) -> dict[str, str]:
            await admin.alter_configs("t", [ConfigChange(*change) for change in changes])
            return dict((await admin.topic("t")).configs)

        appended = await alter(
            ("cleanup.policy", ConfigOperation.APPEND, "compact,delete"),
            ("segment.ms", ConfigOperation.SET, "60000"),
        )
        assert appended == {
            "cleanup.policy": "delete,compact",
            "retention.ms": "1000",
            "segment.ms": "60000",
        }
        subtracted = await alter(
            ("cleanup.policy", ConfigOperation.SUBTRACT, "delete"),
            ("retention.ms", ConfigOperation.DELETE, None),
        )
        assert subtracted == {"cleanup.policy": "compact", "segment.ms": "60000"}
        to_nothing = [ConfigChange("cleanup.policy", ConfigOperation.SUBTRACT, "compact")]
        assert await code_of(admin.alter_configs("t", to_nothing)) == E.INVALID_CONFIG
        not_a_list = [ConfigChange("retention.ms", ConfigOperation.APPEND, "5")]
        error = await refused(admin.alter_configs("t", not_a_list))
        assert error.code == E.INVALID_REQUEST and "is not a list" in str(error)
        unknown = [ConfigChange("no.such", ConfigOperation.SET, "1")]
        assert await code_of(admin.alter_configs("t", unknown)) == E.INVALID_CONFIG
        checked = [ConfigChange("segment.ms", ConfigOperation.SET, "5")]
        await admin.alter_configs("t", checked, validate_only=True)
        assert (await admin.topic("t")).configs["segment.ms"] == "60000"

    run(scenario)


# --- groups ----------------------------------------------------------------------------------


def _subscription(*topics: str) -> bytes:
    names = b"".join(struct.pack(">h", len(t)) + t.encode() for t in topics)
    return struct.pack(">hi", 0, len(topics)) + names + struct.pack(">i", -1)


async def _member(world: World, group_id: str, protocol_type: str, *topics: str) -> None:
    """A member joined to `group_id`, subscribed to `topics` (its rebalance left running)."""

    def request(member_id: str) -> JoinRequest:
        protocols = (("range", _subscription(*topics)),)
        return JoinRequest(
            member_id, None, "c", "h", SESSION_MS, SESSION_MS, protocol_type, protocols, 5
        )

    first = await world.groups.join(group_id, request(""))
    assert first.error is E.MEMBER_ID_REQUIRED
    world.joins.append(asyncio.ensure_future(world.groups.join(group_id, request(first.member_id))))
    for _ in range(SETTLE_ROUNDS):
        await asyncio.sleep(0)


async def _commit(world: World, group_id: str, *tps: TopicPartition) -> None:
    offsets = {tp: OffsetToCommit(5, -1, None) for tp in tps}
    answers = await world.groups.commit_offsets(group_id, -1, "", None, offsets)
    assert set(answers.values()) == {E.NONE}


def test_groups_are_listed_by_state_and_type() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        await admin.create_topic("t", 1)
        await _commit(world, "solo", TopicPartition("t", 0))
        await _member(world, "busy", "consumer", "t")
        listed = await admin.list_groups()
        assert [(g.group_id, g.group_type) for g in listed] == [
            ("busy", "classic"),
            ("solo", "classic"),
        ]
        assert [g.group_id for g in await admin.list_groups(states=["EMPTY"])] == ["solo"]
        assert [g.group_id for g in await admin.list_groups(types=["Classic"])] == [
            "busy",
            "solo",
        ]
        assert await admin.list_groups(types=["consumer"]) == []
        described = await admin.describe_group("solo")
        assert described.state is GroupState.EMPTY
        assert (await admin.describe_group("never")).state is GroupState.DEAD

    run(scenario)


def test_only_an_empty_group_is_deleted() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        await admin.create_topic("t", 1)
        await _commit(world, "solo", TopicPartition("t", 0))
        await _member(world, "busy", "consumer", "t")
        error = await refused(admin.delete_group("busy"))
        assert error.code == E.NON_EMPTY_GROUP and "stop its consumers" in str(error)
        await admin.delete_group("solo")
        error = await refused(admin.delete_group("solo"))
        assert error.code == E.GROUP_ID_NOT_FOUND and "no consumer group named 'solo'" in str(error)

    run(scenario)


def test_offsets_of_subscribed_topics_stay() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        watched, other = TopicPartition("watched", 0), TopicPartition("other", 0)
        for tp in (watched, other):
            await admin.create_topic(tp.topic, 1)
        await _commit(world, "g", watched, other)
        await _member(world, "g", "consumer", "watched")
        answers = await admin.delete_offsets("g", [watched, other])
        refusal = answers[watched]
        assert refusal is not None and refusal.code == E.GROUP_SUBSCRIBED_TO_TOPIC
        assert answers[other] is None
        assert set(await world.groups.fetch_offsets("g", None)) == {watched}
        assert await code_of(admin.delete_offsets("never", [other])) == E.GROUP_ID_NOT_FOUND

    run(scenario)


def test_offsets_of_a_group_whose_subscriptions_cannot_be_read_stay() -> None:
    async def scenario(world: World) -> None:
        await world.admin.create_topic("t", 1)
        await _member(world, "connect", "connect", "t")
        error = await refused(world.admin.delete_offsets("connect", [TopicPartition("t", 0)]))
        assert error.code == E.NON_EMPTY_GROUP

    run(scenario)


# --- cluster and topic description ---------------------------------------------------------


def test_the_cluster_and_a_topic_are_described() -> None:
    async def scenario(world: World) -> None:
        admin = world.admin
        cluster = admin.describe_cluster()
        assert cluster.cluster_id == "streamhouse-default"
        assert cluster.controller_id == 2
        assert cluster.agents == (AgentAddress(AGENT, 2, "10.0.0.1", 9092),)
        topic = await admin.create_topic("t", 2)
        await world.log.partition(TopicPartition("t", 1))  # takes the lease
        described = await admin.describe_topic(topic)
        assert described.topic_id == topic_id(topic)
        unled, led = described.partitions
        assert (unled.partition, unled.leader_agent, unled.leader_node) == (0, None, 2)
        assert (led.partition, led.leader_agent, led.leader_node) == (1, AGENT, 2)
        assert led.leader_epoch >= unled.leader_epoch

    run(scenario)


def test_leader_hints_read_the_store_once_per_partition_per_interval() -> None:
    async def scenario(world: World) -> None:
        await world.admin.create_topic("t", 1)
        reads: list[TopicPartition] = []
        read_partition = world.metadata.get_partition

        async def counted(tp: TopicPartition) -> Any:
            reads.append(tp)
            return await read_partition(tp)

        world.metadata.get_partition = counted  # type: ignore[method-assign]
        tp = TopicPartition("t", 0)
        hints = await asyncio.gather(*(world.admin.current_leader(tp) for _ in range(200)))
        assert len(reads) == 1 and len(set(hints)) == 1 and hints[0] is not None
        world.clock.advance_ms(LEADER_HINT_MAX_AGE_MS - 1)
        await world.admin.current_leader(tp)
        assert len(reads) == 1
        world.clock.advance_ms(1)
        await world.admin.current_leader(tp)
        assert len(reads) == 2

    run(scenario)
