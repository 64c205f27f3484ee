"""Model-based tests of the metadata store: the real SQLite-file store against a dict model.

Also the simulator's injected faults: clean failures change nothing, unknown
outcomes happened, and a retried flush commit answers like the first.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sim.metadata import MetadataFaults, SimMetadataStore
from sim.rng import SeededRng
from streamhouse.errors import (
    MetadataUnavailable,
    MetadataUnknownOutcome,
    TopicAlreadyExists,
    UnknownTopicOrPartition,
)
from streamhouse.io.sql.store import open_sql_metadata
from streamhouse.io.sql.store_clock import host_clock
from streamhouse.io.sql.transactions import run_inline
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import CommittedOffset
from streamhouse.ports.leases import FlushCommit, FlushOutcome, ObjectRecord, SegmentRecord
from streamhouse.ports.metadata import MetadataStore
from streamhouse.ports.topics import PartitionRecord, TopicRecord
from tests.property_budget import examples

T = TypeVar("T")

TOPICS = ("alpha", "beta")
AGENTS = ("agent-x", "agent-y")
GROUPS = ("billing", "audit")
PARTITION_COUNT_MAX = 3
TTL_MS = 1_000
# Partition PARTITION_COUNT_MAX never exists: requests for it must be refused.
ALL_TPS = [TopicPartition(t, p) for t in TOPICS for p in range(PARTITION_COUNT_MAX + 1)]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@dataclass
class PartitionModel:
    """What the store should hold for one partition."""

    leader_agent: str | None = None
    leader_epoch: int = 0
    lease_expires_ms: int = 0
    durable_end_offset: int = 0
    log_start_offset: int = 0
    segments: list[SegmentRecord] = field(default_factory=list)

    def record(self, tp: TopicPartition, now_ms: int) -> PartitionRecord:
        return PartitionRecord(
            tp.topic,
            tp.partition,
            self.leader_agent,
            self.leader_epoch,
            self.lease_expires_ms,
            self.durable_end_offset,
            self.log_start_offset,
            self.leader_agent is not None and self.lease_expires_ms > now_ms,
        )


@dataclass(frozen=True)
class StoreView:
    """Everything observable in the store, read in one go."""

    topics: list[TopicRecord]
    partitions: dict[TopicPartition, PartitionRecord]
    segments: dict[TopicPartition, list[SegmentRecord]]
    objects: list[ObjectRecord]
    offset_groups: list[str]
    offsets: dict[str, dict[TopicPartition, CommittedOffset]]


async def read_view(store: MetadataStore, tps: list[TopicPartition]) -> StoreView:
    partitions = {tp: await store.get_partition(tp) for tp in tps}
    segments = {tp: await store.list_segments(tp, 0, 100_000) for tp in tps}
    offsets = {group: await store.fetch_offsets(group) for group in GROUPS}
    return StoreView(
        await store.list_topics(),
        partitions,
        segments,
        await store.list_objects(),
        await store.list_offset_groups(),
        offsets,
    )


class MetadataMachine(RuleBasedStateMachine):
    """Drives a SQLite-file store and a dict model with the same operations."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="metadata-model-"))
        # Inline runner: the thread hop is covered by the conformance suite, and
        # skipping it keeps hundreds of examples fast.
        url = f"sqlite:///{self.dir / 'metadata.db'}"
        # The store's clock is the model's time: expiry is judged by it, nobody passes it in.
        self.store = open_sql_metadata(
            url, run_blocking=run_inline, store_clock=host_clock(lambda: self.now_ms)
        )
        self.now_ms = 0
        self.topics: dict[str, TopicRecord] = {}
        self.partitions: dict[TopicPartition, PartitionModel] = {}
        self.flushes: dict[str, tuple[FlushCommit, FlushOutcome]] = {}
        self.retired_epochs: dict[TopicPartition, int] = {}
        self.offsets: dict[str, dict[TopicPartition, CommittedOffset]] = {g: {} for g in GROUPS}

    def draw_tp(self, data: st.DataObject) -> TopicPartition:
        """Mostly an existing partition, sometimes any (which may not exist)."""
        existing = sorted(self.partitions)
        if existing and data.draw(st.integers(0, 9)) > 0:
            return data.draw(st.sampled_from(existing))
        return data.draw(st.sampled_from(ALL_TPS))

    def teardown(self) -> None:
        run(self.store.close())
        shutil.rmtree(self.dir, ignore_errors=True)

    # topics

    @initialize(count=st.integers(1, PARTITION_COUNT_MAX))
    def start_with_a_topic(self, count: int) -> None:
        self.create_topic(TOPICS[0], count)

    @rule(name=st.sampled_from(TOPICS), count=st.integers(1, PARTITION_COUNT_MAX))
    def create_topic(self, name: str, count: int) -> None:
        configs = {"retention.ms": str(count * 1000)}
        if name in self.topics:
            with pytest.raises(TopicAlreadyExists):
                run(self.store.create_topic(name, count, configs, self.now_ms))
            return
        record = run(self.store.create_topic(name, count, configs, self.now_ms))
        assert record == TopicRecord(name, count, configs, self.now_ms)
        self.topics[name] = record
        for partition in range(count):
            tp = TopicPartition(name, partition)
            self.partitions[tp] = PartitionModel(leader_epoch=self.retired_epochs.get(tp, 0))

    @rule(name=st.sampled_from(TOPICS))
    def delete_topic(self, name: str) -> None:
        if name not in self.topics:
            with pytest.raises(UnknownTopicOrPartition):
                run(self.store.delete_topic(name))
            return
        run(self.store.delete_topic(name))
        del self.topics[name]
        for tp in [tp for tp in self.partitions if tp.topic == name]:
            # a namesake created later continues above this epoch: stale leases never match
            self.retired_epochs[tp] = self.partitions.pop(tp).leader_epoch + 1
            for group_offsets in self.offsets.values():
                group_offsets.pop(tp, None)

    # time and leases

    @rule(
        delta_ms=st.one_of(
            st.sampled_from([1, TTL_MS - 1, TTL_MS, TTL_MS + 1]), st.integers(0, 2 * TTL_MS)
        )
    )
    def advance_time(self, delta_ms: int) -> None:
        self.now_ms += delta_ms

    @rule(data=st.data(), delta_ms=st.sampled_from([-1, 0]))
    def advance_to_lease_expiry(self, data: st.DataObject, delta_ms: int) -> None:
        """Jump to just before, or exactly at, a partition's lease expiry."""
        model = self.partitions.get(self.draw_tp(data))
        if model is not None:
            self.now_ms = max(self.now_ms, model.lease_expires_ms + delta_ms)

    @rule(data=st.data(), agent=st.sampled_from(AGENTS))
    def acquire_lease(self, data: st.DataObject, agent: str) -> None:
        tp = self.draw_tp(data)
        model = self.partitions.get(tp)
        if model is None:
            with pytest.raises(UnknownTopicOrPartition):
                run(self.store.acquire_lease(tp, agent, TTL_MS))
            return
        lease = run(self.store.acquire_lease(tp, agent, TTL_MS))
        if model.leader_agent not in (None, agent) and model.lease_expires_ms > self.now_ms:
            event("lease: blocked by another holder")
            assert lease is None
            return
        if model.leader_agent != agent:
            event("lease: taken, epoch bumped")
            model.leader_epoch += 1
        else:
            event("lease: renewed")
        model.leader_agent = agent
        model.lease_expires_ms = self.now_ms + TTL_MS
        assert lease is not None
        assert (lease.tp, lease.agent, lease.epoch) == (tp, agent, model.leader_epoch)
        assert lease.expires_ms == model.lease_expires_ms

    @rule(data=st.data(), agent=st.sampled_from(AGENTS))
    def release_lease(self, data: st.DataObject, agent: str) -> None:
        tp = self.draw_tp(data)
        model = self.partitions.get(tp)
        if model is None:
            with pytest.raises(UnknownTopicOrPartition):
                run(self.store.release_lease(tp, agent))
            return
        run(self.store.release_lease(tp, agent))
        if model.leader_agent == agent:
            model.lease_expires_ms = 0

    # flushes

    @rule(data=st.data())
    def commit_flush(self, data: st.DataObject) -> None:
        count = data.draw(st.integers(0, 4))
        tps = sorted({self.draw_tp(data) for _ in range(count)})
        key = f"obj-{len(self.flushes):05d}"
        epochs = {tp: self._claimed_epoch(tp, data) for tp in tps}
        rows = [row for tp in tps for row in self._new_rows(tp, key, epochs[tp], data)]
        commit = FlushCommit(ObjectRecord(key, "agent-x", "org", 100, self.now_ms), rows, epochs)
        outcome = run(self.store.commit_flush(commit))
        assert outcome == self._apply_flush(commit)
        event(f"flush: {bool(outcome.committed)=} {bool(outcome.fenced)=}")
        self.flushes[key] = (commit, outcome)

    def _claimed_epoch(self, tp: TopicPartition, data: st.DataObject) -> int:
        model = self.partitions.get(tp)
        current = model.leader_epoch if model is not None else 1
        return current + data.draw(st.sampled_from([0, 0, 0, -1, 1]))

    def _new_rows(
        self, tp: TopicPartition, key: str, epoch: int, data: st.DataObject
    ) -> list[SegmentRecord]:
        model = self.partitions.get(tp)
        base_offset = model.durable_end_offset if model is not None else 0
        rows = []
        for record_count in data.draw(st.lists(st.integers(1, 5), max_size=3)):
            last_offset = base_offset + record_count - 1
            position = len(rows) * 100
            rows.append(
                SegmentRecord(
                    tp.topic, tp.partition, base_offset, last_offset, epoch, 7, key, position, 100
                )
            )
            base_offset = last_offset + 1
        return rows

    def _apply_flush(self, commit: FlushCommit) -> FlushOutcome:
        committed, fenced = set(), set()
        for tp, epoch in commit.epochs.items():
            model = self.partitions.get(tp)
            if model is None or model.leader_epoch != epoch:
                fenced.add(tp)
                continue
            committed.add(tp)
            rows = [row for row in commit.segments if row.tp == tp]
            model.segments.extend(row for row in rows if row.last_offset >= model.log_start_offset)
            if rows:
                model.durable_end_offset = rows[-1].last_offset + 1
        return FlushOutcome(frozenset(committed), frozenset(fenced))

    @rule(data=st.data())
    def replay_flush(self, data: st.DataObject) -> None:
        if not self.flushes:
            return
        key = data.draw(st.sampled_from(sorted(self.flushes)))
        commit, outcome = self.flushes[key]
        assert run(self.store.commit_flush(commit)) == outcome

    # log start

    @rule(data=st.data(), offset=st.integers(0, 40))
    def set_log_start_offset(self, data: st.DataObject, offset: int) -> None:
        tp = self.draw_tp(data)
        model = self.partitions.get(tp)
        if model is None:
            with pytest.raises(UnknownTopicOrPartition):
                run(self.store.set_log_start_offset(tp, offset))
            return
        model.log_start_offset = max(model.log_start_offset, offset)
        # rows wholly below the log start go with it
        kept = [row for row in model.segments if row.last_offset >= model.log_start_offset]
        model.segments = kept
        assert run(self.store.set_log_start_offset(tp, offset)) == model.log_start_offset

    # committed group offsets

    @rule(data=st.data(), group=st.sampled_from(GROUPS), count=st.integers(0, 3))
    def commit_offsets(self, data: st.DataObject, group: str, count: int) -> None:
        batch = {
            self.draw_tp(data): CommittedOffset(
                offset=data.draw(st.integers(-1, 50)),
                leader_epoch=data.draw(st.integers(-1, 3)),
                metadata=data.draw(st.none() | st.text(max_size=8)),
                commit_ms=self.now_ms,
            )
            for _ in range(count)
        }
        if any(tp not in self.partitions for tp in batch):
            event("offsets: commit refused (unknown partition)")
            with pytest.raises(UnknownTopicOrPartition):
                run(self.store.commit_offsets(group, batch))
            return
        run(self.store.commit_offsets(group, batch))
        self.offsets[group].update(batch)

    @rule(data=st.data(), group=st.sampled_from(GROUPS), count=st.integers(0, 3))
    def fetch_some_offsets(self, data: st.DataObject, group: str, count: int) -> None:
        asked = [self.draw_tp(data) for _ in range(count)]
        expected = {tp: self.offsets[group][tp] for tp in asked if tp in self.offsets[group]}
        assert run(self.store.fetch_offsets(group, asked)) == expected

    @rule(data=st.data(), group=st.sampled_from(GROUPS), count=st.integers(0, 3))
    def delete_offsets(self, data: st.DataObject, group: str, count: int) -> None:
        doomed = [self.draw_tp(data) for _ in range(count)]
        run(self.store.delete_offsets(group, doomed))
        for tp in doomed:
            self.offsets[group].pop(tp, None)

    @rule(group=st.sampled_from(GROUPS))
    def delete_group_offsets(self, group: str) -> None:
        run(self.store.delete_group_offsets(group))
        self.offsets[group].clear()

    @rule(group=st.sampled_from(GROUPS), age_ms=st.integers(0, 2 * TTL_MS))
    def expire_offsets(self, group: str, age_ms: int) -> None:
        before_ms = self.now_ms - age_ms
        stale = [tp for tp, got in self.offsets[group].items() if got.commit_ms < before_ms]
        assert run(self.store.expire_offsets(group, before_ms)) == len(stale)
        event(f"offsets: expired {min(len(stale), 2)}+")
        for tp in stale:
            del self.offsets[group][tp]

    # the comparison

    @invariant()
    def store_matches_model(self) -> None:
        tps = sorted(self.partitions)
        view = run(read_view(self.store, tps))
        assert view.topics == [self.topics[name] for name in sorted(self.topics)]
        for tp in tps:
            model = self.partitions[tp]
            assert view.partitions[tp] == model.record(tp, self.now_ms), tp
            assert view.segments[tp] == model.segments, tp
        assert [obj.key for obj in view.objects] == sorted(self.flushes)
        assert view.offsets == self.offsets
        assert view.offset_groups == sorted(group for group in GROUPS if self.offsets[group])


