"""The agent's registry of damaged objects: objects that segment rows point into but that are
missing from the bucket or fail their checks, as the latest reconcile run and the reads since
found them; reads of their offsets answer a clear error instead of retrying for ever."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from streamhouse.errors import DamagedData, ObjectNotFound
from streamhouse.ports.leases import SegmentRecord

log = logging.getLogger("streamhouse.reconciler")

# Damaged objects remembered at once (least recently found forgotten first): a bucket wiped
# under its metadata must not grow the agent's memory with the bucket's size
DAMAGED_OBJECTS_MAX = 10_000


class Damage(StrEnum):
    """What is wrong with an object that segment rows point into."""

    MISSING = "missing"  # not in the bucket
    CORRUPT = "corrupt"  # its size, footer or a block disagrees with its rows or checksums


@dataclass(frozen=True)
class OffsetRange:
    """Offsets [first_offset, last_offset] of one partition, held by a damaged object."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition}@{self.first_offset}..{self.last_offset}"


@dataclass(frozen=True)
class DamagedObject:
    """An object whose offsets cannot be read, what is wrong with it, and which offsets."""

    key: str
    damage: Damage
    detail: str
    ranges: tuple[OffsetRange, ...]
    found_by: str  # "reconcile" or "read"

    def describe(self) -> str:
        held = ", ".join(str(r) for r in self.ranges) or "no offsets"
        return f"object {self.key} is {self.damage.value} ({self.detail}); it holds {held}"


def offset_ranges(rows: Iterable[SegmentRecord]) -> tuple[OffsetRange, ...]:
    """The offsets the rows cover, one range per partition (an object holds one block of
    each partition it was written for), by topic and partition."""
    spans: dict[tuple[str, int], tuple[int, int]] = {}
    for row in rows:
        first, last = spans.get((row.topic, row.partition), (row.base_offset, row.last_offset))
        spans[(row.topic, row.partition)] = (
            min(first, row.base_offset),
            max(last, row.last_offset),
        )
    return tuple(
        OffsetRange(topic, partition, first, last)
        for (topic, partition), (first, last) in sorted(spans.items())
    )


class DamagedObjects:
    """Damaged objects by key: set from each reconcile run, added to by reads that find one."""

    def __init__(self, objects_max: int = DAMAGED_OBJECTS_MAX) -> None:
        self._objects_max = objects_max
        self._by_key: OrderedDict[str, DamagedObject] = OrderedDict()

    @property
    def count(self) -> int:
        return len(self._by_key)

    def listed(self) -> list[DamagedObject]:
        """Every damaged object remembered, by key."""
        return [self._by_key[key] for key in sorted(self._by_key)]

    def get(self, key: str) -> DamagedObject | None:
        return self._by_key.get(key)

    def found_by_read(self, row: SegmentRecord, error: Exception) -> DamagedData:
        """A read of `row` failed because its object is missing (ObjectNotFound) or corrupt
        (CorruptObject): remember it (logged once per object) and return the error the
        reader answers, naming the object and the offsets."""
        damage = Damage.MISSING if isinstance(error, ObjectNotFound) else Damage.CORRUPT
        if row.object_key not in self._by_key:
            found = DamagedObject(
                row.object_key, damage, str(error), offset_ranges([row]), found_by="read"
            )
            self._remember(found)
            log.warning("a read found damage: %s", found.describe())
        return DamagedData(
            f"offsets {row.base_offset}..{row.last_offset} of {row.topic}-{row.partition} "
            f"cannot be read: their object {row.object_key} is {damage.value} ({error}); "
            "see `streamctl admin reconcile`"
        )

    def update_from_run(self, damaged: Sequence[DamagedObject], verified: bool) -> None:
        """A reconcile run's findings replace what earlier runs found. What reads found stays
        unless the run looked for it and did not find it: every missing object is looked
        for by each run, a corrupt block only by a verifying run."""
        kept = [
            found
            for found in self._by_key.values()
            if found.found_by == "read" and found.damage is Damage.CORRUPT and not verified
        ]
        self._by_key.clear()
        for found in (*kept, *damaged):
            self._remember(found)

    def _remember(self, found: DamagedObject) -> None:
        self._by_key[found.key] = found
        self._by_key.move_to_end(found.key)
        while len(self._by_key) > self._objects_max:
            self._by_key.popitem(last=False)
