"""What clients observed during a simulation: the history the checkers judge.

Every event is a frozen dataclass stamped with virtual time in microseconds
(`at_us`, when the client saw it happen). Operations that take time also
carry `requested_us`, when the client sent the request, so a checker can
tell "A completed before B was asked for" (real-time order) from "A and B
overlapped". Nothing here knows how the engine works: these are the facts a
Kafka client can see, and nothing more.

Conventions the checkers rely on (workloads must keep them):
- Every produce attempt has an `op` number unique in the history
  (`History.new_op()`), and its (key, value) is unique within its partition,
  so a record read back names the attempt that wrote it.
- One `client` string is one reader: it never has two fetches of the same
  partition in flight, so its fetches of a partition are ordered by their
  position in the history.
- Offsets, leader epochs and watermarks a client did not learn are `None`.
- The simulator's aiokafka clients record their fetches below the client
  (`sim.capture`): each Fetch answer as the broker sent it, with every record
  at or after the fetch offset (control records too) and its batch's leader
  epoch and producer, whether or not the consumer handed it on.

`History` is append-only and serialises to JSON lines, one event per line,
keys sorted, in append order: the same run gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ACKS_NONE = 0
ACKS_LEADER = 1
ACKS_ALL = -1

CONTROL_COMMIT = "commit"
CONTROL_ABORT = "abort"

OFFSET_OUT_OF_RANGE = 1  # Kafka's error code: the fetch offset is outside the leader's log

FAULT_DISK_LOSS = "disk_loss"
FAULT_LEASE_FENCED = "lease_fenced"
FAULT_CRASH = "crash"
FAULT_RESTART = "restart"
FAULT_PAUSE = "pause"
FAULT_RESUME = "resume"
FAULT_NETWORK_PARTITION = "network_partition"
FAULT_HEAL = "heal"
FAULT_STORE_FAILOVER = "store_failover"  # the metadata store refuses every call a while
# the metadata store lost whole (every agent crashed with it): what was not durable in an
# object may be lost, on every partition (acks=1 only), as with a disk loss on every agent
FAULT_METADATA_WIPE = "metadata_wipe"
# faults only the chaos suite (real processes) injects; recorded for the story, excusing nothing
FAULT_OBJECT_STORE_OUTAGE = "object_store_outage"  # the S3 endpoint unreachable a while
FAULT_OBJECT_STORE_SLOW = "object_store_slow"  # every S3 answer delayed a while
FAULT_DISK_FULL = "disk_full"  # the agent's WAL filesystem has no space left

PHASE_SAFETY = "safety"
PHASE_LIVENESS = "liveness"
PHASE_FINAL = "final"


@dataclass(frozen=True)
class TopicCreated:
    """A topic the workload created; `compacted` topics may lose offsets to compaction."""

    at_us: int
    client: str
    topic: str
    partitions: int
    compacted: bool = False


@dataclass(frozen=True)
class ProduceAttempt:
    """A record handed to a producer (one per record; client-side retries are the same op).

    `acks` is Kafka's: 0, 1 or -1 (all). `producer_id`, `producer_epoch` and
    `sequence` are -1 where the client does not expose them. `txn` names the
    workload's transaction the record belongs to, if any (see `TxnEnded`).
    """

    at_us: int
    client: str
    op: int
    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    acks: int
    idempotent: bool = False
    producer_id: int = -1
    producer_epoch: int = -1
    sequence: int = -1
    txn: int | None = None


@dataclass(frozen=True)
class ProduceAcked:
    """The broker acknowledged `op` at `offset`: `agent` answered, in leader epoch
    `leader_epoch` (None where the client cannot tell: Kafka's Produce answer carries no
    epoch), with the partition's log start then (`log_start_offset`)."""

    at_us: int
    client: str
    op: int
    offset: int
    leader_epoch: int | None = None
    agent: str | None = None
    log_start_offset: int | None = None