MetadataMachine.TestCase.settings = settings(
    max_examples=examples(100),
    deadline=None,
    stateful_step_count=50,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMetadataModel = MetadataMachine.TestCase


# ---------------------------------------------------------------- simulated faults

TP = TopicPartition("orders", 0)


def one_flush(key: str, epoch: int) -> FlushCommit:
    row = SegmentRecord("orders", 0, 0, 4, epoch, 7, key, 0, 100)
    return FlushCommit(ObjectRecord(key, "agent-x", "org", 100, 0), [row], {TP: epoch})


def test_unknown_outcome_commit_happened_and_retry_answers_the_same() -> None:
    store = SimMetadataStore(SeededRng(7), MetadataFaults(unknown_outcome_rate=1.0))
    with pytest.raises(MetadataUnknownOutcome):
        run(store.create_topic("orders", 1, {}, 0))
    assert run(store.get_topic("orders")) is not None  # reads are not subject to it
    with pytest.raises(MetadataUnknownOutcome):
        run(store.acquire_lease(TP, "agent-x", TTL_MS))
    assert run(store.get_partition(TP)).leader_epoch == 1
    commit = one_flush("obj-1", 1)
    with pytest.raises(MetadataUnknownOutcome):
        run(store.commit_flush(commit))
    assert run(store.get_partition(TP)).durable_end_offset == 5
    with pytest.raises(MetadataUnknownOutcome):  # the retry happens again, still unknown
        run(store.commit_flush(commit))
    store.faults = MetadataFaults()
    assert run(store.commit_flush(commit)) == FlushOutcome(committed=frozenset({TP}))
    assert run(store.list_segments(TP)) == list(commit.segments)
    store.faults = MetadataFaults(unknown_outcome_rate=1.0)
    offset = CommittedOffset(5, 1, None, 0)
    with pytest.raises(MetadataUnknownOutcome):
        run(store.commit_offsets("billing", {TP: offset}))
    assert run(store.fetch_offsets("billing")) == {TP: offset}
    run(store.close())


def test_unavailable_changes_nothing() -> None:
    store = SimMetadataStore(SeededRng(7), MetadataFaults(unavailable_rate=1.0))
    with pytest.raises(MetadataUnavailable):
        run(store.create_topic("orders", 1, {}, 0))
    with pytest.raises(MetadataUnavailable):
        run(store.list_topics())
    store.faults = MetadataFaults()
    assert run(store.list_topics()) == []
    run(store.create_topic("orders", 1, {}, 0))
    store.faults = MetadataFaults(unavailable_rate=1.0)
    with pytest.raises(MetadataUnavailable):
        run(store.acquire_lease(TP, "agent-x", TTL_MS))
    with pytest.raises(MetadataUnavailable):
        run(store.commit_flush(one_flush("obj-1", 0)))
    with pytest.raises(MetadataUnavailable):
        run(store.commit_offsets("billing", {TP: CommittedOffset(5, 1, None, 0)}))
    with pytest.raises(MetadataUnavailable):
        run(store.fetch_offsets("billing"))
    store.faults = MetadataFaults()
    assert run(store.get_partition(TP)).leader_epoch == 0
    assert run(store.list_objects()) == []
    assert run(store.list_offset_groups()) == []
    run(store.close())


class DrawLog(SeededRng):
    """A SeededRng that notes the probability of every `chance` draw."""

    def __init__(self) -> None:
        super().__init__(0)
        self.draws: list[float] = []

    def chance(self, probability: float) -> bool:
        self.draws.append(probability)
        return super().chance(probability)


UNAVAILABLE, UNKNOWN = 0.001, 0.002  # told apart in the log; this seed never fires them


def test_one_draw_before_every_call_and_one_after_every_write_that_succeeded() -> None:
    """The draws a seed's faults come from: what a seed means depends on this order."""
    rng = DrawLog()
    store = SimMetadataStore(rng, MetadataFaults(UNAVAILABLE, UNKNOWN))
    run(store.create_topic("orders", 1, {}, 0))
    assert rng.draws == [UNAVAILABLE, UNKNOWN]
    rng.draws.clear()
    run(store.get_partition(TP))
    with pytest.raises(UnknownTopicOrPartition):
        run(store.acquire_lease(TopicPartition("nope", 0), "agent-x", TTL_MS))
    run(store.commit_offsets("billing", {}))  # nothing to write is still a write
    run(store.commit_flush(one_flush("obj-1", 0)))
    assert rng.draws == [UNAVAILABLE, UNAVAILABLE, UNAVAILABLE, UNKNOWN, UNAVAILABLE, UNKNOWN]
    rng.draws.clear()
    run(store.unfaulted.list_topics())
    run(store.close())
    assert rng.draws == []


def fault_trace(seed: int) -> list[str]:
    store = SimMetadataStore(SeededRng(seed), MetadataFaults(0.3, 0.3))
    trace = []
    for index in range(40):
        try:
            run(store.set_log_start_offset(TP, index)) if index else run(
                store.create_topic("orders", 1, {}, 0)
            )
            trace.append("ok")
        except (MetadataUnavailable, MetadataUnknownOutcome, UnknownTopicOrPartition) as exc:
            trace.append(type(exc).__name__)
    run(store.close())
    return trace


def test_faults_are_decided_by_the_seed() -> None:
    assert fault_trace(11) == fault_trace(11)
    assert fault_trace(11) != fault_trace(12)
    assert {"ok", "MetadataUnavailable", "MetadataUnknownOutcome"} <= set(fault_trace(11))
