"""The partition log against a list model through append, flush, crash, recover and lost leases.

Real engine code (LogStore, WAL, flusher, object format) on the sim disk, sim
object store and sim metadata store, over partitions of two orgs' topics (a flush writes
an object for each org). The model keeps, per partition, the values appended in offset
order and how far each is promised:

- acked (acks=1, WAL fsynced): survives a crash unless the lease moved on;
- durable (flushed and committed): survives everything;
- unacked: may survive a crash (as a prefix) or vanish.
"""

from __future__ import annotations

import asyncio

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sim.clock import VirtualClock
from sim.disk import DiskFaults, SimDisk
from sim.metadata import SimMetadataStore
from sim.object_store import SimObjectStore
from sim.rng import SeededRng
from streamhouse.config import Settings
from streamhouse.engine.log_store import AppendResult, LogStore
from streamhouse.errors import NotLeader, StorageError
from streamhouse.kafka.records import SimpleRecord, build_batch, decode_records
from streamhouse.names import TopicPartition
from tests.property_budget import examples

TOPIC = "events"
OTHER_ORG_TOPIC = "acme:events"  # org acme's topic `events`: its objects are under its prefix
# The model's partitions: two of the default org's topic and one of acme's
PLACES = (TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1), TopicPartition(OTHER_ORG_TOPIC, 0))
PARTITIONS = len(PLACES)
AGENT = "agent-a"
LEASE_TTL_MS = 1000
STORE_SETTINGS = Settings(
    wal_segment_bytes_max=2048,
    wal_group_wait_ms=0,
    tail_bytes_max=600,  # small, so reads also go to objects
    lease_ttl_ms=LEASE_TTL_MS,
    lease_drift_margin_ms=LEASE_TTL_MS // 10,
)
READ_BYTES_MAX = 1 << 20
OPEN_ATTEMPTS_MAX = 50


