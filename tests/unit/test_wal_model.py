"""Hypothesis state machines for the WAL on the simulated disk, crashing at arbitrary points.

Property without disk faults: what recovery returns is a contiguous run of
what was appended that starts no later than the first unreleased entry and
reaches at least the last fsynced one (released entries may be deleted with
their segment; unsynced ones may vanish). With fsync and write failures, what
it returns is an in-order subsequence of what was appended that still holds
every fsynced, unreleased entry.
"""

from __future__ import annotations

import asyncio

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sim.clock import VirtualClock
from sim.disk import DiskFaults, SimDisk
from sim.rng import SeededRng
from streamhouse.config import Settings
from streamhouse.engine.wal import WAL_DIRECTORY, Wal, WalAppend
from streamhouse.errors import StorageError
from streamhouse.log.wal_format import EntryKind

WAL_SETTINGS = Settings(
    wal_segment_bytes_max=300,
    wal_group_bytes_max=200,
    wal_group_wait_ms=0,
    wal_entry_bytes_max=4096,
    batch_bytes_max=1024,
    wal_queue_bytes_max=4096,
)
RECOVERY_ATTEMPTS_MAX = 50
payloads = st.binary(min_size=0, max_size=120)


def _is_subsequence(small: list[bytes], large: list[bytes]) -> bool:
    remaining = iter(large)
    return all(any(item == other for other in remaining) for item in small)


class WalMachine(RuleBasedStateMachine):
    """Appends, syncs, releases and crashes against a model of what must survive."""

    faults = DiskFaults()

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.disk: SimDisk | None = None
        self.appended: list[bytes] = []
        self.synced: list[bytes] = []
        self.released: set[bytes] = set()
        self.counter = 0
        self.unreleased: list[tuple[bytes, int]] = []
        self.inflight: list[tuple[bytes, WalAppend]] = []
        self.wal: Wal | None = None

    @rule(seed=st.integers(0, 2**32))
    @precondition(lambda self: self.disk is None)
    def start(self, seed: int) -> None:
        self.disk = SimDisk(SeededRng(seed), self.faults)
        self._open()

    def _open(self) -> None:
        assert self.disk is not None
        recovered = None
        for _ in range(RECOVERY_ATTEMPTS_MAX):  # a failed fsync at recovery: restart again
            self.wal = Wal(self.disk, VirtualClock(), WAL_SETTINGS)
            try:
                recovered = self.loop.run_until_complete(self.wal.recover())
                break
            except StorageError:
                continue
        assert recovered is not None, "recovery kept failing"
        payloads_found = [entry.payload for entry in recovered]
        self._check_recovery(payloads_found)
        self.appended = list(payloads_found)
        self.synced = list(payloads_found)
        self.released = set()
        self.unreleased = [(entry.payload, entry.segment) for entry in recovered]
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        assert self.wal is not None
        self.wal.start()

    def _check_recovery(self, found: list[bytes]) -> None:
        must_survive = [p for p in self.synced if p not in self.released]
        assert _is_subsequence(must_survive, found), "an fsynced, unreleased entry was lost"
        assert _is_subsequence(found, self.appended), "recovered entries out of order"
        if self.faults == DiskFaults() and found:
            start = self.appended.index(found[0])
            assert found == self.appended[start : start + len(found)], "a hole in the middle"

    @rule(batch=st.lists(payloads, min_size=1, max_size=5))
    @precondition(lambda self: self.wal is not None)
    def append(self, batch: list[bytes]) -> None:
        self.loop.run_until_complete(self._append(batch))

    async def _append(self, batch: list[bytes]) -> None:
        assert self.wal is not None
        for body in batch:
            self.counter += 1
            payload = self.counter.to_bytes(4, "big") + body
            self.inflight.append((payload, self.wal.append(EntryKind.BATCH, payload)))
            self.appended.append(payload)

    @rule()
    @precondition(lambda self: self.wal is not None and bool(self.inflight))
    def sync(self) -> None:
        futures = [future for _, future in self.inflight]
        self.loop.run_until_complete(
            asyncio.gather(*(f.synced for f in futures), return_exceptions=True)
        )
        for payload, wal_append in self.inflight:
            if wal_append.synced.exception() is None:
                self.synced.append(payload)
                self.unreleased.append((payload, wal_append.synced.result()))
            else:
                assert isinstance(wal_append.synced.exception(), StorageError)
        self.inflight = []

    @rule(count=st.integers(1, 10))
    @precondition(lambda self: self.wal is not None and bool(self.unreleased))
    def release_oldest(self, count: int) -> None:
        assert self.wal is not None
        for payload, segment in self.unreleased[:count]:
            self.wal.release(segment)
            self.released.add(payload)
        self.unreleased = self.unreleased[count:]

    @rule(steps=st.integers(0, 8))
    @precondition(lambda self: self.wal is not None)
    def crash(self, steps: int) -> None:
        """Let the committer run a few loop steps (maybe mid-group), then kill the process."""
        assert self.disk is not None
        for _ in range(steps):
            self.loop.run_until_complete(asyncio.sleep(0))
        self._kill()
        self.disk.crash()
        self._open()

    def _kill(self) -> None:
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.inflight = []

    @invariant()
    def released_segments_are_deleted(self) -> None:
        if self.wal is None or self.disk is None or self.inflight:
            return
        live_segments = {segment for _, segment in self.unreleased}
        on_disk = {int(name.split(".")[0]) for name in self.disk.list_dir(WAL_DIRECTORY)}
        assert live_segments <= on_disk, "a segment with live entries was deleted"
        if live_segments:
            assert min(on_disk) >= min(live_segments), "a fully released segment was kept"
        else:
            assert len(on_disk) <= 1, "only the active segment may outlive its entries"

    def teardown(self) -> None:
        self._kill()
        self.loop.close()


class WalWithDiskFaultsMachine(WalMachine):
    faults = DiskFaults(fsync_error_rate=0.1, write_error_rate=0.05)


TestWal = WalMachine.TestCase
TestWal.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)
TestWalWithDiskFaults = WalWithDiskFaultsMachine.TestCase
TestWalWithDiskFaults.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)
