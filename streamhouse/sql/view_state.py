"""A continuous view's progress and the input rows it still needs, without any IO.

Progress is what the view committed with its input offsets (as offset metadata, in the same
transaction as its output): the end up to which every window was emitted, the largest event
time seen, per partition the offset read to, and its counters. A runner that starts again
from committed offsets re-reads the rows still needed by open windows; rows below the offset
read to are replays, whose lateness was already counted.

A row is late when every window it falls in was already emitted (its last window ends at or
before `emitted_through_ms`): it is counted, never emitted again. The watermark is the
largest event time seen minus the allowed lateness; windows ending at or before it are due.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from streamhouse.engine.consume import ConsumedRecord
from streamhouse.sql.view_definition import ViewDefinition


class BufferFull(Exception):
    """A view holds more rows of open windows than `buffered_rows_max`."""


@dataclass(frozen=True)
class ViewProgress:
    """What a view committed; the same in every input partition's offset metadata, but for
    `read_to` (each partition carries its own)."""

    view_id: str
    emitted_through_ms: int | None = None  # every window ending at or before it is emitted
    max_event_ms: int | None = None
    read_to: Mapping[int, int] = field(default_factory=dict)  # partition: next offset read
    late_records: int = 0
    invalid_records: int = 0  # rows without a usable event time (dropped)
    windows_emitted: int = 0

    def metadata(self, partition: int) -> str:
        """The offset metadata of `partition`'s commit."""
        return json.dumps(
            {
                "view": self.view_id,
                "emitted_through_ms": self.emitted_through_ms,
                "max_event_ms": self.max_event_ms,
                "read_to": self.read_to.get(partition),
                "late": self.late_records,
                "invalid": self.invalid_records,
                "windows": self.windows_emitted,
            },
            separators=(",", ":"),
        )

    @classmethod
    def committed(cls, view_id: str, metadata: Mapping[int, str | None]) -> ViewProgress:
        """The progress of `view_id` from its partitions' committed metadata (a fresh one when
        none was committed by this incarnation of the view)."""
        found = [
            (partition, parsed)
            for partition, raw in metadata.items()
            if (parsed := _parsed(raw)) is not None and parsed.get("view") == view_id
        ]
        if not found:
            return cls(view_id)
        latest = max((parsed for _, parsed in found), key=lambda p: p["windows"])
        return cls(
            view_id,
            emitted_through_ms=latest["emitted_through_ms"],
            max_event_ms=latest["max_event_ms"],
            read_to={p: parsed["read_to"] for p, parsed in found if parsed["read_to"] is not None},
            late_records=latest["late"],
            invalid_records=latest["invalid"],
            windows_emitted=latest["windows"],
        )


def owned_by(view_id: str, metadata: str | None) -> bool:
    """Whether a committed offset's metadata is progress of view incarnation `view_id`."""
    parsed = _parsed(metadata)
    return parsed is not None and parsed.get("view") == view_id


def _parsed(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


@dataclass
class ViewState:
    """A running view: its progress and the rows of windows not yet emitted."""

    definition: ViewDefinition
    progress: ViewProgress
    buffered_rows_max: int
    rows: list[tuple[ConsumedRecord, int]] = field(default_factory=list)  # (record, event ms)

    def __post_init__(self) -> None:
        self._replayed_to = dict(self.progress.read_to)  # below: rows read before a restart

    def admit(self, records: Iterable[tuple[ConsumedRecord, int | None]]) -> None:
        """Take newly read records with their event times (None: no usable event time)."""
        progress = self.progress
        read_to = dict(progress.read_to)
        late = progress.late_records
        invalid = progress.invalid_records
        max_event = progress.max_event_ms
        for record, event_ms in records:
            replay = record.offset < self._replayed_to.get(record.partition, 0)
            read_to[record.partition] = max(read_to.get(record.partition, 0), record.offset + 1)
            if event_ms is None:
                invalid += 0 if replay else 1
            elif self._closed(event_ms):
                late += 0 if replay else 1
            else:
                self.rows.append((record, event_ms))
                max_event = event_ms if max_event is None else max(max_event, event_ms)
        self.progress = replace(
            progress,
            read_to=read_to,
            late_records=late,
            invalid_records=invalid,
            max_event_ms=max_event,
        )
        if len(self.rows) > self.buffered_rows_max:
            raise BufferFull(
                f"view {self.definition.name!r} holds {len(self.rows)} rows of open windows, "
                f"more than buffered_rows_max ({self.buffered_rows_max}): lower the window "
                "size or the allowed lateness, or raise the limit"
            )

    def _closed(self, event_ms: int) -> bool:
        through = self.progress.emitted_through_ms
        return through is not None and self.definition.last_window_end_ms(event_ms) <= through

    @property
    def watermark_ms(self) -> int | None:
        seen = self.progress.max_event_ms
        return None if seen is None else seen - self.definition.allowed_lateness_ms

    def due(self) -> tuple[int | None, int] | None:
        """(emitted through, watermark): the windows ending in between are due; None if none."""
        watermark = self.watermark_ms
        through = self.progress.emitted_through_ms
        if watermark is None or (through is not None and watermark <= through):
            return None
        return through, watermark

    def emitted(self, through_ms: int, windows: int) -> None:
        """Windows ending up to `through_ms` went out (`windows` rows): forget their rows."""
        self.progress = replace(
            self.progress,
            emitted_through_ms=through_ms,
            windows_emitted=self.progress.windows_emitted + windows,
        )
        self.rows = [row for row in self.rows if not self._closed(row[1])]

    def offsets_to_commit(self) -> dict[int, int]:
        """Per partition read, the first offset still needed: the smallest of the rows kept,
        else the offset read to."""
        needed = dict(self.progress.read_to)
        for record, _ in self.rows:
            needed[record.partition] = min(needed[record.partition], record.offset)
        return needed
