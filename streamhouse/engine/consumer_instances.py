"""Consumer instances held by a door for clients that keep no Kafka session (Confluent REST v2's
/consumers/{group}/instances/{name}, gRPC consume-from-group): the registry and each
instance's subscription or manual assignment, positions, reads, seeks and commits.

An instance behaves as the Java consumer behind Confluent's REST proxy does: a subscribing
instance is a real member of its group (`GroupMember`), sharing partitions and committed
offsets with Kafka consumers; an assigning one commits as a simple consumer. A partition's
first position is the group's committed offset, else `auto.offset.reset`; a position out of
range is reset the same way. With auto commit on (Java's default, which Confluent keeps),
positions are committed every `AUTO_COMMIT_INTERVAL_MS` at a read, before a rebalance takes
partitions away, and when the instance is deleted or expires. An instance not used for
`instance_idle_ms` (Confluent's consumer.instance.timeout.ms) is closed by a periodic sweep.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from streamhouse.engine.admin import AdminService
from streamhouse.engine.consume import ConsumedRecord, FetchService
from streamhouse.engine.failure import AgentFailure
from streamhouse.engine.group_member import (
    DEFAULT_TIMEOUTS,
    GroupMember,
    MemberTimeouts,
    commit_offsets,
    committed_offsets,
)
from streamhouse.engine.periodic import Periodic
from streamhouse.engine.waiting import CLIENT_RETRY_BACKOFF_MS
from streamhouse.errors import Blame, ErrorCode, OffsetOutOfRange, StreamHouseError
from streamhouse.names import TopicPartition
from streamhouse.ports.clock import Clock
from streamhouse.ports.peers import GroupCalls
from streamhouse.ports.rng import Rng

log = logging.getLogger(__name__)

INSTANCES_MAX = 1_000  # per agent; beyond, create is refused (TooManyConsumerInstances)
INSTANCE_IDLE_MS = 300_000  # Confluent's consumer.instance.timeout.ms default
SWEEP_INTERVAL_MAX_MS = 10_000  # idle instances are closed at most this late (or idle/2)
AUTO_COMMIT_INTERVAL_MS = 5_000  # the Java consumer's auto.commit.interval.ms default
REQUEST_TIMEOUT_MS = 1_000  # Confluent's consumer.request.timeout.ms default
RECORDS_WAIT_MAX_MS = 60_000  # a longer wait asked of `records` is cut to this
RECORDS_BYTES_MAX = 64 * 1024 * 1024  # Confluent's consumer.request.max.bytes default
READ_ROUNDS_MAX = 1_000  # reads of one `records` call; then it answers what it has
GENERATED_NAME_PREFIX = "rest-consumer-"
NAME_RANDOM_BYTES = 16


class ConsumerInstanceNotFound(StreamHouseError):
    """No consumer instance of that name in the group (never created, deleted or expired)."""

    code = ErrorCode.RESOURCE_NOT_FOUND
    blame = Blame.REMOTE


class ConsumerInstanceExists(StreamHouseError):
    """A consumer instance of that name already exists in the group."""

    code = ErrorCode.DUPLICATE_RESOURCE
    blame = Blame.REMOTE


class TooManyConsumerInstances(StreamHouseError):
    """The agent holds `instances_max` consumer instances already."""

    code = ErrorCode.THROTTLING_QUOTA_EXCEEDED
    blame = Blame.REMOTE


class ConsumerStateConflict(StreamHouseError):
    """A call that does not fit the instance's state (Kafka's IllegalStateException):
    subscribing while assigned, seeking a partition not assigned, no offset to start from."""

    code = ErrorCode.INVALID_REQUEST
    blame = Blame.REMOTE


class OffsetReset(enum.Enum):
    """auto.offset.reset: where a partition without a (valid) position starts."""

    EARLIEST = "earliest"
    LATEST = "latest"
    NONE = "none"  # no committed offset, or out of range: the read fails


@dataclass(frozen=True)
class InstanceConfig:
    """What a client may set when it creates an instance (Confluent's v2 create body)."""

    auto_offset_reset: OffsetReset = OffsetReset.LATEST
    auto_commit_enable: bool = True  # Confluent falls back to the Java consumer's default
    fetch_min_bytes: int = 1  # a read answers once this much is gathered, else at its timeout
    request_timeout_ms: int = REQUEST_TIMEOUT_MS  # a read's wait when the call names none
    read_committed: bool = False  # the Java consumer's isolation.level default
    # the embedded format the door answers records in (Confluent's "format"); kept, not used
    embedded_format: str = "binary"

    @classmethod
    def parse(cls, values: Mapping[str, str | int | bool | None]) -> InstanceConfig:
        """From Confluent's names ("auto.offset.reset", "auto.commit.enable",
        "fetch.min.bytes", "consumer.request.timeout.ms", "isolation.level"); a missing or
        null value keeps its default. ConsumerStateConflict names a value that does not fit."""
        config = cls()
        try:
            reset = values.get("auto.offset.reset")
            if reset is not None:
                config = dataclasses.replace(
                    config, auto_offset_reset=OffsetReset(str(reset).lower())
                )
            commit = values.get("auto.commit.enable")
            if commit is not None:
                config = dataclasses.replace(config, auto_commit_enable=_flag(commit))
            min_bytes = values.get("fetch.min.bytes")
            if min_bytes is not None:
                config = dataclasses.replace(config, fetch_min_bytes=max(int(min_bytes), 1))
            timeout = values.get("consumer.request.timeout.ms")
            if timeout is not None:
                config = dataclasses.replace(config, request_timeout_ms=max(int(timeout), 0))
            isolation = values.get("isolation.level")
            if isolation is not None:
                config = dataclasses.replace(config, read_committed=_isolation(str(isolation)))
        except ValueError as error:
            raise ConsumerStateConflict(
                f"invalid consumer config ({error}); auto.offset.reset is earliest, latest or "
                "none, auto.commit.enable true or false, fetch.min.bytes and "
                "consumer.request.timeout.ms integers, isolation.level read_committed or "
                "read_uncommitted",
                ErrorCode.INVALID_CONFIG,
            ) from error
        return config


def _flag(value: object) -> bool:
    text = str(value).lower()
    if text not in ("true", "false"):
        raise ValueError(f"auto.commit.enable {value!r}")
    return text == "true"


def _isolation(value: str) -> bool:
    if value not in ("read_committed", "read_uncommitted"):
        raise ValueError(f"isolation.level {value!r}")
    return value == "read_committed"


class _Mode(enum.Enum):
    NONE = "neither subscribed nor assigned"
    SUBSCRIBED = "subscribed to topics"
    ASSIGNED = "assigned partitions manually"


@dataclass
class _Services:
    coordinator: GroupCalls
    admin: AdminService
    fetch: FetchService
    clock: Clock
    member_timeouts: MemberTimeouts


@dataclass
class ConsumerInstance:
    """One door-held consumer: its subscription or assignment, positions and commits. Calls
    on one instance run one at a time (a read holds the others up to its timeout)."""

    group_id: str
    name: str
    config: InstanceConfig
    _services: _Services
    last_used_ms: int
    _mode: _Mode = _Mode.NONE
    _member: GroupMember | None = None
    _manual: frozenset[TopicPartition] = frozenset()
    _positions: dict[TopicPartition, int] = field(default_factory=dict)
    _last_auto_commit_ms: int = 0
    _reads: int = 0  # `records` calls so far
    _closed: bool = False
    _busy: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    # --- subscription and assignment ----------------------------------------------------

    async def subscribe(self, topics: Collection[str]) -> None:
        """Subscribe to `topics` (internal names): the instance joins its group."""
        async with self._using():
            if self._mode is _Mode.ASSIGNED:
                raise self._exclusive()
            if not topics:
                await self._drop_member()
                return
            if self._member is None:
                services = self._services
                self._member = GroupMember(
                    services.coordinator,
                    services.admin,
                    services.clock,
                    self.group_id,
                    client_id=self.name,
                    timeouts=services.member_timeouts,
                    on_revoke=self._on_revoke,
                )
            self._mode = _Mode.SUBSCRIBED
            self._member.subscribe(topics)

    async def unsubscribe(self) -> None:
        """Leave the group (or drop the manual assignment); positions are forgotten."""
        async with self._using():
            await self._drop_member()
            self._manual = frozenset()
            self._positions.clear()
            self._mode = _Mode.NONE

    def subscription(self) -> frozenset[str]:
        self._touch()
        return self._member.subscription() if self._member is not None else frozenset()

    async def assign(self, partitions: Collection[TopicPartition]) -> None:
        """Read `partitions` without group membership (commits as a simple consumer);
        an empty collection unassigns."""
        async with self._using():
            if self._mode is _Mode.SUBSCRIBED:
                raise self._exclusive()
            self._manual = frozenset(partitions)
            self._mode = _Mode.ASSIGNED if self._manual else _Mode.NONE
            self._keep_positions(self._manual)

    def assignments(self) -> frozenset[TopicPartition]:
        self._touch()
        return self._assigned()

    # --- positions ------------------------------------------------------------------------

    def positions(self) -> dict[TopicPartition, int]:
        """The next offset to read of each assigned partition that has one."""
        self._touch()
        return dict(self._positions)

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        async with self._using():
            self._check_assigned([tp])
            self._positions[tp] = max(offset, 0)

    async def seek_to_beginning(self, partitions: Collection[TopicPartition]) -> None:
        async with self._using():
            self._check_assigned(partitions)
            for tp in partitions:
                self._positions[tp] = await self._reset_position(tp, OffsetReset.EARLIEST)

    async def seek_to_end(self, partitions: Collection[TopicPartition]) -> None:
        async with self._using():
            self._check_assigned(partitions)
            for tp in partitions:
                self._positions[tp] = await self._reset_position(tp, OffsetReset.LATEST)

    # --- reading --------------------------------------------------------------------------

    async def records(
        self, timeout_ms: int | None = None, max_bytes: int = RECORDS_BYTES_MAX
    ) -> list[tuple[str, ConsumedRecord]]:
        """Records from the positions of the assigned partitions, as (topic, record); waits
        up to `timeout_ms` (None: consumer.request.timeout.ms) until `fetch.min.bytes` of
        keys and values are gathered, and answers at most about `max_bytes` (at least one
        record if any is there). Positions move past what is answered."""
        async with self._using():
            clock = self._services.clock
            wait_ms = self.config.request_timeout_ms if timeout_ms is None else timeout_ms
            deadline_ms = clock.monotonic_ms() + min(max(wait_ms, 0), RECORDS_WAIT_MAX_MS)
            budget = min(max(max_bytes, 1), RECORDS_BYTES_MAX)
            self._reads += 1
            await self._auto_commit(due_only=True)
            if self._mode is _Mode.SUBSCRIBED:
                assert self._member is not None
                await self._member.wait_assigned(max(deadline_ms - clock.monotonic_ms(), 0))
            return await self._gather(deadline_ms, budget)

    async def _gather(self, deadline_ms: int, budget: int) -> list[tuple[str, ConsumedRecord]]:
        clock = self._services.clock
        gathered: list[tuple[str, ConsumedRecord]] = []
        size = 0
        for _ in range(READ_ROUNDS_MAX):
            partitions = sorted(self._assigned())
            self._keep_positions(frozenset(partitions))
            if partitions:  # each call starts one partition further: none is starved
                turn = self._reads % len(partitions)
                partitions = partitions[turn:] + partitions[:turn]
            for tp in partitions:
                if size >= budget:
                    break
                records = await self._read(tp, budget - size, at_least_one=not gathered)
                gathered += [(tp.topic, record) for record in records]
                size += sum(_record_bytes(record) for record in records)
            remaining_ms = deadline_ms - clock.monotonic_ms()
            enough = bool(gathered) and size >= min(self.config.fetch_min_bytes, budget)
            if enough or remaining_ms <= 0:
                return gathered
            woke = await self._services.fetch.wait_for_data(
                dict(self._positions), remaining_ms, read_committed=self.config.read_committed
            )
            if not woke and deadline_ms > clock.monotonic_ms():  # nothing watched: poll again
                await clock.sleep_ms(min(CLIENT_RETRY_BACKOFF_MS, remaining_ms))
        return gathered

    async def _read(
        self, tp: TopicPartition, budget: int, *, at_least_one: bool
    ) -> list[ConsumedRecord]:
        """Records of one partition from its position, cut to `budget` bytes (but one)."""
        position = await self._position(tp)
        fetch = self._services.fetch
        try:
            read = await fetch.read(tp, position, budget, read_committed=self.config.read_committed)
        except OffsetOutOfRange:
            self._positions[tp] = await self._reset_position(tp, self.config.auto_offset_reset)
            return []
        kept: list[ConsumedRecord] = []
        size = 0
        for record in read.records:
            size += _record_bytes(record)
            if size > budget and (kept or not at_least_one):
                self._positions[tp] = record.offset
                return kept
            kept.append(record)
        self._positions[tp] = read.next_offset
        return kept

    async def _position(self, tp: TopicPartition) -> int:
        """The partition's position; first the group's committed offset, else the reset."""
        position = self._positions.get(tp)
        if position is None:
            found = await committed_offsets(self._services.coordinator, self.group_id, [tp])
            position = found.get(tp)
            if position is None:
                position = await self._reset_position(tp, self.config.auto_offset_reset)
            self._positions[tp] = position
        return position

    async def _reset_position(self, tp: TopicPartition, reset: OffsetReset) -> int:
        if reset is OffsetReset.NONE:
            raise ConsumerStateConflict(
                f"{tp}: no committed offset or the position is out of range, and "
                "auto.offset.reset is none; seek to an offset first",
                ErrorCode.OFFSET_OUT_OF_RANGE,
            )
        offsets = await self._services.fetch.offsets(tp)
        if reset is OffsetReset.EARLIEST:
            return offsets.log_start_offset
        if self.config.read_committed:
            return offsets.last_stable_offset
        return offsets.high_watermark

    # --- commits --------------------------------------------------------------------------

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit `offsets` (the next offset to read), or None: every assigned partition's
        position. A commit the group refuses raises with its Kafka code."""
        async with self._using():
            await self._commit(dict(self._positions) if offsets is None else dict(offsets))

    async def committed(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        async with self._using():
            return await committed_offsets(self._services.coordinator, self.group_id, partitions)

    async def _commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        if self._member is not None:
            await self._member.commit(offsets)
        else:
            await commit_offsets(self._services.coordinator, self.group_id, offsets)
        self._last_auto_commit_ms = self._services.clock.monotonic_ms()

    async def _auto_commit(self, *, due_only: bool) -> None:
        if not self.config.auto_commit_enable or not self._positions:
            return
        since_ms = self._services.clock.monotonic_ms() - self._last_auto_commit_ms
        if due_only and since_ms < AUTO_COMMIT_INTERVAL_MS:
            return
        try:
            await self._commit(dict(self._positions))
        except StreamHouseError as error:  # as the Java consumer: logged, the next one may pass
            log.warning("auto commit of %s/%s failed: %s", self.group_id, self.name, error)

    async def _on_revoke(self, partitions: frozenset[TopicPartition]) -> None:
        """The group takes `partitions` away: commit their positions first (auto commit)."""
        revoked = {tp: at for tp, at in self._positions.items() if tp in partitions}
        if self.config.auto_commit_enable and revoked and self._member is not None:
            try:
                await self._member.commit(revoked)
            except StreamHouseError as error:
                log.warning("commit on revoke of %s/%s failed: %s", self.group_id, self.name, error)
        for tp in partitions:
            self._positions.pop(tp, None)

    # --- lifecycle ------------------------------------------------------------------------

    async def close(self) -> None:
        """Commit (auto commit), leave the group; later calls raise ConsumerInstanceNotFound."""
        if self._closed:
            return
        async with self._lock:
            self._closed = True
            if self._member is None:  # a member commits as it gives its partitions up
                await self._auto_commit(due_only=False)
            await self._drop_member()

    def idle_since_ms(self) -> int | None:
        """When the instance was last used; None while a call is running."""
        return None if self._busy else self.last_used_ms

    # --- helpers --------------------------------------------------------------------------

    def _using(self) -> _InUse:
        self._touch()
        return _InUse(self)

    def _touch(self) -> None:
        if self._closed:
            raise ConsumerInstanceNotFound(
                f"consumer instance {self.name!r} of group {self.group_id!r} is gone (deleted "
                "or idle too long); create a new one"
            )
        self.last_used_ms = self._services.clock.monotonic_ms()

    def _assigned(self) -> frozenset[TopicPartition]:
        if self._mode is _Mode.SUBSCRIBED and self._member is not None:
            return self._member.assignment()
        return self._manual

    def _keep_positions(self, partitions: frozenset[TopicPartition]) -> None:
        for tp in set(self._positions) - partitions:
            del self._positions[tp]

    def _check_assigned(self, partitions: Collection[TopicPartition]) -> None:
        missing = sorted(set(partitions) - self._assigned())
        if missing:
            raise ConsumerStateConflict(
                f"partitions {[str(tp) for tp in missing]} are not assigned to consumer "
                f"instance {self.name!r}; seek only partitions it reads",
            )

    def _exclusive(self) -> ConsumerStateConflict:
        return ConsumerStateConflict(
            f"consumer instance {self.name!r} has {self._mode.value}: subscribing to topics and "
            "assigning partitions are mutually exclusive; unsubscribe first"
        )

    async def _drop_member(self) -> None:
        if self._member is not None:
            await self._member.close()  # runs _on_revoke: the auto commit of its partitions
            self._member = None
        self._positions.clear()
        if self._mode is _Mode.SUBSCRIBED:
            self._mode = _Mode.NONE


class _InUse:
    """Holds an instance's lock for one call and marks it busy (the sweep passes it by)."""

    def __init__(self, instance: ConsumerInstance) -> None:
        self._instance = instance

    async def __aenter__(self) -> None:
        self._instance._busy += 1
        try:
            await self._instance._lock.acquire()
        except BaseException:
            self._instance._busy -= 1
            raise
        if self._instance._closed:  # closed while this call waited for the lock
            self._instance._lock.release()
            self._instance._busy -= 1
            self._instance._touch()  # raises ConsumerInstanceNotFound

    async def __aexit__(self, *_: object) -> None:
        self._instance._lock.release()
        self._instance._busy -= 1
        self._instance.last_used_ms = self._instance._services.clock.monotonic_ms()


def _record_bytes(record: ConsumedRecord) -> int:
    """A record's size as Confluent counts it, keys and values; an empty record counts one
    byte, so that fetch.min.bytes 1 answers it."""
    return max(len(record.key or b"") + len(record.value or b""), 1)


class ConsumerInstances:
    """Every consumer instance the doors of this agent hold, by (group, name)."""

    def __init__(
        self,
        coordinator: GroupCalls,
        admin: AdminService,
        fetch: FetchService,
        clock: Clock,
        rng: Rng,
        *,
        instances_max: int = INSTANCES_MAX,
        instance_idle_ms: int = INSTANCE_IDLE_MS,
        member_timeouts: MemberTimeouts = DEFAULT_TIMEOUTS,
    ) -> None:
        assert instances_max > 0 and instance_idle_ms > 0
        self._services = _Services(coordinator, admin, fetch, clock, member_timeouts)
        self._rng = rng
        self._instances_max = instances_max
        self.instance_idle_ms = instance_idle_ms
        self._instances: dict[tuple[str, str], ConsumerInstance] = {}
        sweep_ms = max(min(instance_idle_ms // 2, SWEEP_INTERVAL_MAX_MS), 1)
        self._sweeper = Periodic("consumer-instance-sweep", clock, sweep_ms, self.sweep, log)

    @property
    def groups(self) -> GroupCalls:
        """The coordinator of any group, as the instances call it (for the doors' commits
        outside an instance, and their group descriptions and lags)."""
        return self._services.coordinator

    def start(self, failure: AgentFailure) -> None:
        """Start the idle sweep."""
        self._sweeper.start(failure)

    async def close(self) -> None:
        """Stop the sweep and close every instance (each leaves its group)."""
        await self._sweeper.stop()
        instances, self._instances = list(self._instances.values()), {}
        for instance in instances:
            await instance.close()

    def create(
        self, group_id: str, name: str | None = None, config: InstanceConfig = InstanceConfig()
    ) -> ConsumerInstance:
        """A new instance in `group_id`, named `name` or a generated name."""
        if name is None:
            name = GENERATED_NAME_PREFIX + str(
                uuid.UUID(bytes=self._rng.randbytes(NAME_RANDOM_BYTES))
            )
        if (group_id, name) in self._instances:
            raise ConsumerInstanceExists(
                f"consumer instance {name!r} already exists in group {group_id!r}; pick another "
                "name or delete it first"
            )
        if len(self._instances) >= self._instances_max:
            raise TooManyConsumerInstances(
                f"this agent holds {self._instances_max} consumer instances, its limit; delete "
                "instances no longer used (idle ones expire after "
                f"{self.instance_idle_ms} ms)"
            )
        now_ms = self._services.clock.monotonic_ms()
        instance = ConsumerInstance(group_id, name, config, self._services, now_ms)
        instance._last_auto_commit_ms = now_ms
        self._instances[(group_id, name)] = instance
        return instance

    def get(self, group_id: str, name: str) -> ConsumerInstance:
        instance = self._instances.get((group_id, name))
        if instance is None:
            raise ConsumerInstanceNotFound(
                f"no consumer instance {name!r} in group {group_id!r} (never created, deleted, "
                f"or idle longer than {self.instance_idle_ms} ms); create one"
            )
        return instance

    async def delete(self, group_id: str, name: str) -> None:
        instance = self.get(group_id, name)
        del self._instances[(group_id, name)]
        await instance.close()

    def __len__(self) -> int:
        return len(self._instances)

    async def sweep(self) -> int:
        """Close the instances idle for `instance_idle_ms`; how many."""
        now_ms = self._services.clock.monotonic_ms()
        idle = [
            key
            for key, instance in self._instances.items()
            if (since := instance.idle_since_ms()) is not None
            and now_ms - since >= self.instance_idle_ms
        ]
        for key in idle:
            instance = self._instances.pop(key)
            log.info(
                "consumer instance %s/%s idle for %d ms: closed",
                *key,
                now_ms - instance.last_used_ms,
            )
            await instance.close()
        return len(idle)
