"""The `one_value`, `reader_offsets` and `watermarks` checkers: what sits at an offset, and how
readers move through offsets."""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass

from sim.checkers.index import (
    TP,
    Content,
    HistoryIndex,
    Sighting,
    Violation,
    index_history,
    place_of,
    show,
)
from sim.history import (
    Event,
    FetchObserved,
    History,
)


def check_one_value(history: History) -> list[Violation]:
    """No two different contents read at one offset, unless truncated across leader epochs
    (an ack that a read contradicts is a lost record: acked_durable and acked_leader judge
    it)."""
    index = index_history(history)
    found: list[Violation] = []
    for (topic, partition), offsets in sorted(index.sightings.items()):
        for offset, sightings in sorted(offsets.items()):
            read = [s for s in sightings if isinstance(s.event, FetchObserved)]
            clash = _first_clash(index, topic, partition, read)
            if clash is not None:
                first, second = clash
                message = (
                    f"two values at {place_of(topic, partition, offset)}: "
                    f"{show(first.content)} (epoch {first.leader_epoch}, t={first.at_us}us) and "
                    f"{show(second.content)} (epoch {second.leader_epoch}, t={second.at_us}us)"
                )
                found.append(Violation("one_value", message, (first.event, second.event)))
    return found


def _first_clash(
    index: HistoryIndex, topic: str, partition: int, sightings: list[Sighting]
) -> tuple[Sighting, Sighting] | None:
    by_content: dict[Content, Sighting] = {}
    for sighting in sightings:
        by_content.setdefault(sighting.content, sighting)
    if len(by_content) < 2:
        return None
    for sighting in sightings:
        for other in sightings:
            if other.content == sighting.content or other.at_us < sighting.at_us:
                continue
            if sighting.leader_epoch is not None and other.leader_epoch is not None:
                truncated = (
                    sighting.leader_epoch != other.leader_epoch
                    and index.truncation_fault(topic, partition, other.at_us) is not None
                )
            else:
                truncated = index.truncation_between(topic, partition, sighting.at_us, other.at_us)
            if not truncated:
                return sighting, other
    return None


# -- what one reader saw ---------------------------------------------------------


def check_reader_offsets(history: History) -> list[Violation]:
    """Offsets rise within a fetch; every skipped offset is explained."""
    index = index_history(history)
    found: list[Violation] = []
    for fetch in index.fetches:
        found += _fetch_order(fetch)
        found += _fetch_gaps(index, fetch)
    return found


def _fetch_order(fetch: FetchObserved) -> list[Violation]:
    where = place_of(fetch.topic, fetch.partition)
    previous = fetch.fetch_offset - 1
    for record in fetch.records:
        if record.offset <= previous:
            message = (
                f"{fetch.client} fetched {where} from {fetch.fetch_offset} and got offset "
                f"{record.offset} after {previous}: offsets went backwards or repeated"
            )
            return [Violation("reader_offsets", message, (fetch,))]
        previous = record.offset
    if fetch.next_offset is not None and fetch.next_offset <= previous:
        message = (
            f"{fetch.client} fetched {where}: position {fetch.next_offset} after reading "
            f"offset {previous}"
        )
        return [Violation("reader_offsets", message, (fetch,))]
    return []


def _fetch_gaps(index: HistoryIndex, fetch: FetchObserved) -> list[Violation]:
    tp = (fetch.topic, fetch.partition)
    read = [record.offset for record in fetch.records]
    end = read[-1] + 1 if read else fetch.fetch_offset
    if fetch.next_offset is not None:
        end = fetch.next_offset
    floor = fetch.fetch_offset
    if fetch.log_start_offset is not None:
        floor = max(floor, fetch.log_start_offset)
    gaps: list[tuple[int, int]] = []
    start = floor
    for offset in [*read, end]:
        if offset > start:
            gaps.append((start, offset))
        start = max(start, offset + 1)
    found: list[Violation] = []
    for low, high in gaps:
        problem = _unexplained(index, tp, fetch, low, high)
        if problem is not None:
            message = (
                f"{fetch.client} skipped {place_of(*tp)} offsets {low}..{high - 1} "
                f"(fetch from {fetch.fetch_offset}, read_committed={fetch.read_committed}): "
                f"{problem}"
            )
            found.append(Violation("reader_offsets", message, (fetch,)))
    return found


