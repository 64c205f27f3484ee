"""The admin rules every door calls: topics, consumer group administration, the cluster.

Topics: create (legal name, partition count or the broker's `num_partitions`,
configs checked against Kafka's names, types and bounds), auto-create on
Metadata, delete, add partitions, describe and alter configs (full and
incremental, APPEND/SUBTRACT on lists), topic ids, and the existence checks of
the data path. Groups: list, describe, delete and delete offsets, over the group
coordinator. The cluster: its id, controller and agents, the agent's broker configs, and the
replica-placement answers of a cluster whose one replica is the object store (elections, log
directories, the quorum, reassignments, paged partition descriptions; rules in
`engine.cluster_shape`).

The Kafka handlers (and REST, gRPC, streamctl through them) decode a request,
call this service and encode its answer. Every refusal is a StreamHouseError
carrying Kafka's error code and a message the user can act on. The metadata
store keeps integrity only (a name taken by a racing create is still refused
there as TopicAlreadyExists); the policy is here.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from streamhouse.config import Settings
from streamhouse.engine.broker_configs import RESPONSE_PARTITIONS_MAX, broker_configs
from streamhouse.engine.cluster import AgentAddress, ClusterDescription, ClusterDirectory
from streamhouse.engine.cluster_shape import (
    QUORUM_PARTITION,
    QUORUM_TOPIC,
    ElectionType,
    PageCursor,
    QuorumDescription,
    Reassignment,
    check_log_dir,
    check_page_request,
    check_reassignment,
    describe_quorum,
    election_not_needed,
    election_type,
    is_quorum_partition,
    log_dir_path,
    plan_page,
    reassignment_of,
)
from streamhouse.engine.coordinators import is_internal
from streamhouse.engine.groups import GroupCoordinator
from streamhouse.engine.log_store import LogStore
from streamhouse.engine.org_limits import OrgLimits
from streamhouse.engine.reads import DECOMPRESSION_RATIO_MAX
from streamhouse.engine.schema_validation import RecordSchemas
from streamhouse.engine.waiting import CLIENT_RETRY_BACKOFF_MS
from streamhouse.errors import (
    ErrorCode,
    InvalidPartitions,
    InvalidRecord,
    InvalidTopic,
    MessageTooLarge,
    StorageError,
    StreamHouseError,
    TopicAlreadyExists,
    UnknownTopicOrPartition,
)
from streamhouse.kafka.compression import decompressor
from streamhouse.kafka.consumer_protocol import subscribed_topics
from streamhouse.kafka.records import decode_records
from streamhouse.log.compaction import dirty_ratio, is_compacted
from streamhouse.log.group_state import GroupState, GroupSummary
from streamhouse.log.topic_configs import (
    KEY_SCHEMA_VALIDATION,
    MAX_MESSAGE_BYTES,
    VALUE_SCHEMA_VALIDATION,
    ConfigEntry,
    ConfigType,
    changed_list,
    check_topic_configs,
    config_entries,
    topic_config_specs,
)
from streamhouse.log.topics import validate_partition_count, validate_topic_name
from streamhouse.names import TopicPartition
from streamhouse.ports.clock import Clock
from streamhouse.ports.leases import LeaseStore
from streamhouse.ports.topics import TopicRecord, TopicStore

BROKER_DEFAULT_PARTITIONS = -1  # CreateTopics' count for "the broker's num.partitions"
CLUSTER_DEFAULT_RESOURCE = ""  # DescribeConfigs' broker name for the cluster-wide defaults
CLASSIC_GROUP_TYPE = "classic"
LeaderHint = tuple[AgentAddress, int] | None
# KIP-951's leader hints are read once per partition per this many ms and shared by every
# refusal meanwhile: a producer pipelining thousands of requests to a partition this agent
# just lost would otherwise queue a store read per request, ahead of the lease renewals
# that would win it back
LEADER_HINT_MAX_AGE_MS = CLIENT_RETRY_BACKOFF_MS
LEADER_HINTS_MAX = 10_000  # partitions remembered; past it the memo starts afresh
# What a topic asks of produced batches (compaction, schema validation) is read from the store
# at most once per PRODUCE_RULES_MAX_AGE_MS per topic (the produce path asks on every batch);
# this agent's own config changes apply at once, another agent's within this bound (Kafka's
# brokers also learn config changes later)
CLEANUP_POLICY = "cleanup.policy"
PRODUCE_RULES_MAX_AGE_MS = 1_000  # a config change reaches the produce path within this
PRODUCE_RULES_MAX = 10_000  # topics remembered; past it the memo starts afresh


@dataclass(frozen=True)
class ProduceRules:
    """What a topic's configs ask of every batch produced to it."""

    compacted: bool  # records need keys
    validate_keys: bool  # keys carry a schema id registered under `<topic>-key`
    validate_values: bool  # values carry a schema id registered under `<topic>-value`
    max_message_bytes: int  # the largest batch (as stored) the topic takes

    @property
    def decodes(self) -> bool:
        return self.compacted or self.validate_keys or self.validate_values


