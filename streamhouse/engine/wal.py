"""The agent's write-ahead log: segmented files on the Disk port, group commit, recovery.

Appends queue in memory (bounded by `wal_queue_bytes_max`); one committer task
writes whatever is queued (up to `wal_group_bytes_max`) with one write and one
fsync, then resolves the appends' futures with the segment number they landed
in. A failed write or fsync fails that group and everything queued behind it
(the caller rolls its offsets back) and rolls to a new segment. Segments are
deleted front to back once every entry in them has been released.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from streamhouse.config import Settings
from streamhouse.errors import StorageError
from streamhouse.log.wal_format import EntryKind, decode_frames, frame_head
from streamhouse.ports.buggify import WAL_SLOW_SYNC_CALLBACK, Buggify
from streamhouse.ports.clock import Clock
from streamhouse.ports.disk import Disk, DiskFile

log = logging.getLogger("streamhouse.wal")

WAL_DIRECTORY = "wal"
SEGMENT_SUFFIX = ".wal"


def segment_path(segment: int) -> str:
    return f"{WAL_DIRECTORY}/{segment:020d}{SEGMENT_SUFFIX}"


@dataclass
class WalAppend:
    """A queued entry; `synced` resolves to its segment number once fsynced."""

    kind: EntryKind
    payload: bytes
    head: bytes  # the frame's length, CRC and kind; the payload follows it uncopied
    synced: asyncio.Future[int]

    @property
    def frame_bytes(self) -> int:
        return len(self.head) + len(self.payload)


@dataclass(frozen=True)
class RecoveredEntry:
    """An intact entry found on disk at open."""

    kind: EntryKind
    payload: bytes
    segment: int


@dataclass
class WalStats:
    """Counters for metrics and benchmarks."""

    appended_bytes: int = 0
    appended_entries: int = 0
    group_commits: int = 0
    failed_groups: int = 0
    truncated_bytes: int = 0
    deleted_segments: int = 0


@dataclass
class _InFlightGroup:
    """A group handed to the disk; `done` resolves when it is written and fsynced."""

    group: list[WalAppend]
    group_bytes: int
    segment: int
    done: asyncio.Future[None]


def _consume_outcome(future: asyncio.Future[None]) -> None:
    """Mark a group's outcome as seen: `_finish` reads it, unless an earlier group's
    failure (or the process dying) made it moot."""
    if not future.cancelled():
        future.exception()


SyncedHandler = Callable[[list[WalAppend], int], None]
FailureHandler = Callable[[list[WalAppend], StorageError], None]


class Wal:
    """One per agent. Call `recover()`, then `start()`, then `append()` freely."""

    def __init__(
        self,
        disk: Disk,
        clock: Clock,
        settings: Settings,
        on_synced: SyncedHandler | None = None,
        on_failure: FailureHandler | None = None,
        buggify: Buggify | None = None,
    ) -> None:
        """`on_synced(group, segment)` and `on_failure(entries, error)` run synchronously,
        in WAL order, before the entries' futures resolve."""
        self._disk = disk
        self._clock = clock
        self._settings = settings
        self._on_synced = on_synced
        self._on_failure = on_failure
        self._buggify = buggify or Buggify()
        self._queue: deque[WalAppend] = deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._file: DiskFile | None = None
        self._next_segment = 0
        self._live: dict[int, int] = {}  # segment -> entries not yet released
        self._task: asyncio.Task[None] | None = None
        self._in_flight: deque[_InFlightGroup] = deque()
        self._segment_bytes = 0
        self._group_timer: asyncio.Future[None] | None = None
        self._closing = False
        self._failing = False  # the last group failed: logged once until one succeeds
        self.stats = WalStats()

    async def recover(self) -> list[RecoveredEntry]:
        """Read every segment, cut torn or corrupt tails, and return the intact entries in order.

        Survivors are fsynced (a crash may have left unsynced bytes that happen to be
        intact), and every returned entry holds a reference on its segment until `release`d.
        """
        assert self._task is None, "recover before start"
        recovered: list[RecoveredEntry] = []
        for segment in self._segments_on_disk():
            path = segment_path(segment)
            result = decode_frames(self._disk.read(path), self._settings.wal_entry_bytes_max)
            if result.stopped_early:
                self.stats.truncated_bytes += self._disk.size(path) - result.valid_bytes
                self._disk.truncate(path, result.valid_bytes)
            recovered += [RecoveredEntry(f.kind, f.payload, segment) for f in result.frames]
            self._live[segment] = len(result.frames)
            self._next_segment = segment + 1
            survivor = self._disk.open_append(path)
            await survivor.fsync()
            survivor.close()
        self._delete_released_segments()
        return recovered

    def has_segments_on_disk(self) -> bool:
        return bool(self._segments_on_disk())

    def _segments_on_disk(self) -> list[int]:
        names = self._disk.list_dir(WAL_DIRECTORY)
        return sorted(int(n[: -len(SEGMENT_SUFFIX)]) for n in names if n.endswith(SEGMENT_SUFFIX))

    def start(self) -> None:
        assert self._task is None
        self._task = asyncio.get_running_loop().create_task(self._commit_loop(), name="wal-commit")

    async def close(self) -> None:
        """Write out what is queued, then stop the committer."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def has_room(self, payload_bytes: int) -> bool:
        return self._queued_bytes + payload_bytes <= self._settings.wal_queue_bytes_max

    async def wait_for_room(self) -> None:
        """Wait until the queue drains below its bound (at least one group is written)."""
        while self._queued_bytes >= self._settings.wal_queue_bytes_max:
            self._room.clear()
            await self._room.wait()

    def append(self, kind: EntryKind, payload: bytes) -> WalAppend:
        """Queue an entry. The caller checks `has_room` first; the bound is soft by one entry."""
        assert not self._closing, "append after close"
        assert len(payload) < self._settings.wal_entry_bytes_max, len(payload)
        loop = asyncio.get_running_loop()
        entry = WalAppend(kind, payload, frame_head(kind, payload), loop.create_future())
        self._queue.append(entry)
        self._queued_bytes += entry.frame_bytes
        self._wakeup.set()
        return entry

    def release(self, segment: int) -> None:
        """One entry of `segment` no longer needs the WAL (durable elsewhere, or dropped)."""
        remaining = self._live[segment] - 1
        assert remaining >= 0, segment
        self._live[segment] = remaining
        if remaining == 0:
            self._delete_released_segments()

    def _active_segment(self) -> int | None:
        return self._next_segment - 1 if self._file is not None else None

    def _delete_released_segments(self) -> None:
        active = self._active_segment()
        for segment in sorted(self._live):
            if self._live[segment] > 0 or segment == active:
                return
            self._disk.remove(segment_path(segment))
            del self._live[segment]
            self.stats.deleted_segments += 1

    async def _commit_loop(self) -> None:
        while True:
            self._submit_ready_groups()
            if not self._in_flight:
                if self._closing and not self._queue:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            head = self._in_flight[0]
            if self._queue:  # entries wait, yet no group could start: the head must finish
                await asyncio.wait({head.done})
            else:
                await self._head_done_or_more_queued(head.done)
            if head.done.done():
                while self._buggify.fires(WAL_SLOW_SYNC_CALLBACK):  # others run meanwhile
                    await asyncio.sleep(0)
                self._in_flight.popleft()
                self._finish(head)

    async def _head_done_or_more_queued(self, head_done: asyncio.Future[None]) -> None:
        """Wait for the oldest group to finish, or for entries to start the next group with."""
        self._wakeup.clear()
        queued = asyncio.ensure_future(self._wait_for_wakeup())
        await asyncio.wait({head_done, queued}, return_when=asyncio.FIRST_COMPLETED)
        queued.cancel()

    async def _wait_for_wakeup(self) -> None:
        await self._wakeup.wait()

    def _submit_ready_groups(self) -> None:
        """Start writing groups while fewer than `wal_groups_in_flight_max` are in flight.

        The disk writes them in submission order; a segment is rolled only once nothing
        is in flight on it, so a later group is never durable in a newer segment while
        an earlier one may still be lost.
        """
        while self._queue and len(self._in_flight) < self._settings.wal_groups_in_flight_max:
            segment_full = self._segment_bytes >= self._settings.wal_segment_bytes_max
            if segment_full and self._in_flight:
                return
            if self._settings.wal_group_wait_ms > 0 and not self._in_flight and not self._closing:
                return self._delay_group()
            self._in_flight.append(self._submit(self._take_group()))

    def _delay_group(self) -> None:
        """Grow the next group for `wal_group_wait_ms` before writing it."""
        if self._group_timer is None or self._group_timer.done():
            self._group_timer = asyncio.ensure_future(self._group_timer_fired())

    async def _group_timer_fired(self) -> None:
        await self._clock.sleep_ms(self._settings.wal_group_wait_ms)
        group = self._take_group() if self._queue else None
        if group is not None:
            self._in_flight.append(self._submit(group))
        self._wakeup.set()

    def _take_group(self) -> list[WalAppend]:
        group = [self._queue.popleft()]
        group_bytes = group[0].frame_bytes
        while self._queue and group_bytes + self._queue[0].frame_bytes <= (
            self._settings.wal_group_bytes_max
        ):
            entry = self._queue.popleft()
            group.append(entry)
            group_bytes += entry.frame_bytes
        return group

    def _submit(self, group: list[WalAppend]) -> _InFlightGroup:
        parts = [part for entry in group for part in (entry.head, entry.payload)]
        group_bytes = sum(entry.frame_bytes for entry in group)
        try:
            file = self._writable_file()
        except StorageError as exc:
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return _InFlightGroup(group, group_bytes, -1, failed)
        self._segment_bytes += group_bytes
        done = asyncio.ensure_future(file.append_durably(parts))
        done.add_done_callback(_consume_outcome)  # read by _finish, or moot after a failure
        return _InFlightGroup(group, group_bytes, self._next_segment - 1, done)

    def _writable_file(self) -> DiskFile:
        if self._file is not None and self._segment_bytes >= self._settings.wal_segment_bytes_max:
            self._seal()
        if self._file is None:
            self._file = self._disk.open_append(segment_path(self._next_segment))
            self._segment_bytes = self._file.size
            self._live.setdefault(self._next_segment, 0)
            self._next_segment += 1
        return self._file

    def _seal(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._delete_released_segments()

    def _finish(self, head: _InFlightGroup) -> None:
        error = head.done.exception()
        if error is not None:
            assert isinstance(error, StorageError), error
            self._fail(head.group, error)
            return
        group, segment = head.group, head.segment
        if self._failing:
            log.warning("WAL writes succeed again")
            self._failing = False
        self._dequeued(head.group_bytes)
        self._live[segment] += len(group)
        self.stats.appended_bytes += head.group_bytes
        self.stats.appended_entries += len(group)
        self.stats.group_commits += 1
        if self._on_synced is not None:
            self._on_synced(group, segment)
        for entry in group:
            if not entry.synced.done():
                entry.synced.set_result(segment)

    def _fail(self, group: list[WalAppend], exc: StorageError) -> None:
        """Fail the group, every later group in flight and everything queued behind them,
        and start a fresh segment."""
        failed = list(group)
        for later in self._in_flight:
            failed += later.group
        self._in_flight.clear()
        failed += self._queue
        self._queue.clear()
        self._queued_bytes = 0
        self._room.set()
        self.stats.failed_groups += 1
        if not self._failing:  # once per spell of failures, not once per group
            log.warning(
                "WAL write failed (%s); appends answer a storage error until one succeeds", exc
            )
            self._failing = True
        self._seal()
        if self._on_failure is not None:
            self._on_failure(failed, exc)
        for entry in failed:
            if not entry.synced.done():
                entry.synced.set_exception(exc)
                entry.synced.exception()  # a caller that gave up must not log "never retrieved"

    def _dequeued(self, size_bytes: int) -> None:
        self._queued_bytes -= size_bytes
        if self._queued_bytes < self._settings.wal_queue_bytes_max:
            self._room.set()
