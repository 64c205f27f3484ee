"""Log compaction's rules as pure plans: which records of a compacted partition a cleaning
round keeps, and when a partition is due for one (Kafka's LogCleaner and LogCleanerManager).

No IO, no awaits, no clock: the caller reads the partition's batches, feeds them in offset
order, writes what comes back and passes the time in as `now_ms`. A round:

1. `OffsetMap(dirty_start_offset, uncleanable_offset, aborted, ...)`, fed the batches of the
   dirty section [first dirty offset, first uncleanable offset) until `add` says stop: key
   bytes -> the latest offset of that key. It holds at most `entries_max` keys (and
   `key_bytes_max` key bytes); when it fills, this round ends where it filled
   (`end_offset`) and the rest stays dirty for the next round, as in Kafka.
2. `CleaningRound(offset_map, aborted, now_ms=..., delete_retention_ms=...)`, fed every batch
   of the log from the log start up to `end_offset`, in offset order (the transaction rules
   need the whole log before the end): `clean(batch)` answers the batch unchanged, rewritten
   with fewer records, or None (the whole batch goes).
3. The caller swaps the rewritten batches in and keeps `end_offset` as the next round's first
   dirty offset.

What a round keeps, as Kafka's cleaner does:

- A keyed record iff no later record of its key is in the map (offset >= the map's entry, or
  the key is not in the map); records at or past `end_offset` are never judged (kept).
- A tombstone (value None) that is the latest for its key stays until its batch's delete
  horizon passes: the first round that keeps it stamps the horizon now_ms +
  delete_retention_ms into the batch (KIP-534); a later round at or past the horizon drops it.
- Records of aborted transactions go (whole batches), and are never put in the map.
- A transaction marker (COMMIT or ABORT control batch) stays while any batch of its
  transaction is still in the log: a round that finds none stamps the marker's delete horizon,
  and a round past that horizon drops it. Markers are always kept or dropped whole.
- Records without a key: dropped, as Kafka's cleaner (3.x and later) does (the produce path
  refuses them for compacted topics, so only data written before the topic became compacted
  has them).
- Nothing at or above the first uncleanable offset is read into the map or changed; a batch
  straddling it is kept as it is.
- A data batch left with no records goes, except the batch that ends the round, which is kept
  empty (over the same offsets) so the log still shows where it ended, as Kafka keeps it.
  Kafka also keeps empty batches holding an active idempotent producer's last sequence; here
  producer state lives in the metadata store, so no other empty batch is kept.

Idempotence: a second round over a round's output at the same `now_ms` changes nothing,
except that markers whose transactions that round emptied get their horizon stamped (Kafka's
two-step marker removal); a third round changes nothing (given delete_retention_ms > 0).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from streamhouse.kafka.batch_header import BatchHeader, parse_header
from streamhouse.kafka.batch_rewrite import (
    StoredBatch,
    decode_stored_batch,
    filter_batch,
    stamp_delete_horizon,
)
from streamhouse.kafka.control_records import ABORT_TYPE, COMMIT_TYPE, CONTROL_KEY
from streamhouse.kafka.records import Decompressor
from streamhouse.kafka.varint import Buffer
from streamhouse.log.partition_txns import AbortedTxn

# The offset map's bounds (Kafka sizes its map by log.cleaner.dedupe.buffer.size, 24 bytes a
# key hash; here keys are kept whole, some 150 bytes an entry in CPython plus the key itself)
OFFSET_MAP_ENTRIES_MAX = 200_000
OFFSET_MAP_KEY_BYTES_MAX = 32 * 1024 * 1024


# --- the produce side ------------------------------------------------------------------------


def is_compacted(cleanup_policy: str) -> bool:
    """Whether a topic with this `cleanup.policy` (a list: delete, compact or both) compacts."""
    return "compact" in cleanup_policy.split(",")


# --- when to clean ---------------------------------------------------------------------------


def dirty_ratio(clean_bytes: int, dirty_bytes: int) -> float:
    """The share of a partition's bytes not cleaned yet (0.0 for an empty partition)."""
    total_bytes = clean_bytes + dirty_bytes
    return dirty_bytes / total_bytes if total_bytes > 0 else 0.0