@dataclass(frozen=True)
class ProduceFailed:
    """`op` failed. `definite`: the record was certainly not written (else outcome unknown)."""

    at_us: int
    client: str
    op: int
    error_code: int
    definite: bool = False


@dataclass(frozen=True)
class ObservedRecord:
    """One record of a fetch response as the client delivered it.

    `control` is None for data, else the marker kind (CONTROL_COMMIT or
    CONTROL_ABORT). `leader_epoch` is the batch's partition leader epoch.
    """

    offset: int
    key: bytes | None
    value: bytes | None
    leader_epoch: int | None = None
    control: str | None = None
    producer_id: int = -1
    producer_epoch: int = -1
    sequence: int = -1


@dataclass(frozen=True)
class FetchObserved:
    """A successful fetch of one partition from `fetch_offset`.

    `records` are those delivered, in order. `next_offset` is the client's
    position after this response (past skipped control batches); None means
    "one past the last record" (or `fetch_offset` if none). A fetch whose
    `fetch_offset` equals the reader's previous `next_offset` continues the
    previous one; anything else is a seek. `leader_epoch` is the current
    leader epoch the client fetched with (the broker fences stale ones).
    Watermarks are those of this response; `agent` answered it. `requested_us`
    must not be later than the request the broker answered (recorded below a
    prefetching consumer, it is when the request was handed to the client).
    """

    at_us: int
    requested_us: int
    client: str
    topic: str
    partition: int
    fetch_offset: int
    records: tuple[ObservedRecord, ...]
    read_committed: bool = False
    next_offset: int | None = None
    leader_epoch: int | None = None
    high_watermark: int | None = None
    last_stable_offset: int | None = None
    log_start_offset: int | None = None
    agent: str | None = None


@dataclass(frozen=True)
class FetchFailed:
    """A fetch answered with an error (e.g. OFFSET_OUT_OF_RANGE, NOT_LEADER_OR_FOLLOWER) by
    `agent`."""

    at_us: int
    requested_us: int
    client: str
    topic: str
    partition: int
    fetch_offset: int
    error_code: int
    agent: str | None = None


@dataclass(frozen=True)
class ScanCompleted:
    """`client` read `topic`/`partition` from `start_offset` (the log start it was given)
    up to `end_offset` (the high watermark then) between `requested_us` and `at_us`;
    its `FetchObserved` events in that window hold what it read."""

    at_us: int
    requested_us: int
    client: str
    topic: str
    partition: int
    start_offset: int
    end_offset: int
    read_committed: bool = False
    leader_epoch: int | None = None


@dataclass(frozen=True)
class TxnEnded:
    """The end of the workload's transaction `txn` (a number unique in the history):
    committed, aborted, or unknown (None); `requested_us` is when EndTxn was sent."""

    at_us: int
    requested_us: int
    client: str
    txn: int
    committed: bool | None


@dataclass(frozen=True)
class TxnProducerStarted:
    """`client`, one transactional producer instance, had its InitProducerId for
    `transactional_id` answered (asked at `requested_us`). An instance of the id started
    before it is fenced from then on: a transaction it asks to commit later must not commit."""

    at_us: int
    requested_us: int
    client: str
    transactional_id: str


@dataclass(frozen=True)
class TxnRead:
    """A consume-transform-produce step: `client` read `topic`/`partition` offsets
    [`first_offset`, `next_offset`) as a member of `group` and put what it made of them, and
    the group's offset `next_offset` for the partition, into the workload's transaction
    `txn`. A committed transaction has processed that read exactly once."""

    at_us: int
    client: str
    txn: int
    group: str
    topic: str
    partition: int
    first_offset: int
    next_offset: int


@dataclass(frozen=True)
class TopicPartition:
    """A partition of a topic, as assignments name them."""

    topic: str
    partition: int


@dataclass(frozen=True)
class GroupGeneration:
    """`member` of `group` joined generation `generation` and was assigned `partitions`."""

    at_us: int
    client: str
    group: str
    generation: int
    member: str
    partitions: tuple[TopicPartition, ...]


