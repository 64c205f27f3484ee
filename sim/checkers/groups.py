"""The `group_owners` and `group_offsets` checkers: one owner per partition and generation;
committed offsets never regress."""

from __future__ import annotations

import bisect
from collections import defaultdict

from sim.checkers.index import Violation, place_of
from sim.history import (
    CommittedOffsetRead,
    GroupGeneration,
    History,
    OffsetCommitted,
    OffsetReset,
)


def check_group_owners(history: History) -> list[Violation]:
    """In one generation of a group, each partition is assigned to one member."""
    owners: dict[tuple[str, int, str, int], dict[str, GroupGeneration]] = defaultdict(dict)
    for event in history.of_type(GroupGeneration):
        for tp in event.partitions:
            owners[(event.group, event.generation, tp.topic, tp.partition)].setdefault(
                event.member, event
            )
    found: list[Violation] = []
    for (group, generation, topic, partition), members in sorted(owners.items()):
        if len(members) > 1:
            message = (
                f"group {group} generation {generation} assigned {place_of(topic, partition)} "
                f"to {len(members)} members: {sorted(members)}"
            )
            found.append(Violation("group_owners", message, tuple(members.values())))
    return found


def check_group_offsets(history: History) -> list[Violation]:
    """Committed offsets never regress (outside explicit resets), as committed and as read."""
    timelines: dict[tuple[str, str, int], _CommitTimeline] = defaultdict(_CommitTimeline)
    found: list[Violation] = []
    for event in history:
        if isinstance(event, OffsetCommitted | OffsetReset | CommittedOffsetRead):
            timeline = timelines[(event.group, event.topic, event.partition)]
        if isinstance(event, OffsetCommitted | CommittedOffsetRead):
            found += timeline.judge(event)
        if isinstance(event, OffsetCommitted | OffsetReset):
            timeline.add(event)
    return found


class _CommitTimeline:
    """Commits and resets of one group partition in completion order, with running floors."""

    def __init__(self) -> None:
        self.completed_us: list[int] = []
        self.floors: list[OffsetCommitted | OffsetReset] = []
        self.offsets: set[int] = set()

    def add(self, event: OffsetCommitted | OffsetReset) -> None:
        floor = event
        if isinstance(event, OffsetCommitted) and self.floors:
            floor = max(self.floors[-1], event, key=lambda known: known.offset)
        self.completed_us.append(event.at_us)
        self.floors.append(floor)
        self.offsets.add(event.offset)

    def judge(self, event: OffsetCommitted | CommittedOffsetRead) -> list[Violation]:
        """Compare with every commit completed before `event` was requested (since a reset)."""
        before = bisect.bisect_left(self.completed_us, event.requested_us)
        floor = self.floors[before - 1] if before else None
        where = f"group {event.group} {place_of(event.topic, event.partition)}"
        if floor is not None and event.offset < floor.offset:
            verb = "committed" if isinstance(event, OffsetCommitted) else "read back committed"
            message = (
                f"{event.client} {verb} offset {event.offset} for {where} at {event.at_us}us, "
                f"below {floor.offset} set by {floor.client} at {floor.at_us}us"
            )
            return [Violation("group_offsets", message, (floor, event))]
        phantom = isinstance(event, CommittedOffsetRead) and event.offset not in self.offsets
        if phantom and event.offset >= 0:
            message = (
                f"{event.client} read back committed offset {event.offset} for {where}, "
                f"which nobody committed"
            )
            return [Violation("group_offsets", message, (event,))]
        return []


# -- the end state ---------------------------------------------------------------