def _unexplained(
    index: HistoryIndex, tp: TP, fetch: FetchObserved, low: int, high: int
) -> str | None:
    known = index.known_offsets.get(tp, [])
    inside = known[bisect.bisect_left(known, low) : bisect.bisect_left(known, high)]
    unknown = high - low
    for offset in inside:
        contents = _current_contents(index, tp, fetch, index.sightings[tp][offset])
        if not contents:
            continue
        unknown -= 1
        if not any(_skippable(index, tp, fetch, offset, content) for content in contents):
            return f"offset {offset} holds {show(contents[0])}"
    if unknown and tp not in index.transactional and fetch.topic not in index.compacted:
        return "no control record, compaction or log-start move explains it"
    return None


def _current_contents(
    index: HistoryIndex, tp: TP, fetch: FetchObserved, sightings: list[Sighting]
) -> list[Content]:
    """What may sit at an offset as `fetch` saw the log: the contents of its highest known
    leader epoch, or none if they may have been truncated by a disk loss or fenced lease
    before the fetch (all seen in older epochs than the fetch's or, with epochs unknown,
    all seen before that fault)."""
    epochs = [s.leader_epoch for s in sightings]
    if fetch.leader_epoch is not None and None not in epochs:
        # a fetch in epoch E cannot see what later epochs wrote
        sightings = [s for s in sightings if (s.leader_epoch or 0) <= fetch.leader_epoch]
        if not sightings:
            return []
        latest = max(s.leader_epoch or 0 for s in sightings)
        truncated = (
            latest < fetch.leader_epoch and index.truncation_fault(*tp, fetch.at_us) is not None
        )
        current = [s.content for s in sightings if s.leader_epoch == latest]
    else:
        seen_us = max(s.at_us for s in sightings)
        truncated = index.truncation_between(*tp, seen_us + 1, fetch.at_us)
        current = [s.content for s in sightings]
    return [] if truncated else current


def _skippable(
    index: HistoryIndex, tp: TP, fetch: FetchObserved, offset: int, content: Content
) -> bool:
    """A reader may skip a control record, under read_committed uncommitted data, and in a
    compacted topic a record a later one of its key superseded."""
    control, key, value = content
    if control is not None or index.superseded(*tp, offset, key):
        return True
    attempt = index.by_content.get((*tp, key, value))
    return fetch.read_committed and attempt is not None and index.txn_visible(attempt) is not True


def check_watermarks(history: History) -> list[Violation]:
    """Per response: log_start, LSO <= HW, records inside; per reader and epoch: no regress."""
    index = index_history(history)
    found: list[Violation] = []
    highest: dict[tuple[str, str, int, str], dict[str, int]] = defaultdict(dict)
    for fetch in index.fetches:
        found += _response_bounds(fetch)
        if fetch.leader_epoch is not None:
            span = f"within leader epoch {fetch.leader_epoch}"
        else:
            faults = bisect.bisect_right(index.fault_times_us, fetch.requested_us)
            span = f"with no fault injected in between (leader epoch unknown; {faults} before)"
        seen = highest[(fetch.client, fetch.topic, fetch.partition, span)]
        marks = {
            "high watermark": fetch.high_watermark,
            "last stable offset": fetch.last_stable_offset,
            "log start offset": fetch.log_start_offset,
        }
        for name, value in marks.items():
            if value is None:
                continue
            if value < seen.get(name, value):
                message = (
                    f"{fetch.client} saw the {name} of {place_of(fetch.topic, fetch.partition)} "
                    f"go back from {seen[name]} to {value} {span} (t={fetch.at_us}us)"
                )
                found.append(Violation("watermarks", message, (fetch,)))
            seen[name] = max(value, seen.get(name, value))
    return found + _log_start_regressions(index)


