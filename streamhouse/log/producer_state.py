"""Idempotent producers' sequence state in one partition, as data and pure functions.

Each producer id numbers its batches per partition (`base_sequence`, wrapping at 2^31). The
partition remembers the last `BATCHES_REMEMBERED` batches of every producer: a batch that
continues the sequence is accepted, a retry of a remembered batch is a duplicate answered with
the offsets it got the first time, an older producer epoch is fenced, and anything else is
out of order. Kafka's clients keep at most five batches in flight, hence five.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from streamhouse.errors import ErrorCode

SEQUENCE_MODULUS = 2**31
BATCHES_REMEMBERED = 5


@dataclass(frozen=True, slots=True)
class SequencedBatch:
    """Where one producer batch landed: its sequence range and its offset range."""

    first_sequence: int
    last_sequence: int
    base_offset: int
    last_offset: int


@dataclass(frozen=True, slots=True)
class ProducerSnapshot:
    """One producer's state in one partition: its epoch and its last batches, oldest first."""

    producer_id: int
    producer_epoch: int
    batches: tuple[SequencedBatch, ...]
    last_append_ms: int


@dataclass(frozen=True, slots=True)
class ProducerBatch:
    """A batch written by an idempotent producer, as the flush hands it to the metadata store;
    `batch` is None for a transaction marker, which carries the producer's epoch but no
    sequence (a marker in a newer epoch fences the older one here)."""

    producer_id: int
    producer_epoch: int
    batch: SequencedBatch | None


@dataclass(frozen=True, slots=True)
class Accept:
    """Append the batch."""


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A retry of a batch already in the log: answer with its original offsets."""

    original: SequencedBatch


@dataclass(frozen=True, slots=True)
class Refuse:
    """Reject the batch with this error code."""

    code: ErrorCode
    message: str


Verdict = Accept | Duplicate | Refuse


def last_sequence(first_sequence: int, record_count: int) -> int:
    return (first_sequence + record_count - 1) % SEQUENCE_MODULUS


def folded(
    snapshot: ProducerSnapshot | None, producer: ProducerBatch, now_ms: int
) -> ProducerSnapshot:
    """The producer's state after `producer.batch` (or its marker) was appended: a newer
    epoch starts afresh."""
    same_epoch = snapshot is not None and producer.producer_epoch == snapshot.producer_epoch
    if producer.batch is None:  # a marker: the epoch moves on, no sequence is used
        kept = snapshot.batches if snapshot is not None and same_epoch else ()
        return ProducerSnapshot(producer.producer_id, producer.producer_epoch, kept, now_ms)
    if snapshot is None or not same_epoch:
        kept = ()
    else:
        kept = snapshot.batches[-(BATCHES_REMEMBERED - 1) :]
    return ProducerSnapshot(
        producer.producer_id, producer.producer_epoch, (*kept, producer.batch), now_ms
    )


def judge(
    snapshot: ProducerSnapshot | None, epoch: int, first_sequence: int, record_count: int
) -> Verdict:
    """What to do with a batch of `record_count` records from this producer."""
    if snapshot is None:
        if first_sequence == 0:
            return Accept()
        return Refuse(
            ErrorCode.UNKNOWN_PRODUCER_ID,
            f"no state for this producer here (sequence {first_sequence} is not a first batch)",
        )
    if epoch < snapshot.producer_epoch:
        return Refuse(
            ErrorCode.INVALID_PRODUCER_EPOCH,
            f"producer epoch {epoch} is older than {snapshot.producer_epoch}: fenced",
        )
    if epoch > snapshot.producer_epoch:
        if first_sequence == 0:
            return Accept()
        return Refuse(
            ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
            f"a new producer epoch {epoch} must start at sequence 0, not {first_sequence}",
        )
    if not snapshot.batches:  # only markers of this epoch so far: the sequence starts at 0
        if first_sequence == 0:
            return Accept()
        return Refuse(
            ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
            f"sequence {first_sequence} arrived where 0 was expected (epoch {epoch} is new here)",
        )
    last = last_sequence(first_sequence, record_count)
    for batch in snapshot.batches:
        if (batch.first_sequence, batch.last_sequence) == (first_sequence, last):
            return Duplicate(batch)
    expected = (snapshot.batches[-1].last_sequence + 1) % SEQUENCE_MODULUS
    if first_sequence == expected:
        return Accept()
    return Refuse(
        ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
        f"sequence {first_sequence} arrived where {expected} was expected",
    )


def truncated(snapshot: ProducerSnapshot, offset: int) -> ProducerSnapshot | None:
    """The producer's state once every offset from `offset` on is void (None: nothing left)."""
    kept = tuple(batch for batch in snapshot.batches if batch.base_offset < offset)
    if not kept and snapshot.batches:  # (a state of markers only has no offsets to cut)
        return None
    return ProducerSnapshot(
        snapshot.producer_id, snapshot.producer_epoch, kept, snapshot.last_append_ms
    )


class ProducerStates:
    """The producers of one partition, bounded by `producers_max` (the least recently
    appending producer is forgotten first; it then gets UNKNOWN_PRODUCER_ID and resets)."""

    def __init__(self, producers_max: int, snapshots: Iterable[ProducerSnapshot] = ()) -> None:
        assert producers_max > 0
        self._producers_max = producers_max
        self._by_id = {snapshot.producer_id: snapshot for snapshot in snapshots}

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, producer_id: int) -> ProducerSnapshot | None:
        return self._by_id.get(producer_id)

    def judge(self, producer_id: int, epoch: int, first_sequence: int, count: int) -> Verdict:
        return judge(self._by_id.get(producer_id), epoch, first_sequence, count)

    def record(self, producer: ProducerBatch, now_ms: int) -> None:
        self._by_id[producer.producer_id] = folded(
            self._by_id.get(producer.producer_id), producer, now_ms
        )
        if len(self._by_id) > self._producers_max:
            del self._by_id[self._least_recent()]

    def truncate_from(self, offset: int) -> None:
        for producer_id, snapshot in sorted(self._by_id.items()):
            kept = truncated(snapshot, offset)
            if kept is None:
                del self._by_id[producer_id]
            else:
                self._by_id[producer_id] = kept

    def snapshots(self) -> Sequence[ProducerSnapshot]:
        return [self._by_id[producer_id] for producer_id in sorted(self._by_id)]

    def _least_recent(self) -> int:
        return min(
            self._by_id.values(), key=lambda s: (s.last_append_ms, s.producer_id)
        ).producer_id
