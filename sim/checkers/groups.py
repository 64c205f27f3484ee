"""The `group_owners` and `group_offsets` checkers: one owner per partition and generation;
committed offsets never regress, except after a truncation the committing member saw or by
a commit of a partition its member did not own in the generation the commit carried."""

from __future__ import annotations

import bisect
from collections import defaultdict

from sim.checkers.index import (
    WIPE_CLIENT,
    HistoryIndex,
    Violation,
    index_history,
    place_of,
)
from sim.history import (
    OFFSET_OUT_OF_RANGE,
    CommittedOffsetRead,
    FetchFailed,
    FetchObserved,
    GenerationJoined,
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
    """Committed offsets never regress (outside explicit resets and truncations the committing
    member saw), as committed and as read."""
    index = index_history(history)
    assigned = _assignments(history)
    starts = _generation_starts(history)
    asked = _offsets_asked(history)
    timelines: dict[tuple[str, str, int], _CommitTimeline] = defaultdict(_CommitTimeline)
    own_highest: dict[tuple[str, str, str, int], int] = {}  # each client's highest commit so far
    found: list[Violation] = []
    for event in history:
        if isinstance(event, OffsetCommitted | OffsetReset | CommittedOffsetRead):
            timeline = timelines[(event.group, event.topic, event.partition)]
        if isinstance(event, OffsetReset):
            timeline.add(event, reset=True)
        elif isinstance(event, CommittedOffsetRead):
            found += timeline.judge(event) or _unset(event, asked)
        elif isinstance(event, OffsetCommitted):
            floor = timeline.floor(event)
            truncated = floor is not None and truncation_seen(index, event, floor)
            own = (event.client, event.group, event.topic, event.partition)
            explained = (
                truncated
                or unowned_commit(assigned, event, floor)
                or read_before_generation(index, starts, event, floor, own_highest.get(own))
                or retried_into_a_later_generation(
                    index, starts, event, timeline.latest(), own_highest.get(own)
                )
            )
            found += [] if explained else timeline.judge(event)
            timeline.add(event, reset=explained)
            own_highest[own] = max(own_highest.get(own, event.offset), event.offset)
    return found


_Asked = dict[tuple[str, str, int], list[tuple[int, int]]]


def _offsets_asked(history: History) -> _Asked:
    """(group, topic, partition) -> (requested_us, offset) of every commit and reset, completed
    or not by the end: a read may answer a commit still in flight."""
    asked: _Asked = defaultdict(list)
    for event in history:
        if isinstance(event, OffsetCommitted):
            key = (event.group, event.topic, event.partition)
            asked[key].append((event.requested_us, event.offset))
        elif isinstance(event, OffsetReset):
            asked[(event.group, event.topic, event.partition)].append((event.at_us, event.offset))
    return asked


def _unset(read: CommittedOffsetRead, asked: _Asked) -> list[Violation]:
    """An offset read back must be one somebody asked to commit before the read completed."""
    offsets = asked.get((read.group, read.topic, read.partition), [])
    if read.offset < 0 or any(o == read.offset and at <= read.at_us for at, o in offsets):
        return []
    message = (
        f"{read.client} read back committed offset {read.offset} for group {read.group} "
        f"{place_of(read.topic, read.partition)}, which nobody committed"
    )
    return [Violation("group_offsets", message, (read,))]


_Assignments = dict[tuple[str, int, str], frozenset[tuple[str, int]]]


def _assignments(history: History) -> _Assignments:
    """(group, generation, member id) -> the partitions that member was assigned."""
    return {
        (event.group, event.generation, event.member): frozenset(
            (tp.topic, tp.partition) for tp in event.partitions
        )
        for event in history.of_type(GroupGeneration)
    }


def _generation_starts(history: History) -> dict[tuple[str, int, str], int]:
    """(group, generation, member id) -> when the member learned its assignment in it, or,
    for a generation whose assignment never reached it (its SyncGroup failed, or a commit
    was retried first), when its JoinGroup answer told it the generation, from which on
    aiokafka sends its commits with that generation."""
    joined = {
        (event.group, event.generation, event.member): event.at_us
        for event in history.of_type(GenerationJoined)
    }
    assigned = {
        (event.group, event.generation, event.member): event.at_us
        for event in history.of_type(GroupGeneration)
    }
    return joined | assigned


def read_before_generation(
    index: HistoryIndex,
    starts: dict[tuple[str, int, str], int],
    commit: OffsetCommitted,
    floor: OffsetCommitted | OffsetReset | None,
    own_highest: int | None,
) -> bool:
    """Whether `commit` (below `floor`, which another client set) sets the position past a
    record its client was last handed before the generation the commit carried began, and
    not below the client's own earlier commits: a record fetched in an older generation,
    delivered to the application after a rebalance gave the partition back (aiokafka keeps
    what it fetched while it rejoins; its position only moves on). The coordinator takes
    any offset from a current member, so the regression is the client's; it counts as a
    reset."""
    if floor is None or commit.offset >= floor.offset or commit.offset <= 0:
        return False
    if floor.client == commit.client or (own_highest is not None and commit.offset < own_highest):
        return False
    began_us = starts.get((commit.group, commit.generation, commit.member))
    if began_us is None:
        return False
    last = commit.offset - 1
    handed = [
        answer.at_us
        for answer in index.answers_by_reader.get(
            (commit.client, commit.topic, commit.partition), []
        )
        if isinstance(answer, FetchObserved)
        and answer.at_us <= commit.requested_us
        and any(record.offset == last for record in answer.records)
    ]
    return bool(handed) and max(handed) < began_us


def retried_into_a_later_generation(
    index: HistoryIndex,
    starts: dict[tuple[str, int, str], int],
    commit: OffsetCommitted,
    latest: OffsetCommitted | OffsetReset | None,
    own_highest: int | None,
) -> bool:
    """Whether `commit`, asked before `latest` (the floor now, set by another client while the
    commit was in flight) and below it, landed after it and is the client's regression as
    `read_before_generation` says: it carried a generation its member learned only after
    `latest` completed, or one newer than the generation `latest` was taken under (a group's
    generations only grow, and a coordinator takes a commit of its current one only), so
    the coordinator cannot have taken it earlier (aiokafka retries a commit with the
    generation it holds at the retry, here one it rejoined into). The second covers a join
    answered in the same instant as `latest` (no network delay)."""
    if latest is None or commit.offset >= latest.offset:
        return False
    began_us = starts.get((commit.group, commit.generation, commit.member))
    if began_us is None:
        return False
    newer = isinstance(latest, OffsetCommitted) and 0 <= latest.generation < commit.generation
    if began_us <= latest.at_us and not newer:
        return False
    return read_before_generation(index, starts, commit, latest, own_highest)


def unowned_commit(
    assigned: _Assignments, commit: OffsetCommitted, floor: OffsetCommitted | OffsetReset | None
) -> bool:
    """Whether `commit` is one the classic group protocol accepts by design, whatever it sets
    the offset to: it carried a generation no older than that of the floor it was asked
    above (else the coordinator took a stale generation) and a member that generation did
    not assign the partition to. OffsetCommit is checked against generation and member id,
    not ownership, so a client committing a partition it lost (aiokafka retries a commit
    with the generation it holds at the retry) may land after, and below, the owner's
    commits; the history knows the generation each accepted attempt carried
    (`sim.capture`). Such a commit counts as a reset, also for the reads after it; so does a
    standalone commit (generation -1, no member id), the explicit set the coordinator takes
    only for a group without members (`log.group_state.Group.check_commit`): aiokafka sends its
    retry as one after a failed heartbeat reset its generation."""
    if commit.generation < 0 and not commit.member:
        return True  # a standalone commit: the protocol's explicit set, for a group without members
    if isinstance(floor, OffsetCommitted) and floor.generation > commit.generation:
        return False
    partitions = assigned.get((commit.group, commit.generation, commit.member))
    not_owned = partitions is not None and (commit.topic, commit.partition) not in partitions
    return not_owned


def truncation_seen(
    index: HistoryIndex, commit: OffsetCommitted, floor: OffsetCommitted | OffsetReset
) -> bool:
    """Whether the member committing `commit` (below `floor`) saw, before it asked to
    commit, the log below the floor's offset cut back or rewritten in a later leader epoch
    than the record just below the floor was read in (`_shows_truncation`)."""
    if commit.offset >= floor.offset:
        return False
    tp = (commit.topic, commit.partition)
    covered = [
        s.leader_epoch
        for s in index.sightings[tp].get(floor.offset - 1, [])
        if s.at_us <= floor.at_us and s.leader_epoch is not None
    ]
    if not covered:
        return False
    answers = index.answers_by_reader.get((commit.client, *tp), [])
    return any(
        _shows_truncation(index, answer, floor.offset, max(covered))
        for answer in answers
        if answer.at_us <= commit.requested_us
    )


def _shows_truncation(
    index: HistoryIndex, answer: FetchObserved | FetchFailed, below: int, epoch: int
) -> bool:
    """A record below `below` in a later epoch than `epoch`; or, answered in a later epoch
    (`HistoryIndex.answer_epoch`), a high watermark below `below`, or OFFSET_OUT_OF_RANGE
    for a fetch at or below it (the log ended before it)."""
    later = index.answer_epoch(answer)
    in_later_epoch = later is not None and later > epoch
    if isinstance(answer, FetchFailed):
        cut = answer.error_code == OFFSET_OUT_OF_RANGE and answer.fetch_offset <= below
        return cut and in_later_epoch
    rewritten = any(
        r.offset < below and r.leader_epoch is not None and r.leader_epoch > epoch
        for r in answer.records
    )
    ended = answer.high_watermark is not None and answer.high_watermark < below
    return rewritten or (ended and in_later_epoch)


class _CommitTimeline:
    """Commits and resets of one group partition in completion order, with running floors:
    the highest commit since the last reset (an explicit one, or a commit below the floor
    after a truncation its member saw)."""

    def __init__(self) -> None:
        self.completed_us: list[int] = []
        self.floors: list[OffsetCommitted | OffsetReset] = []
        self.resets: list[bool] = []
        self.wipes: list[int] = []  # indexes of the resets a metadata wipe made

    def add(self, event: OffsetCommitted | OffsetReset, *, reset: bool) -> None:
        floor = event
        if not reset and self.floors:
            floor = max(self.floors[-1], event, key=lambda known: known.offset)
        if isinstance(event, OffsetReset) and event.client == WIPE_CLIENT:
            self.wipes.append(len(self.floors))
        self.completed_us.append(event.at_us)
        self.floors.append(floor)
        self.resets.append(reset)

    def floor(
        self, event: OffsetCommitted | CommittedOffsetRead
    ) -> OffsetCommitted | OffsetReset | None:
        """The floor as of when `event` was requested: commits completed before it, and a
        reset completed at that very instant (recorded before it, so it came first)."""
        before = bisect.bisect_left(self.completed_us, event.requested_us)
        through = bisect.bisect_right(self.completed_us, event.requested_us)
        if any(self.resets[before:through]):
            before = through
        floor = self.floors[before - 1] if before else None
        # A request in flight across a metadata wipe may be answered by the rebuilt store:
        # no lower than what the wipe left, but maybe lower than before it.
        for wipe in self.wipes:
            if before > wipe or self.completed_us[wipe] > event.at_us:
                continue
            if floor is None or self.floors[wipe].offset < floor.offset:
                floor = self.floors[wipe]
        return floor

    def latest(self) -> OffsetCommitted | OffsetReset | None:
        """The floor after every commit and reset completed so far."""
        return self.floors[-1] if self.floors else None

    def judge(self, event: OffsetCommitted | CommittedOffsetRead) -> list[Violation]:
        """Compare with every commit completed before `event` was requested (since a reset)."""
        floor = self.floor(event)
        where = f"group {event.group} {place_of(event.topic, event.partition)}"
        if floor is not None and event.offset < floor.offset:
            verb = "committed" if isinstance(event, OffsetCommitted) else "read back committed"
            message = (
                f"{event.client} {verb} offset {event.offset} for {where} at {event.at_us}us, "
                f"below {floor.offset} set by {floor.client} at {floor.at_us}us"
            )
            return [Violation("group_offsets", message, (floor, event))]
        return []


# -- the end state ---------------------------------------------------------------