def should_clean(
    *,
    clean_bytes: int,
    dirty_bytes: int,
    oldest_dirty_timestamp_ms: int | None,
    now_ms: int,
    min_cleanable_dirty_ratio: float,
    max_compaction_lag_ms: int,
) -> bool:
    """Whether a compacted partition is due for a cleaning round now (LogCleanerManager).

    `dirty_bytes` are the cleanable ones (from the first dirty offset to the first uncleanable
    one), `clean_bytes` those before; `oldest_dirty_timestamp_ms` the first timestamp of the
    oldest dirty batch (None, or <= 0, when unknown). Due when the dirty share exceeds
    `min_cleanable_dirty_ratio`, or when some dirty bytes have waited longer than
    `max_compaction_lag_ms`.
    """
    if dirty_bytes <= 0:
        return False
    clean_until_ms = now_ms - max(max_compaction_lag_ms, 0)
    if oldest_dirty_timestamp_ms is not None and 0 < oldest_dirty_timestamp_ms < clean_until_ms:
        return True
    return dirty_ratio(clean_bytes, dirty_bytes) > min_cleanable_dirty_ratio


def first_uncleanable_offset(
    *,
    durable_end_offset: int,
    last_stable_offset: int,
    dirty_segments: Iterable[tuple[int, int]],
    now_ms: int,
    min_compaction_lag_ms: int,
) -> int:
    """Where the part of the log no round may touch begins: the smallest of the durable end
    (data not yet in the object store), the last stable offset (open transactions) and the
    first offset of the first dirty segment holding a record younger than
    `min_compaction_lag_ms`. `dirty_segments` are (first offset, max timestamp ms) of the
    dirty section's segments in offset order."""
    first = min(durable_end_offset, last_stable_offset)
    if min_compaction_lag_ms > 0:
        for first_offset, max_timestamp_ms in dirty_segments:
            if first_offset >= first:
                break
            if max_timestamp_ms > now_ms - min_compaction_lag_ms:
                return first_offset
    return first


# --- transaction state along a round ---------------------------------------------------------


class _Transactions:
    """What a pass over the log knows of transactions (Kafka's CleanedTransactionMetadata):
    which producers are inside an aborted transaction, which inside one not aborted, and
    whether any batch of an aborted one was seen."""

    def __init__(self, aborted: Iterable[AbortedTxn]) -> None:
        # Aborted transactions still to begin, by first offset
        self._pending = [(a.first_offset, a.producer_id, a.last_offset) for a in aborted]
        heapq.heapify(self._pending)
        self._aborted_seen: dict[int, bool] = {}  # producer id -> a batch of it seen
        self._aborted_end: dict[int, int] = {}  # producer id -> its ABORT marker's offset
        self._committed: set[int] = set()  # producer ids with a non-aborted batch seen

    def _begin_up_to(self, header: BatchHeader) -> None:
        """Aborted transactions that began by the end of this batch are under way, unless
        their marker is before it: one the pass never read (it started later, or the
        transaction is gone from the log) must not hold its producer's later batches."""
        while self._pending and self._pending[0][0] <= header.last_offset:
            _, producer_id, marker_offset = heapq.heappop(self._pending)
            if marker_offset >= header.base_offset:
                self._aborted_seen.setdefault(producer_id, False)
                self._aborted_end[producer_id] = marker_offset

    def _end_passed(self, header: BatchHeader) -> None:
        """A batch of a producer past its aborted transaction's marker offset: that
        transaction is over even though its marker was not read (cleaned away once its
        data had gone), so the producer's later batches are not taken for aborted ones."""
        end = self._aborted_end.get(header.producer_id)
        if end is not None and header.base_offset > end:
            del self._aborted_end[header.producer_id]
            self._aborted_seen.pop(header.producer_id, None)

    def data_batch(self, header: BatchHeader) -> bool:
        """A data batch was read: whether it belongs to an aborted transaction."""
        self._begin_up_to(header)
        if not header.is_transactional:
            return False
        self._end_passed(header)
        if header.producer_id in self._aborted_seen:
            self._aborted_seen[header.producer_id] = True
            return True
        self._committed.add(header.producer_id)
        return False

    def marker(self, header: BatchHeader, control_type: int | None) -> bool:
        """A control batch was read: whether no batch of its transaction was seen this pass
        (the marker may go once its horizon passes)."""
        self._begin_up_to(header)
        self._end_passed(header)
        if control_type == ABORT_TYPE:
            self._aborted_end.pop(header.producer_id, None)
            return not self._aborted_seen.pop(header.producer_id, False)
        if control_type == COMMIT_TYPE:
            if header.producer_id in self._committed:
                self._committed.discard(header.producer_id)
                return False
            return True
        return False  # not a transaction marker: kept