CONSUMER_PROTOCOL_TYPE = "consumer"


class ConfigOperation(enum.IntEnum):
    """IncrementalAlterConfigs' operations (Kafka's values)."""

    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


@dataclass(frozen=True)
class ConfigChange:
    """One change of an incremental config alteration."""

    name: str
    operation: ConfigOperation
    value: str | None


@dataclass(frozen=True)
class PartitionDescription:
    """One partition as Metadata and `streamctl topics describe` show it."""

    partition: int
    leader_node: int
    leader_epoch: int
    leader_agent: str | None
    log_start_offset: int
    durable_end_offset: int


@dataclass(frozen=True)
class PartitionStorage:
    """Where one partition's committed log stands in the metadata store and the bucket: its
    log start, durable end, the bytes of its segment rows and the objects they point into."""

    partition: int
    log_start_offset: int
    durable_end_offset: int
    size_bytes: int
    object_count: int
    # log compaction: the checkpoint (next first dirty offset), the share of the bytes past
    # it, and the store's time of the last round that swapped (None: never)
    cleaned_end_offset: int = 0
    dirty_ratio: float = 0.0
    compacted_ms: int | None = None


@dataclass(frozen=True)
class TopicDescription:
    """A topic, its id and its partitions."""

    name: str
    topic_id: uuid.UUID
    partitions: tuple[PartitionDescription, ...]


@dataclass(frozen=True)
class GroupListing:
    """One group as ListGroups shows it."""

    group_id: str
    state: GroupState
    protocol_type: str
    group_type: str = CLASSIC_GROUP_TYPE


@dataclass(frozen=True)
class LogDirPartition:
    """A partition in an agent's log directory: its bytes in the object store (segment rows)
    and its durable lag (high watermark minus durable end offset)."""

    tp: TopicPartition
    size_bytes: int
    durable_lag: int


@dataclass(frozen=True)
class LogDir:
    """An agent's one virtual log directory and the partitions in it."""

    path: str
    partitions: tuple[LogDirPartition, ...]


@dataclass(frozen=True)
class TopicRefusal:
    """A topic a request named that cannot be described, and why."""

    name: str
    error: StreamHouseError


@dataclass(frozen=True)
class PartitionPage:
    """One page of DescribeTopicPartitions and where the next one starts (None: the end)."""

    topics: tuple[TopicDescription | TopicRefusal, ...]
    next_cursor: PageCursor | None