@dataclass(frozen=True)
class GenerationJoined:
    """`member` of `group` was told generation `generation` by its JoinGroup answer, before
    it learned its assignment (`GroupGeneration`, after SyncGroup): aiokafka sends every
    OffsetCommit from then on, retries of earlier ones too, with this generation and id."""

    at_us: int
    client: str
    group: str
    generation: int
    member: str


@dataclass(frozen=True)
class OffsetCommitted:
    """A successful offset commit: `generation` and `member` are those the accepted attempt
    carried (a client's retry may carry a newer generation than the first attempt), -1 for
    commits outside a group generation; `requested_us` is when the first attempt was asked."""

    at_us: int
    requested_us: int
    client: str
    group: str
    generation: int
    member: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class OffsetCommitAsked:
    """`client` asked to commit `offset` for `group` (recorded before the request: an
    `OffsetCommitted` follows if it was accepted; if no answer came, it may have been)."""

    at_us: int
    client: str
    group: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class OffsetReset:
    """An explicit reset of a group's committed offset (streamctl reset, seek-and-commit);
    commits after it may be lower than commits before it."""

    at_us: int
    client: str
    group: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class CommittedOffsetRead:
    """The group's committed offset for a partition as OffsetFetch answered it (-1: none)."""

    at_us: int
    requested_us: int
    client: str
    group: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class FaultInjected:
    """A fault the simulator injected on `agent` (kind: FAULT_*).

    `topic`/`partition` narrow a per-partition fault (a fenced lease);
    `epoch` is the lease epoch that was fenced, if known, and `next_agent` /
    `next_epoch` who took the lease in which epoch (noted after the taker's
    lease call returned, so at or after the taking). Only FAULT_DISK_LOSS,
    FAULT_LEASE_FENCED and FAULT_METADATA_WIPE (agent "*": every agent and
    partition) excuse losing acks=1 data, so the simulator must
    record FAULT_LEASE_FENCED whenever a partition's lease moves away from an
    agent that may still hold unflushed data (it was paused, cut off or
    crashed past its lease), not only the pause or crash that caused it.
    """

    at_us: int
    kind: str
    agent: str
    topic: str | None = None
    partition: int | None = None
    epoch: int | None = None
    detail: str = ""
    # a fenced lease: the agent that took it, and the epoch it took it in
    next_agent: str | None = None
    next_epoch: int | None = None