def _control_type(stored: StoredBatch) -> int | None:
    """ABORT_TYPE or COMMIT_TYPE for a transaction marker, None for any other control batch."""
    if not stored.records:
        return None
    key = stored.records[0].key
    if key is None or len(key) < CONTROL_KEY.size:
        return None
    _, kind = CONTROL_KEY.unpack_from(key)
    return kind if kind in (ABORT_TYPE, COMMIT_TYPE) else None


# --- the offset map --------------------------------------------------------------------------


class OffsetMap:
    """Key bytes -> the latest offset of that key in this round's dirty section.

    Fed the batches from the first dirty offset in offset order; `add` answers False once the
    caller should stop: the map is full or the batch reaches the first uncleanable offset.
    Batches of aborted transactions and control batches are not mapped (an aborted value
    must not hide the committed one before it), nor records without a key. `aborted`: the
    partition's aborted transactions (`PartitionTxns.aborted_between` and the metadata
    store's), at least those whose marker is at or past `dirty_start_offset`.
    """

    def __init__(
        self,
        dirty_start_offset: int,
        uncleanable_offset: int,
        aborted: Iterable[AbortedTxn],
        decompress: Decompressor,
        *,
        entries_max: int = OFFSET_MAP_ENTRIES_MAX,
        key_bytes_max: int = OFFSET_MAP_KEY_BYTES_MAX,
    ) -> None:
        assert entries_max >= 1 and key_bytes_max >= 1, (entries_max, key_bytes_max)
        assert dirty_start_offset <= uncleanable_offset, (dirty_start_offset, uncleanable_offset)
        self.dirty_start_offset = dirty_start_offset
        self.uncleanable_offset = uncleanable_offset
        self._entries_max = entries_max
        self._key_bytes_max = key_bytes_max
        self._decompress = decompress
        self._txns = _Transactions(aborted)
        self._latest: dict[bytes, int] = {}
        self._key_bytes = 0
        self._next_offset = 0  # batches must come in offset order
        self._full_at: int | None = None
        self._stopped = False

    def __len__(self) -> int:
        return len(self._latest)

    @property
    def full(self) -> bool:
        return self._full_at is not None

    @property
    def end_offset(self) -> int:
        """Where this round ends: the first uncleanable offset, or where the map filled."""
        return self.uncleanable_offset if self._full_at is None else self._full_at

    def latest(self, key: bytes) -> int | None:
        """The latest offset of `key` in the mapped section, None if it has none there."""
        return self._latest.get(key)

    def add(self, batch: Buffer) -> bool:
        """Map one batch; False when the caller should stop feeding (the map filled, inside
        or before this batch, or the batch reaches the first uncleanable offset, and is then
        not mapped)."""
        if self._stopped:
            return False
        header = parse_header(batch)
        assert header.base_offset >= self._next_offset, (
            "batches out of order",
            header.base_offset,
            self._next_offset,
        )
        if header.last_offset >= self.uncleanable_offset:
            self._stopped = True
            return False
        self._next_offset = header.next_offset
        if header.last_offset < self.dirty_start_offset:
            return True
        if header.is_control:
            stored = decode_stored_batch(batch, self._decompress)
            self._txns.marker(header, _control_type(stored))
            return True
        if self._txns.data_batch(header):
            return True
        stored = decode_stored_batch(batch, self._decompress)
        for record in stored.records:
            offset = stored.offset_of(record)
            if record.key is None or offset < self.dirty_start_offset:
                continue
            if not self._put(record.key, offset):
                self._full_at = offset
                self._stopped = True
                return False
        return True

    def _put(self, key: bytes, offset: int) -> bool:
        if key in self._latest:
            self._latest[key] = offset
            return True
        if self._latest and (
            len(self._latest) >= self._entries_max
            or self._key_bytes + len(key) > self._key_bytes_max
        ):
            return False  # a first key always fits, so every round makes progress
        self._latest[key] = offset
        self._key_bytes += len(key)
        return True


