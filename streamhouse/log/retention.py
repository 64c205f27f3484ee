"""Retention by time and by bytes: how far a partition's log start may move now (Kafka's
`retention.ms` and `retention.bytes` under `cleanup.policy=delete`). Pure: the time is passed in.

Only committed segment rows are judged (blocks of records in the object store), oldest first,
and only whole rows go, as a contiguous run from the log start:

- by time, a row goes while its largest record timestamp is more than `retention_ms` before
  now (Kafka judges a segment by its largest timestamp, so one recent record keeps it);
- by bytes, the oldest rows go while what stays is at least `retention_bytes` without them
  (the partition's bytes are its rows' lengths in the bucket, a row that holds the log start
  counted whole, as Kafka counts the segment that holds it).

Both rules apply and the further one wins. The new log start is the offset after the last row
that goes; records not yet in a committed row (the agent's unflushed tail) are never judged.
A scan takes the rows a page at a time (`RetentionScan.take`), so a caller walks a long
partition with bounded memory and stops reading at the first row that stays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from streamhouse.log.topic_configs import NO_LIMIT, TopicConfigSpec

DELETE_POLICY = "delete"  # a cleanup.policy item: retention applies (also with "compact")


class RetainedRow(Protocol):
    """What retention reads of a committed segment row (ports.leases.SegmentRecord)."""

    @property
    def last_offset(self) -> int: ...

    @property
    def max_timestamp_ms(self) -> int: ...

    @property
    def length(self) -> int: ...


@dataclass(frozen=True)
class RetentionPolicy:
    """A topic's retention limits; NO_LIMIT (-1) turns a rule off."""

    retention_ms: int = NO_LIMIT
    retention_bytes: int = NO_LIMIT

    @property
    def limited(self) -> bool:
        """Whether any rule can delete anything."""
        return self.retention_ms != NO_LIMIT or self.retention_bytes >= 0

    @property
    def by_bytes(self) -> bool:
        return self.retention_bytes >= 0


def topic_retention(
    overrides: Mapping[str, str], specs: Mapping[str, TopicConfigSpec]
) -> RetentionPolicy | None:
    """The retention a topic with these config overrides has (defaults from `specs`); None
    when its cleanup.policy does not include delete or neither rule limits anything."""

    def value(name: str) -> str:
        return overrides.get(name, specs[name].default)

    if DELETE_POLICY not in value("cleanup.policy").split(","):
        return None
    policy = RetentionPolicy(int(value("retention.ms")), int(value("retention.bytes")))
    return policy if policy.limited else None


class RetentionScan:
    """One partition's rows judged oldest first, page by page (see module).

    `size_bytes` is the partition's bytes in the bucket (its rows' lengths) when the scan
    starts; only the bytes rule reads it. After each `take`, `log_start_offset` is how far the
    log start may move given the rows seen, and `finished` says whether a row that stays was
    seen (no later row can go then)."""

    def __init__(
        self, policy: RetentionPolicy, log_start_offset: int, now_ms: int, size_bytes: int
    ) -> None:
        assert policy.retention_ms >= NO_LIMIT, policy
        self.log_start_offset = log_start_offset
        self._now_ms = now_ms
        self._retention_ms = policy.retention_ms
        # bytes that may still go by the bytes rule (None: the rule is off)
        self._excess_bytes = size_bytes - policy.retention_bytes if policy.by_bytes else None
        self._time_rule_holds = policy.retention_ms != NO_LIMIT  # every row so far expired
        self.finished = not policy.limited
        self.rows_deleted = 0
        self.bytes_deleted = 0

    def _expired(self, row: RetainedRow) -> bool:
        if not self._time_rule_holds:
            return False
        # Kafka's test: now - largest timestamp > retention.ms
        self._time_rule_holds = self._now_ms - row.max_timestamp_ms > self._retention_ms
        return self._time_rule_holds

    def _over_size(self, row: RetainedRow) -> bool:
        if self._excess_bytes is None:
            return False
        self._excess_bytes -= row.length  # bytes before this row count against later ones too
        return self._excess_bytes >= 0

    def take(self, rows: Iterable[RetainedRow]) -> None:
        """Judge the next rows, in offset order (rows wholly below the log start are skipped:
        they are gone already). A row is judged by both rules before the scan finishes."""
        for row in rows:
            if self.finished:
                return
            if row.last_offset < self.log_start_offset:
                continue
            expired = self._expired(row)
            over_size = self._over_size(row)
            if not (expired or over_size):
                self.finished = True
                return
            self.log_start_offset = row.last_offset + 1
            self.rows_deleted += 1
            self.bytes_deleted += row.length


def retained_log_start(
    rows: Iterable[RetainedRow], log_start_offset: int, now_ms: int, policy: RetentionPolicy
) -> int:
    """The log start after retention over every committed row of a partition (offset order):
    the offset after the last row that goes, or `log_start_offset` when none does."""
    kept = [row for row in rows if row.last_offset >= log_start_offset]
    scan = RetentionScan(policy, log_start_offset, now_ms, sum(row.length for row in kept))
    scan.take(kept)
    return scan.log_start_offset