def topic_id(topic: TopicRecord) -> uuid.UUID:
    """The topic's id: stable for its life, new for a namesake created after a delete."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"streamhouse:{topic.name}:{topic.created_ms}")


class AdminService:
    """Topics, group administration and the cluster description, for every door."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        topics: TopicStore,
        log: LogStore,
        groups: GroupCoordinator,
        cluster: ClusterDirectory,
        *,
        leases: LeaseStore,
        record_schemas: RecordSchemas | None = None,
        limits: OrgLimits | None = None,
    ) -> None:
        self._settings = settings
        self._limits = limits  # None: no org has limits (tests of the admin rules alone)
        self._record_schemas = record_schemas
        self._clock = clock
        self._topics = topics
        self._leases = leases
        self._log = log
        self._groups = groups
        self.cluster = cluster
        self._specs = topic_config_specs(settings.batch_bytes_max)
        self._leader_hints: dict[TopicPartition, tuple[int, asyncio.Future[LeaderHint]]] = {}
        self._produce_rules: dict[str, tuple[int, ProduceRules]] = {}  # topic -> (read at, rules)
        self._decompress = decompressor(settings.batch_bytes_max * DECOMPRESSION_RATIO_MAX)

    # --- topics: lookup -------------------------------------------------------------------

    async def list_topics(self) -> list[TopicRecord]:
        """Every topic, by name (not the cluster's internal ones)."""
        return [t for t in await self._topics.list_topics() if not is_internal(t.name)]

    async def topic(self, name: str) -> TopicRecord:
        """The topic; UnknownTopicOrPartition if there is none of that name."""
        topic = await self._topics.get_topic(name)
        if topic is None:
            raise UnknownTopicOrPartition(f"topic {name!r} does not exist")
        return topic

    async def topic_by_id(self, wanted: uuid.UUID) -> TopicRecord:
        """The topic with this id; UnknownTopicOrPartition if none has it."""
        for topic in await self._topics.list_topics():
            if topic_id(topic) == wanted:
                return topic
        raise UnknownTopicOrPartition(f"no topic has id {wanted}")

    async def find_topic(self, name: str, *, auto_create: bool) -> TopicRecord:
        """Metadata's lookup: the topic, created with the broker's partition count when the
        client allows it and `auto_create_topics` is on. An illegal name is InvalidTopic
        whether or not it would be created (as Kafka answers), a missing one
        UnknownTopicOrPartition."""
        topic = await self._topics.get_topic(name)
        if topic is not None:
            return topic
        validate_topic_name(name)
        if not (auto_create and self._settings.auto_create_topics):
            raise UnknownTopicOrPartition(f"topic {name!r} does not exist")
        await self._check_partitions(name, self._settings.num_partitions)
        try:
            return await self._create(name, self._settings.num_partitions, {})
        except (TopicAlreadyExists, StorageError) as error:  # raced, or the outcome was lost
            topic = await self._topics.get_topic(name)
            if topic is None:
                raise UnknownTopicOrPartition(
                    f"topic {name!r} could not be created ({error}); retry"
                ) from error
            return topic

    async def describe_topic(
        self, topic: TopicRecord, shown: range | None = None
    ) -> TopicDescription:
        """The topic's id and each partition's (or each in `shown`'s) leader, epoch and
        offsets. One store read for the whole topic: a read per partition made Metadata for
        1,000 partitions take about a second. Raises UnknownTopicOrPartition."""
        stored = {r.partition: r for r in await self._topics.list_topic_partitions(topic.name)}
        partitions = []
        for index in shown if shown is not None else range(topic.partition_count):
            record = stored.get(index)
            if record is None:  # deleted (or shrunk by a recreate) since `topic` was read
                raise UnknownTopicOrPartition(
                    f"partition {TopicPartition(topic.name, index)} does not exist"
                )
            partitions.append(
                PartitionDescription(
                    index,
                    self.cluster.leader_node(record),
                    record.leader_epoch,
                    record.leader_agent,
                    record.log_start_offset,
                    record.durable_end_offset,
                )
            )
        return TopicDescription(topic.name, topic_id(topic), tuple(partitions))

    async def describe_storage(self, name: str) -> list[PartitionStorage]:
        """Each partition's log start, durable end, bytes in the bucket and objects, as the
        metadata store has them (any agent answers; no lease is taken). Raises
        UnknownTopicOrPartition."""
        topic = await self.topic(name)
        sizes = await self._leases.partition_sizes(name)
        dirty = await self._leases.partition_dirty_sizes(name)
        objects = await self._leases.partition_objects(name)
        return [
            PartitionStorage(
                record.partition,
                record.log_start_offset,
                record.durable_end_offset,
                sizes.get(record.partition, 0),
                objects.get(record.partition, 0),
                record.cleaned_end_offset,
                dirty_ratio(
                    sizes.get(record.partition, 0) - dirty.get(record.partition, 0),
                    dirty.get(record.partition, 0),
                ),
                record.compacted_ms,
            )
            for record in await self._topics.list_topic_partitions(topic.name)
        ]

    async def current_leader(self, tp: TopicPartition, *, fresh: bool = False) -> LeaderHint:
        """Where the partition's requests go now and its leader epoch as the store has it
        (KIP-951's hints), read at most LEADER_HINT_MAX_AGE_MS ago (`fresh`: read now, as
        after a leader refused); None when the partition cannot be read."""
        now_ms = self._clock.monotonic_ms()
        memo = self._leader_hints.get(tp)
        if fresh or memo is None or now_ms - memo[0] >= LEADER_HINT_MAX_AGE_MS:
            if len(self._leader_hints) >= LEADER_HINTS_MAX:
                self._leader_hints.clear()
            memo = (now_ms, asyncio.ensure_future(self._read_current_leader(tp)))
            self._leader_hints[tp] = memo
        return await asyncio.shield(memo[1])  # one waiter cancelled leaves the read to others

    async def _read_current_leader(self, tp: TopicPartition) -> LeaderHint:
        try:
            record = await self._topics.get_partition(tp)
        except StreamHouseError:
            return None
        return self.cluster.leader(record), record.leader_epoch

    async def check_partition(self, tp: TopicPartition) -> None:
        """Raise UnknownTopicOrPartition unless the topic exists and has this partition."""
        if self._log.led_partition(tp) is not None:
            return  # led here, so it exists: no metadata round trip on the hot path
        topic = await self._topics.get_topic(tp.topic)
        if topic is None or not 0 <= tp.partition < topic.partition_count:
            raise UnknownTopicOrPartition(f"{tp} does not exist")

    async def check_produce_partition(self, tp: TopicPartition) -> None:
        """As `check_partition`, but an illegal topic name is InvalidTopic first, as Metadata
        and CreateTopics answer it: the producer learns its name is wrong, not missing."""
        refuse_internal(tp.topic, "produce to")  # its slots are led here too
        if self._log.led_partition(tp) is None:
            validate_topic_name(tp.topic)
        await self.check_partition(tp)

    async def check_produce(self, tp: TopicPartition, batch: bytes) -> None:
        """As `check_produce_partition`, then the org's storage limit (OrgLimitExceeded), then
        the topic's `max.message.bytes` (MessageTooLarge, as Kafka's LogValidator checks a
        batch's size), then the topic's record rules (InvalidRecord naming
        each record refused): a compacted topic refuses records without a key (as Kafka's
        LogValidator); a topic validating schemas refuses keys or values that do not carry the
        id of a schema registered under its subject. Only such topics' batches are decoded."""
        await self.check_produce_partition(tp)
        if self._limits is not None:
            await self._limits.check_storage(tp.topic, len(batch))
        rules = await self._rules(tp.topic)
        if len(batch) > rules.max_message_bytes:
            raise MessageTooLarge(
                f"the batch of {len(batch)} bytes is larger than topic {tp.topic}'s "
                f"max.message.bytes {rules.max_message_bytes}; send smaller batches or raise it"
            )
        if not rules.decodes:
            return
        records = decode_records(batch, self._decompress)
        errors: list[tuple[int, str]] = []
        if rules.compacted:
            message = f"Compacted topic cannot accept message without key in topic partition {tp}."
            errors += [(index, message) for index, r in enumerate(records) if r.key is None]
        if (rules.validate_keys or rules.validate_values) and self._record_schemas is not None:
            errors += await self._record_schemas.refusals(
                tp.topic, records, keys=rules.validate_keys, values=rules.validate_values
            )
        if errors:
            shown = ", ".join(
                f"RecordError(batchIndex={index}, message='{text}')" for index, text in errors[:3]
            )
            raise InvalidRecord(
                f"One or more records have been rejected due to {len(errors)} record errors "
                f"in total, and only showing the first three errors at most: [{shown}]",
                sorted(errors),
            )

    async def _rules(self, name: str) -> ProduceRules:
        now_ms = self._clock.monotonic_ms()
        memo = self._produce_rules.get(name)
        if memo is not None and now_ms - memo[0] < PRODUCE_RULES_MAX_AGE_MS:
            return memo[1]
        topic = await self.topic(name)
        if len(self._produce_rules) >= PRODUCE_RULES_MAX:
            self._produce_rules.clear()

        def value(config: str) -> str:
            return topic.configs.get(config, self._specs[config].default)

        rules = ProduceRules(
            compacted=is_compacted(value(CLEANUP_POLICY)),
            validate_keys=value(KEY_SCHEMA_VALIDATION).lower() == "true",
            validate_values=value(VALUE_SCHEMA_VALIDATION).lower() == "true",
            max_message_bytes=int(value(MAX_MESSAGE_BYTES)),
        )
        self._produce_rules[name] = (now_ms, rules)
        return rules

    # --- topics: create, delete, partitions -------------------------------------------------

    def partition_count(self, requested: int) -> int:
        """The partition count a create asking for `requested` gets (-1: the broker's)."""
        if requested == BROKER_DEFAULT_PARTITIONS:
            return self._settings.num_partitions
        return requested

    async def create_topic(
        self,
        name: str,
        partitions: int = BROKER_DEFAULT_PARTITIONS,
        configs: Mapping[str, str] | None = None,
        *,
        validate_only: bool = False,
    ) -> TopicRecord:
        """Create a topic (with `validate_only`, only check that it could be created)."""
        validate_topic_name(name)
        count = self.partition_count(partitions)
        validate_partition_count(count, self._settings.topic_partitions_max)
        overrides = dict(configs or {})
        check_topic_configs(overrides, self._specs)
        await self._check_partitions(name, count)
        if not validate_only:
            return await self._create(name, count, overrides)
        if await self._topics.get_topic(name) is not None:
            raise TopicAlreadyExists(f"topic {name!r} already exists")
        return TopicRecord(name, count, overrides, self._clock.now_ms())

    async def _check_partitions(self, name: str, added: int) -> None:
        """OrgLimitExceeded when `added` partitions would pass the org's partition limit."""
        if self._limits is not None:
            await self._limits.check_partitions(name, added)

    async def _create(self, name: str, count: int, configs: Mapping[str, str]) -> TopicRecord:
        self._produce_rules.pop(name, None)
        return await self._topics.create_topic(name, count, configs, self._clock.now_ms())

    async def delete_topic(self, name: str) -> TopicRecord:
        """Delete the topic, its data pointers and committed offsets; returns what it was.
        Partitions led here are dropped at once, failing their waiting requests."""
        refuse_internal(name, "delete")
        topic = await self.topic(name)
        await self._topics.delete_topic(name)
        self._produce_rules.pop(name, None)
        self._log.forget_topic(name)
        return topic

    async def add_partitions(
        self, name: str, total: int, *, validate_only: bool = False
    ) -> TopicRecord:
        """Grow the topic to `total` partitions (never fewer than it has)."""
        refuse_internal(name, "add partitions to")
        topic = await self.topic(name)
        if total <= topic.partition_count:
            raise InvalidPartitions(
                f"topic {name!r} has {topic.partition_count} partitions; asked for {total}, "
                "which is not more (partitions can be added, never removed)"
            )
        validate_partition_count(total, self._settings.topic_partitions_max)
        await self._check_partitions(name, total - topic.partition_count)
        if validate_only:
            return replace(topic, partition_count=total)
        return await self._topics.add_partitions(name, total)

    # --- topics: configs -------------------------------------------------------------------

    async def describe_configs(self, name: str, names: Collection[str] = ()) -> list[ConfigEntry]:
        """The topic's configs (those in `names`, or all), each with its value and source."""
        topic = await self.topic(name)
        entries = config_entries(topic.configs, self._specs)
        return [entry for entry in entries if not names or entry.name in names]

    async def replace_configs(
        self, name: str, configs: Mapping[str, str | None], *, validate_only: bool = False
    ) -> TopicRecord:
        """AlterConfigs: the topic's overrides become exactly `configs` (None values left
        out); every other config returns to its default."""
        refuse_internal(name, "configure")
        topic = await self.topic(name)
        check_topic_configs(configs, self._specs)
        if validate_only:
            return topic
        self._produce_rules.pop(name, None)
        return await self._topics.set_topic_configs(name, configs, incremental=False)

    async def alter_configs(
        self, name: str, changes: Sequence[ConfigChange], *, validate_only: bool = False
    ) -> TopicRecord:
        """IncrementalAlterConfigs: set, delete (back to the default), append to or subtract
        from each named config; the others stay."""
        refuse_internal(name, "configure")
        topic = await self.topic(name)
        values = {change.name: self._changed_value(topic, change) for change in changes}
        check_topic_configs(values, self._specs)
        if validate_only:
            return topic
        self._produce_rules.pop(name, None)
        return await self._topics.set_topic_configs(name, values, incremental=True)

    def _changed_value(self, topic: TopicRecord, change: ConfigChange) -> str | None:
        if change.operation is ConfigOperation.SET:
            return change.value
        if change.operation is ConfigOperation.DELETE:
            return None
        spec = self._specs.get(change.name)
        if spec is None or spec.type is not ConfigType.LIST:
            raise StreamHouseError(
                f"config {change.name!r} is not a list: it cannot be appended to or "
                "subtracted from; use SET",
                ErrorCode.INVALID_REQUEST,
            )
        current = topic.configs.get(change.name, spec.default)
        append = change.operation is ConfigOperation.APPEND
        return changed_list(current, change.value, append=append)

    # --- groups ------------------------------------------------------------------------------

    async def list_groups(
        self, states: Collection[str] = (), types: Collection[str] = ()
    ) -> list[GroupListing]:
        """Groups with members or committed offsets, by id; `states` and `types` (Kafka's
        names, any case) keep only those in one of them."""
        wanted_states = {state.lower() for state in states}
        wanted_types = {kind.lower() for kind in types}
        if wanted_types and CLASSIC_GROUP_TYPE not in wanted_types:
            return []
        return [
            GroupListing(group.group_id, group.state, group.protocol_type)
            for group in await self._groups.list_groups()
            if not wanted_states or group.state.value.lower() in wanted_states
        ]

    async def describe_group(self, group_id: str) -> GroupSummary:
        """The group's state, protocol and members (Dead when it has neither members nor
        committed offsets), as this agent's coordinator knows them: Kafka's DescribeGroups.
        Raises NotCoordinator for a group another agent coordinates; the REST and gRPC doors
        ask the group's coordinator wherever it runs (`ConsumerInstances.groups`)."""
        return await self._groups.describe(group_id)

    async def delete_group(self, group_id: str) -> None:
        """Delete a group without members, and its committed offsets."""
        code = await self._groups.delete_group(group_id)
        if code is ErrorCode.NON_EMPTY_GROUP:
            raise StreamHouseError(
                f"group {group_id!r} still has members; stop its consumers first", code
            )
        if code is ErrorCode.GROUP_ID_NOT_FOUND:
            raise StreamHouseError(f"no consumer group named {group_id!r}", code)
        assert code is ErrorCode.NONE, code

    async def delete_offsets(
        self, group_id: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, StreamHouseError | None]:
        """Forget the group's committed offsets of these partitions, except in topics its
        members still subscribe to (refused per partition). The group must exist, and, if
        it has members, use the consumer protocol (whose subscriptions can be read)."""
        summary = await self._groups.describe(group_id)
        if summary.state is GroupState.DEAD:
            raise StreamHouseError(
                f"no consumer group named {group_id!r}", ErrorCode.GROUP_ID_NOT_FOUND
            )
        if summary.members and summary.protocol_type != CONSUMER_PROTOCOL_TYPE:
            raise StreamHouseError(
                f"group {group_id!r} has members of protocol {summary.protocol_type!r}, "
                "whose subscriptions cannot be read; stop them first",
                ErrorCode.NON_EMPTY_GROUP,
            )
        subscribed: set[str] = set()
        for metadata in self._groups.subscriptions(group_id):
            subscribed |= subscribed_topics(metadata)
        answers: dict[TopicPartition, StreamHouseError | None] = {
            tp: _subscribed(group_id, tp) if tp.topic in subscribed else None for tp in partitions
        }
        deletable = [tp for tp, refused in answers.items() if refused is None]
        if deletable:
            await self._groups.delete_offsets(group_id, deletable)
        return answers

    # --- cluster -----------------------------------------------------------------------------

    def describe_cluster(self) -> ClusterDescription:
        """The cluster's id, its controller and every agent."""
        return self.cluster.describe()

    def describe_broker_configs(
        self, resource_name: str, names: Collection[str] = ()
    ) -> list[ConfigEntry]:
        """This agent's broker configs (those in `names`, or all), when `resource_name` is its
        node id; none for "" (the cluster-wide dynamic defaults: there are none). Another
        broker's id is INVALID_REQUEST, as Kafka answers: clients send each broker's
        resource to that broker."""
        if resource_name == CLUSTER_DEFAULT_RESOURCE:
            return []
        node = self.cluster.self_node()
        if not _is_int(resource_name):
            raise StreamHouseError(
                f"broker id must be an integer, not {resource_name!r}", ErrorCode.INVALID_REQUEST
            )
        if int(resource_name) != node:
            raise StreamHouseError(
                f"this agent is broker {node}, not {resource_name}: ask broker "
                f"{resource_name} itself (or name {node}, or '' for cluster-wide defaults)",
                ErrorCode.INVALID_REQUEST,
            )
        entries = broker_configs(self._settings, node, self.cluster.agent_id)
        return [entry for entry in entries if not names or entry.name in names]

    async def elect_leaders(
        self, election: int, wanted: Mapping[str, Sequence[int]] | None
    ) -> dict[str, dict[int, StreamHouseError]]:
        """ElectLeaders: per partition asked for, ELECTION_NOT_NEEDED (its one replica leads)
        or UNKNOWN_TOPIC_OR_PARTITION; asked for all (None), every topic with no partition
        listed, as Kafka leaves out those needing no election. An unknown election type is
        INVALID_REQUEST."""
        kind = election_type(election)
        if wanted is None:
            return {topic.name: {} for topic in await self.list_topics()}
        return {
            name: {
                index: await self._election(TopicPartition(name, index), kind) for index in indexes
            }
            for name, indexes in wanted.items()
        }

    async def _election(self, tp: TopicPartition, kind: ElectionType) -> StreamHouseError:
        try:
            await self.check_partition(tp)
        except UnknownTopicOrPartition as error:
            return error
        return election_not_needed(tp, kind)

    async def describe_log_dir(self, wanted: Mapping[str, Collection[int]] | None) -> LogDir:
        """DescribeLogDirs: this agent's one log directory and the partitions in it, those
        Metadata names this agent the replica of (all, or those of `wanted` that exist), each
        with the bytes of its segment rows and how far its durable end lags its high
        watermark."""
        partitions: list[LogDirPartition] = []
        for topic in await self._topics_named(wanted):
            indexes: Iterable[int] = range(topic.partition_count)
            if wanted is not None:
                indexes = sorted(set(wanted[topic.name]) & set(indexes))
            partitions += await self._partitions_here(topic.name, indexes)
        return LogDir(log_dir_path(self.cluster.agent_id), tuple(partitions))

    async def _topic_names(self) -> list[str]:
        return [topic.name for topic in await self.list_topics()]

    async def _topics_named(self, wanted: Collection[str] | None) -> list[TopicRecord]:
        """The topics among `wanted` that exist (None: every topic), by name."""
        if wanted is None:
            return await self.list_topics()
        found = [await self._topics.get_topic(name) for name in sorted(wanted)]
        return [topic for topic in found if topic is not None]

    async def _partitions_here(self, name: str, indexes: Iterable[int]) -> list[LogDirPartition]:
        sizes = await self._leases.partition_sizes(name)
        here = self.cluster.self_node()
        found = []
        for index in indexes:
            tp = TopicPartition(name, index)
            try:
                record = await self._topics.get_partition(tp)
            except UnknownTopicOrPartition:
                continue  # deleted meanwhile
            if self.cluster.leader_node(record) == here:
                found.append(LogDirPartition(tp, sizes.get(index, 0), self._durable_lag(tp)))
        return found

    def _durable_lag(self, tp: TopicPartition) -> int:
        """Offsets below the high watermark not yet in the object store (0 for a partition
        not led here: all it has is durable)."""
        plog = self._log.led_partition(tp)
        if plog is None:
            return 0
        return plog.state.high_watermark - plog.state.durable_end_offset

    async def alter_replica_log_dir(self, path: str, tp: TopicPartition) -> None:
        """AlterReplicaLogDirs: a replica moves only into the directory it is in, this agent's
        one (nothing to do); any other path is LOG_DIR_NOT_FOUND."""
        check_log_dir(path, self.cluster.agent_id)
        await self.check_partition(tp)

    def describe_quorum(self, named: Sequence[TopicPartition]) -> QuorumDescription:
        """DescribeQuorum of the metadata store, asked as KRaft's __cluster_metadata-0 (any
        other partition is UNKNOWN_TOPIC_OR_PARTITION)."""
        if not is_quorum_partition(named):
            raise UnknownTopicOrPartition(
                f"the quorum is {QUORUM_TOPIC}-{QUORUM_PARTITION}, asked for {list(named)}"
            )
        return describe_quorum(self.describe_cluster(), self._clock.now_ms())

    async def list_reassignments(self) -> list[Reassignment]:
        """ListPartitionReassignments: the moves in progress, partitions pinned to a live agent
        that does not hold their lease yet (the pin stays once it does: the partition stays
        there while that agent is live)."""
        nodes = {agent.agent_id: agent.node_id for agent in self.cluster.agents()}
        moves = [reassignment_of(r, nodes) for r in await self._topics.list_partitions()]
        return [move for move in moves if move is not None]

    async def reassign_partition(self, tp: TopicPartition, target: Sequence[int] | None) -> None:
        """AlterPartitionReassignments of one partition: pin it to the named agent, whose
        ownership service takes its lease once the holder has handed it over (flushed and
        released); a cancel drops the pin of a move in progress (the balancer places it
        again). See `cluster_shape.check_reassignment`."""
        record = await self._topics.get_partition(tp)
        agents = {agent.node_id: agent.agent_id for agent in self.cluster.agents()}
        nodes = {agent_id: node for node, agent_id in agents.items()}
        in_progress = reassignment_of(record, nodes) is not None
        check_reassignment(tp, target, list(agents), in_progress)
        await self._topics.set_preferred_agent(tp, None if target is None else agents[target[0]])

    async def describe_topic_partitions(
        self, named: Sequence[str], cursor: PageCursor | None, partitions_max: int
    ) -> PartitionPage:
        """DescribeTopicPartitions: the named topics (none named: every topic), by name from
        the cursor on, at most min(`partitions_max`, RESPONSE_PARTITIONS_MAX) partitions, and
        the cursor of the next page. A named topic that does not exist is answered with its
        error; when every topic is asked for, one deleted meanwhile is left out."""
        check_page_request(named, cursor, partitions_max)
        start = cursor.topic if cursor is not None else ""
        names = sorted({name for name in named or await self._topic_names() if name >= start})
        found = {name: await self._topics.get_topic(name) for name in names}
        counts = [(name, topic.partition_count if topic else None) for name, topic in found.items()]
        page, next_cursor = plan_page(counts, cursor, min(partitions_max, RESPONSE_PARTITIONS_MAX))
        topics: list[TopicDescription | TopicRefusal] = []
        for item in page:
            topic = found[item.topic]
            if topic is not None and item.partitions is not None:
                topics.append(await self.describe_topic(topic, item.partitions))
            elif named:
                topics.append(TopicRefusal(item.topic, _missing_topic(item.topic)))
        return PartitionPage(tuple(topics), next_cursor)


def refuse_internal(name: str, action: str) -> None:
    """The cluster's internal topic (the group coordinator slots) is the agents' own: clients
    may read it, never write, delete, grow or configure it. Raises InvalidTopic."""
    if is_internal(name):
        raise InvalidTopic(
            f"{name!r} is the cluster's internal topic (group coordinator slots); "
            f"clients cannot {action} it"
        )


def _missing_topic(name: str) -> StreamHouseError:
    try:
        validate_topic_name(name)
    except StreamHouseError as error:
        return error
    return UnknownTopicOrPartition(f"topic {name!r} does not exist")


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _subscribed(group_id: str, tp: TopicPartition) -> StreamHouseError:
    return StreamHouseError(
        f"group {group_id!r} still subscribes to {tp.topic!r}; its offsets stay",
        ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC,
    )