# --- a cleaning round ------------------------------------------------------------------------


@dataclass
class CleaningStats:
    """What one round read and what it kept."""

    batches_read: int = 0
    batches_rewritten: int = 0
    batches_dropped: int = 0
    records_read: int = 0
    records_kept: int = 0
    bytes_read: int = 0
    bytes_written: int = 0


class CleaningRound:
    """One round over the log from its start to `offset_map.end_offset`: `clean` each batch
    in offset order. Batches at or past the end (or reaching the first uncleanable offset)
    come back unchanged. `aborted`: the partition's aborted transactions, at least those
    whose marker is at or past the log start (older ones are ignored)."""

    def __init__(
        self,
        offset_map: OffsetMap,
        aborted: Iterable[AbortedTxn],
        decompress: Decompressor,
        *,
        now_ms: int,
        delete_retention_ms: int,
    ) -> None:
        assert delete_retention_ms >= 0, delete_retention_ms
        self.end_offset = offset_map.end_offset
        self._map = offset_map
        self._decompress = decompress
        self._now_ms = now_ms
        self._delete_horizon_ms = now_ms + delete_retention_ms
        self._txns = _Transactions(aborted)
        self._next_offset = 0
        self.stats = CleaningStats()

    def clean(self, batch: Buffer) -> bytes | None:
        """The batch as the round leaves it: unchanged (the same bytes), rewritten with fewer
        records or a delete horizon, or None when it goes."""
        header = parse_header(batch)
        assert header.base_offset >= self._next_offset, (
            "batches out of order",
            header.base_offset,
            self._next_offset,
        )
        self._next_offset = header.next_offset
        if header.base_offset >= self.end_offset or (
            header.last_offset >= self._map.uncleanable_offset
        ):
            return bytes(batch)
        self.stats.batches_read += 1
        self.stats.records_read += header.record_count
        self.stats.bytes_read += len(batch)
        cleaned = self._marker(batch, header) if header.is_control else self._data(batch, header)
        if cleaned is None:
            self.stats.batches_dropped += 1
            return None
        self.stats.records_kept += parse_header(cleaned).record_count
        self.stats.bytes_written += len(cleaned)
        if cleaned != batch:
            self.stats.batches_rewritten += 1
        return cleaned

    def _marker(self, batch: Buffer, header: BatchHeader) -> bytes | None:
        stored = decode_stored_batch(batch, self._decompress)
        may_go = self._txns.marker(header, _control_type(stored))
        if not may_go:
            return bytes(batch)
        if not header.has_delete_horizon:
            return stamp_delete_horizon(batch, self._delete_horizon_ms, self._decompress)
        if self._now_ms < header.base_timestamp or header.next_offset == self.end_offset:
            # before its horizon; or it ends the round, which keeps its last batch (a marker
            # is never emptied: readers of markers expect one record)
            return bytes(batch)
        return None

    def _data(self, batch: Buffer, header: BatchHeader) -> bytes | None:
        aborted = self._txns.data_batch(header)
        tombstones_stay = not header.has_delete_horizon or self._now_ms < header.base_timestamp

        def keep(offset: int, key: bytes | None, tombstone: bool) -> bool:
            if aborted:
                return False
            if offset >= self.end_offset:
                return True
            if key is None:
                return False
            latest = self._map.latest(key)
            return (latest is None or offset >= latest) and (tombstones_stay or not tombstone)

        return filter_batch(
            batch,
            keep,
            self._decompress,
            delete_horizon_ms=self._delete_horizon_ms,
            keep_empty=header.next_offset == self.end_offset,
        )