@dataclass(frozen=True)
class OffsetSpan:
    """Offsets `first_offset`..`last_offset` of a partition."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int


@dataclass(frozen=True)
class ObjectDamaged:
    """The simulator deleted (`how` "deleted") or corrupted ("corrupted") object `key`, which
    segment rows named for `spans`: records there may be unreadable from then on (an error,
    never other data), and only there."""

    at_us: int
    key: str
    how: str
    spans: tuple[OffsetSpan, ...]


@dataclass(frozen=True)
class PhaseStarted:
    """The run entered a phase: PHASE_SAFETY (faults on), PHASE_LIVENESS (healed), PHASE_FINAL."""

    at_us: int
    phase: str


Event = (
    TopicCreated
    | ProduceAttempt
    | ProduceAcked
    | ProduceFailed
    | FetchObserved
    | FetchFailed
    | ScanCompleted
    | TxnEnded
    | TxnProducerStarted
    | TxnRead
    | GroupGeneration
    | GenerationJoined
    | OffsetCommitted
    | OffsetCommitAsked
    | OffsetReset
    | CommittedOffsetRead
    | FaultInjected
    | ObjectDamaged
    | PhaseStarted
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        TopicCreated,
        ProduceAttempt,
        ProduceAcked,
        ProduceFailed,
        FetchObserved,
        FetchFailed,
        ScanCompleted,
        TxnEnded,
        TxnProducerStarted,
        TxnRead,
        GroupGeneration,
        GenerationJoined,
        OffsetCommitted,
        OffsetCommitAsked,
        OffsetReset,
        CommittedOffsetRead,
        FaultInjected,
        ObjectDamaged,
        PhaseStarted,
    )
}

E = TypeVar("E")


class History:
    """Append-only list of events in the order they were observed."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._next_op = 0

    def new_op(self) -> int:
        """A produce op number not used yet in this history."""
        self._next_op += 1
        return self._next_op

    def append(self, event: Event) -> int:
        """Record `event`; returns its position."""
        assert type(event).__name__ in EVENT_TYPES, event
        if isinstance(event, ProduceAttempt):
            self._next_op = max(self._next_op, event.op)
        self._events.append(event)
        return len(self._events) - 1

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(self._events)

    def of_type(self, cls: type[E]) -> list[E]:
        """The events of one type, in history order."""
        return [event for event in self._events if isinstance(event, cls)]

    def __iter__(self) -> Iterator[Event]:
        return iter(tuple(self._events))

    def __len__(self) -> int:
        return len(self._events)

    def to_jsonl(self) -> str:
        """One JSON object per line, keys sorted, `type` naming the event class."""
        return "".join(event_to_json(event) + "\n" for event in self._events)

    @classmethod
    def from_jsonl(cls, text: str) -> History:
        history = cls()
        for line in text.splitlines():
            if line.strip():
                history.append(event_from_json(line))
        return history

    def save(self, path: Path) -> None:
        """Write the JSON lines to `path` (a reproduction file or trace)."""
        path.write_text(self.to_jsonl(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> History:
        return cls.from_jsonl(path.read_text(encoding="utf-8"))


def event_to_json(event: Event) -> str:
    """One event as a JSON object with sorted keys; bytes become hex strings."""
    fields = _encode(event)
    assert isinstance(fields, dict)
    fields["type"] = type(event).__name__
    return json.dumps(fields, sort_keys=True)


def event_from_json(line: str) -> Event:
    raw = json.loads(line)
    if not isinstance(raw, dict) or raw.get("type") not in EVENT_TYPES:
        raise ValueError(f"not a history event: {line[:200]}")
    cls = EVENT_TYPES[raw.pop("type")]
    event = _decoder(cls)(raw)
    assert isinstance(event, cls)
    return event


def _encode(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return [_encode(item) for item in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    return {name: _encode(getattr(value, name)) for name in _field_names(type(value))}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_DECODERS: dict[object, Callable[[object], object]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    if cls not in _FIELD_NAMES:
        assert dataclasses.is_dataclass(cls), cls
        _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return _FIELD_NAMES[cls]


def _decoder(kind: Any) -> Callable[[object], object]:
    """A function rebuilding a value of type `kind` (a dataclass, tuple[X, ...], X | None,
    bytes or a JSON scalar) from its JSON form; built once per type."""
    if kind not in _DECODERS:
        _DECODERS[kind] = _build_decoder(kind)
    return _DECODERS[kind]


def _build_decoder(kind: Any) -> Callable[[object], object]:
    origin = typing.get_origin(kind)
    if origin is types.UnionType or origin is typing.Union:
        (inner,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        present = _decoder(inner)
        return lambda raw: None if raw is None else present(raw)
    if origin is tuple:
        item = _decoder(typing.get_args(kind)[0])
        return lambda raw: tuple(item(each) for each in _expect(raw, list))
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        fields = {name: _decoder(hint) for name, hint in typing.get_type_hints(kind).items()}
        cls: Callable[..., object] = kind
        return lambda raw: cls(
            **{name: fields[name](value) for name, value in _expect(raw, dict).items()}
        )
    if kind is bytes:
        return lambda raw: bytes.fromhex(_expect(raw, str))
    return lambda raw: _expect(raw, kind)


def _expect(raw: object, kind: type[E]) -> E:
    if not isinstance(raw, kind):
        raise ValueError(f"expected {kind.__name__}, got {raw!r:.80}")
    return raw