class LogStoreMachine(RuleBasedStateMachine):
    disk_faults = DiskFaults()

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store: LogStore | None = None
        self.values: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
        self.acked: dict[int, int] = dict.fromkeys(range(PARTITIONS), 0)  # count acked
        self.durable: dict[int, int] = dict.fromkeys(range(PARTITIONS), 0)
        self.ever_appended: dict[int, set[bytes]] = {p: set() for p in range(PARTITIONS)}
        self.outstanding: list[tuple[int, AppendResult]] = []
        self.counter = 0

    def run(self, coroutine):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coroutine)

    @rule(seed=st.integers(0, 2**32))
    @precondition(lambda self: self.store is None)
    def start(self, seed: int) -> None:
        rng = SeededRng(seed)
        self.rng = rng
        self.clock = VirtualClock()
        self.disk = SimDisk(rng.fork("disk"), self.disk_faults)
        self.objects = SimObjectStore(None, rng.fork("objects"))
        self.store_clock = VirtualClock()  # the metadata store's own clock: judges expiry
        self.metadata = SimMetadataStore(rng.fork("metadata"), clock=self.store_clock)
        self.run(self.metadata.create_topic(TOPIC, 2, {}, self.clock.now_ms()))
        self.run(self.metadata.create_topic(OTHER_ORG_TOPIC, 1, {}, self.clock.now_ms()))
        self._open()

    def _open(self) -> None:
        for _ in range(OPEN_ATTEMPTS_MAX):  # a disk fault during recovery: restart again
            self.store = LogStore(
                STORE_SETTINGS,
                self.clock,
                self.rng,
                self.disk,
                self.objects,
                AGENT,
                topics=self.metadata,
                leases=self.metadata,
                producers=self.metadata,
            )
            try:
                self.run(self.store.open(run_background=False))
                return
            except StorageError:
                self._kill()
        raise AssertionError("the agent never managed to open")

    @rule(
        partition=st.integers(0, PARTITIONS - 1),
        count=st.integers(1, 4),
        wait=st.sampled_from(["none", "synced", "durable"]),
    )
    @precondition(lambda self: self.store is not None)
    def produce(self, partition: int, count: int, wait: str) -> None:
        values = []
        for _ in range(count):
            self.counter += 1
            values.append(b"v%d" % self.counter)
        batch = build_batch([SimpleRecord(None, v, (), 1000 + self.counter) for v in values])
        assert self.store is not None
        try:
            result = self.run(
                self.store.append(PLACES[partition], batch, durable=wait == "durable")
            )
        except NotLeader:
            return
        self._observe_failures()
        if result.synced.done() and result.synced.exception() is not None:
            return  # failed together with an earlier write: its offsets are void already
        assert result.base_offset == len(self.values[partition])
        self.values[partition] += values
        self.ever_appended[partition].update(values)
        self.outstanding.append((partition, result))
        if wait != "none":
            try:
                self.run(result.synced)
            except StorageError:
                self._observe_failures()
                return
            self.acked[partition] = len(self.values[partition])
        if wait == "durable":
            assert result.durable is not None and not result.durable.done()
            self.run(self.store.flusher.flush_once())
            self._all_synced_are_durable()
            assert result.durable.done() and result.durable.exception() is None

    def _observe_failures(self) -> None:
        """A failed WAL write voids its batch and everything after it in the partition."""
        still_open = []
        for partition, result in self.outstanding:
            if not result.synced.done():
                still_open.append((partition, result))
            elif result.synced.exception() is not None:
                assert result.base_offset >= self.acked[partition], "an acked write was voided"
                del self.values[partition][result.base_offset :]
        self.outstanding = still_open

    def _all_synced_are_durable(self) -> None:
        assert self.store is not None
        for partition in range(PARTITIONS):
            plog = self.store.led_partition(PLACES[partition])
            if plog is not None:
                self.durable[partition] = plog.state.durable_end_offset

    @rule()
    @precondition(lambda self: self.store is not None)
    def flush(self) -> None:
        assert self.store is not None
        self.run(asyncio.sleep(0))
        self.run(self.store.flusher.flush_once())
        self._all_synced_are_durable()
        for partition in range(PARTITIONS):
            plog = self.store.led_partition(PLACES[partition])
            if plog is not None:
                assert plog.state.durable_end_offset == plog.state.high_watermark

    @rule(steps=st.integers(0, 3))
    @precondition(lambda self: self.store is not None)
    def crash(self, steps: int) -> None:
        for _ in range(steps):
            self.run(asyncio.sleep(0))
        self._kill()
        self.disk.crash()
        self._open()
        self._adopt_recovered_log()

    @rule()
    @precondition(lambda self: self.store is not None)
    def clean_restart(self) -> None:
        assert self.store is not None
        self.run(self.store.close(flush=True))
        self._kill()
        self._open()
        self._adopt_recovered_log()

    @rule(partition=st.integers(0, PARTITIONS - 1))
    @precondition(lambda self: self.store is not None)
    def lose_lease(self, partition: int) -> None:
        """Another agent takes the lease after expiry, then gives it up: our epoch moved on."""
        tp = PLACES[partition]
        self.clock.advance_ms(LEASE_TTL_MS + 1)
        self.store_clock.advance_ms(LEASE_TTL_MS + 1)
        lease = self.run(self.metadata.acquire_lease(tp, "thief", 1))
        assert lease is not None
        self.run(self.metadata.release_lease(tp, "thief"))
        assert self.store is not None
        self.run(self.store.renew_leases())
        assert self.store.led_partition(tp) is None, "a lost lease was not noticed"
        # Only what was durable is promised now.
        end = self.durable[partition]
        self.values[partition] = self.values[partition][:end]
        self.acked[partition] = end

    def _adopt_recovered_log(self) -> None:
        for partition in range(PARTITIONS):
            found = self._read_all(partition)
            expected = self.values[partition]
            acked = self.acked[partition]
            if self.disk_faults == DiskFaults():
                assert found == expected[: len(found)], f"p{partition}: not a prefix of the model"
            else:
                # An unacked write voided by a failed fsync may resurface after a crash if
                # the void marker was not synced either: it was still once appended here.
                assert found[:acked] == expected[:acked], f"p{partition}: acked prefix changed"
                assert set(found) <= self.ever_appended[partition]
                counters = [int(value[1:]) for value in found]
                assert counters == sorted(counters), f"p{partition}: values out of order"
            assert len(found) >= acked, f"p{partition}: acked write lost"
            assert len(found) >= self.durable[partition], f"p{partition}: durable write lost"
            self.values[partition] = found
            self.acked[partition] = len(found)
            self._all_synced_are_durable()

    def _read_all(self, partition: int) -> list[bytes]:
        assert self.store is not None
        tp = PLACES[partition]
        values: list[bytes] = []
        offset = 0
        while True:
            result = self.run(self.store.reads.read(tp, offset, READ_BYTES_MAX))
            if not result.batches:
                assert offset == result.high_watermark
                return values
            for batch in result.batches:
                records = decode_records(batch)
                base = int.from_bytes(batch[:8], "big")
                for record in records:
                    if base + record.offset_delta >= offset:
                        assert base + record.offset_delta == len(values) == offset
                        assert record.value is not None
                        values.append(record.value)
                        offset += 1

    def _kill(self) -> None:
        self.outstanding = []
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.run(asyncio.sleep(0))
        self.store = None

    @invariant()
    def offsets_are_ordered_and_reads_match(self) -> None:
        if self.store is None:
            return
        for partition in range(PARTITIONS):
            plog = self.store.led_partition(PLACES[partition])
            if plog is None:
                continue
            plog.state.check()
            self._observe_failures()
            visible = self._read_all(partition)
            assert visible == self.values[partition][: len(visible)]
            assert len(visible) >= self.acked[partition]

    def teardown(self) -> None:
        if self.store is not None:
            self._kill()
        self.loop.close()


TestLogStore = LogStoreMachine.TestCase
TestLogStore.settings = settings(max_examples=examples(200), stateful_step_count=25, deadline=None)


class LogStoreWithDiskFaultsMachine(LogStoreMachine):
    """fsync and write failures: rolled-back offsets are reused, and never resurface."""

    disk_faults = DiskFaults(fsync_error_rate=0.15, write_error_rate=0.05)


TestLogStoreWithDiskFaults = LogStoreWithDiskFaultsMachine.TestCase
TestLogStoreWithDiskFaults.settings = settings(
    max_examples=examples(200), stateful_step_count=25, deadline=None
)