@dataclass(frozen=True)
class _LogStart:
    """A log start offset some client was told in a known leader epoch, between two times."""

    requested_us: int
    at_us: int
    client: str
    offset: int
    event: Event


def _log_starts(index: HistoryIndex) -> dict[tuple[str, int, int], list[_LogStart]]:
    """Log starts answered in a known leader epoch, by (topic, partition, epoch): fetches
    made in a known epoch, acks (in the epoch of the acked batch), final scans."""
    found: dict[tuple[str, int, int], list[_LogStart]] = defaultdict(list)
    for fetch in index.fetches:
        if fetch.leader_epoch is not None and fetch.log_start_offset is not None:
            mark = _LogStart(
                fetch.requested_us, fetch.at_us, fetch.client, fetch.log_start_offset, fetch
            )
            found[(fetch.topic, fetch.partition, fetch.leader_epoch)].append(mark)
    for op, ack in index.acks.items():
        attempt, epoch = index.attempts.get(op), index.ack_epochs.get(op)
        if attempt is not None and epoch is not None and ack.log_start_offset is not None:
            mark = _LogStart(attempt.at_us, ack.at_us, ack.client, ack.log_start_offset, ack)
            found[(attempt.topic, attempt.partition, epoch)].append(mark)
    for scan in index.scans:
        if scan.leader_epoch is not None:
            mark = _LogStart(scan.requested_us, scan.at_us, scan.client, scan.start_offset, scan)
            found[(scan.topic, scan.partition, scan.leader_epoch)].append(mark)
    return found


def _log_start_regressions(index: HistoryIndex) -> list[Violation]:
    """Within one leader epoch, no client is told a log start below one another client was
    told before it asked (across readers, producers and scans)."""
    found: list[Violation] = []
    for (topic, partition, epoch), marks in sorted(_log_starts(index).items()):
        marks.sort(key=lambda mark: mark.at_us)
        completed = [mark.at_us for mark in marks]
        highest: list[_LogStart] = []
        for mark in marks:
            highest.append(max(highest[-1], mark, key=lambda m: m.offset) if highest else mark)
        for mark in marks:
            before = bisect.bisect_left(completed, mark.requested_us)
            floor = highest[before - 1] if before else None
            if floor is not None and mark.offset < floor.offset:
                message = (
                    f"{mark.client} was told log start {mark.offset} for "
                    f"{place_of(topic, partition)} in leader epoch {epoch} at {mark.at_us}us, "
                    f"below {floor.offset} that {floor.client} was told at {floor.at_us}us"
                )
                found.append(Violation("watermarks", message, (floor.event, mark.event)))
    return found


def _response_bounds(fetch: FetchObserved) -> list[Violation]:
    where = place_of(fetch.topic, fetch.partition)
    problems: list[str] = []
    high, stable, start = fetch.high_watermark, fetch.last_stable_offset, fetch.log_start_offset
    if high is not None and stable is not None and stable > high:
        problems.append(f"LSO {stable} above high watermark {high}")
    if high is not None and start is not None and start > high:
        problems.append(f"log start {start} above high watermark {high}")
    for record in fetch.records:
        if high is not None and record.offset >= high:
            problems.append(f"offset {record.offset} at or above high watermark {high}")
            break
        if start is not None and record.offset < start:
            problems.append(f"offset {record.offset} below log start {start}")
            break
    return [
        Violation("watermarks", f"{fetch.client} fetched {where}: {problem}", (fetch,))
        for problem in problems
    ]


# -- producers -------------------------------------------------------------------
