"""Conformance of every MetadataStore adapter (SQLite file, simulator, PostgreSQL) to the port."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from sim.metadata import SimMetadataStore
from streamhouse.errors import (
    ErrorCode,
    InvalidPartitions,
    MetadataUnavailable,
    MetadataUnknownOutcome,
    StreamHouseError,
    TopicAlreadyExists,
    UnknownTopicOrPartition,
)
from streamhouse.io.sql.migrations import alembic_config
from streamhouse.io.sql.store import SqlMetadataStore, open_sql_metadata
from streamhouse.io.sql.transactions import run_inline
from streamhouse.log.producer_state import ProducerBatch, SequencedBatch
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import CommittedOffset
from streamhouse.ports.leases import FlushCommit, FlushOutcome, ObjectRecord, SegmentRecord
from streamhouse.ports.metadata import MetadataStore

T = TypeVar("T")

TTL_MS = 10_000
T0_MS = 1_000_000
TP0 = TopicPartition("orders", 0)
TP1 = TopicPartition("orders", 1)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(params=["sqlite", "sim", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    opened = _open_store(request, tmp_path)
    try:
        yield opened
    finally:
        run(opened.close())


def _open_store(request: pytest.FixtureRequest, tmp_path: Path) -> MetadataStore:
    if request.param == "sqlite":
        return open_sql_metadata(f"sqlite:///{tmp_path / 'metadata.db'}")
    if request.param == "sim":
        return SimMetadataStore()
    return open_sql_metadata(request.getfixturevalue("postgres_database_url"))


def segment(
    tp: TopicPartition, base_offset: int, last_offset: int, key: str, epoch: int = 1
) -> SegmentRecord:
    return SegmentRecord(
        topic=tp.topic,
        partition=tp.partition,
        base_offset=base_offset,
        last_offset=last_offset,
        leader_epoch=epoch,
        max_timestamp_ms=T0_MS + last_offset,
        object_key=key,
        position=base_offset * 10,
        length=(last_offset - base_offset + 1) * 10,
    )


def flush(
    key: str,
    epochs: dict[TopicPartition, int],
    ranges: list[tuple[TopicPartition, int, int]],
) -> FlushCommit:
    obj = ObjectRecord(key=key, agent="agent-a", org="org-1", size_bytes=123, created_ms=T0_MS)
    rows = [segment(tp, base, last, key, epochs.get(tp, 0)) for tp, base, last in ranges]
    return FlushCommit(obj=obj, segments=rows, epochs=epochs)


def orders_led_by_a(store: MetadataStore) -> None:
    """Topic `orders` (2 partitions), both leased by agent-a at epoch 1."""
    run(store.create_topic("orders", 2, {}, T0_MS))
    for tp in (TP0, TP1):
        assert run(store.acquire_lease(tp, "agent-a", T0_MS, TTL_MS)) is not None


# ---------------------------------------------------------------- topics


def test_create_topic_returns_record_and_fresh_partitions(store: MetadataStore) -> None:
    record = run(store.create_topic("orders", 3, {"cleanup.policy": "compact"}, T0_MS))
    assert (record.name, record.partition_count, record.created_ms) == ("orders", 3, T0_MS)
    assert dict(record.configs) == {"cleanup.policy": "compact"}
    assert run(store.get_topic("orders")) == record
    for index in range(3):
        partition = run(store.get_partition(TopicPartition("orders", index)))
        assert partition.tp == TopicPartition("orders", index)
        assert partition.leader_agent is None
        assert partition.leader_epoch == 0
        assert partition.durable_end_offset == 0
        assert partition.log_start_offset == 0


def test_create_duplicate_topic_raises_topic_already_exists(store: MetadataStore) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    with pytest.raises(TopicAlreadyExists) as raised:
        run(store.create_topic("orders", 5, {"a": "b"}, T0_MS + 1))
    assert raised.value.code == ErrorCode.TOPIC_ALREADY_EXISTS == 36
    topic = run(store.get_topic("orders"))
    assert topic is not None and topic.partition_count == 1


def test_create_topic_without_partitions_is_rejected(store: MetadataStore) -> None:
    with pytest.raises(StreamHouseError) as raised:
        run(store.create_topic("empty", 0, {}, T0_MS))
    assert raised.value.code == ErrorCode.INVALID_PARTITIONS
    assert run(store.get_topic("empty")) is None


def test_get_missing_topic_is_none(store: MetadataStore) -> None:
    assert run(store.get_topic("nope")) is None


def test_list_topics_sorted_by_name(store: MetadataStore) -> None:
    for name in ("zeta", "alpha", "Mid", "beta"):
        run(store.create_topic(name, 1, {}, T0_MS))
    assert [topic.name for topic in run(store.list_topics())] == sorted(
        ["zeta", "alpha", "Mid", "beta"]
    )


def test_delete_topic_removes_partitions_and_segments(store: MetadataStore) -> None:
    orders_led_by_a(store)
    run(store.create_topic("other", 1, {}, T0_MS))
    run(store.commit_flush(flush("obj-1", {TP0: 1}, [(TP0, 0, 9)])))
    run(store.delete_topic("orders"))
    assert run(store.get_topic("orders")) is None
    assert [topic.name for topic in run(store.list_topics())] == ["other"]
    with pytest.raises(UnknownTopicOrPartition):
        run(store.get_partition(TP0))
    # The object stays known, for the reconciler; a topic of the same name starts afresh.
    assert [obj.key for obj in run(store.list_objects())] == ["obj-1"]
    run(store.create_topic("orders", 1, {}, T0_MS))
    assert run(store.list_segments(TP0)) == []
    assert run(store.get_partition(TP0)).durable_end_offset == 0


def test_a_recreated_topic_never_reuses_an_epoch(store: MetadataStore) -> None:
    orders_led_by_a(store)  # agent-a holds both partitions at epoch 1
    run(store.delete_topic("orders"))
    run(store.create_topic("orders", 3, {}, T0_MS))
    run(store.add_partitions("orders", 4))
    lease = run(store.acquire_lease(TP0, "agent-b", T0_MS, TTL_MS))
    assert lease is not None and lease.epoch > 1
    assert run(store.get_partition(TP1)).leader_epoch >= 2
    assert run(store.get_partition(TopicPartition("orders", 3))).leader_epoch == 0
    # agent-a still believes in epoch 1 of the old topic: its flush must be fenced.
    outcome = run(store.commit_flush(flush("obj-stale", {TP0: 1}, [(TP0, 0, 4)])))
    assert outcome.fenced == frozenset({TP0}) and not outcome.committed
    assert run(store.list_segments(TP0)) == []


def test_delete_unknown_topic_raises(store: MetadataStore) -> None:
    with pytest.raises(UnknownTopicOrPartition) as raised:
        run(store.delete_topic("nope"))
    assert raised.value.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION == 3


def test_add_partitions_creates_fresh_partitions_and_keeps_old(store: MetadataStore) -> None:
    orders_led_by_a(store)
    run(store.commit_flush(flush("obj-1", {TP0: 1}, [(TP0, 0, 9)])))
    record = run(store.add_partitions("orders", 5))
    assert (record.name, record.partition_count, record.created_ms) == ("orders", 5, T0_MS)
    assert run(store.get_topic("orders")) == record
    assert run(store.get_partition(TP0)).durable_end_offset == 10
    assert run(store.get_partition(TP0)).leader_epoch == 1
    for index in (2, 3, 4):
        partition = run(store.get_partition(TopicPartition("orders", index)))
        assert (partition.leader_agent, partition.leader_epoch) == (None, 0)
        assert (partition.durable_end_offset, partition.log_start_offset) == (0, 0)
    with pytest.raises(UnknownTopicOrPartition):
        run(store.get_partition(TopicPartition("orders", 5)))


@pytest.mark.parametrize("new_total", [0, 1, 2])
def test_add_partitions_must_grow(store: MetadataStore, new_total: int) -> None:
    run(store.create_topic("orders", 2, {}, T0_MS))
    with pytest.raises(InvalidPartitions) as raised:
        run(store.add_partitions("orders", new_total))
    assert raised.value.code == ErrorCode.INVALID_PARTITIONS == 37
    topic = run(store.get_topic("orders"))
    assert topic is not None and topic.partition_count == 2


def test_add_partitions_to_unknown_topic_raises(store: MetadataStore) -> None:
    with pytest.raises(UnknownTopicOrPartition):
        run(store.add_partitions("nope", 3))


def test_set_topic_configs_incremental_sets_and_deletes(store: MetadataStore) -> None:
    run(store.create_topic("orders", 2, {"a": "1", "b": "2"}, T0_MS))
    record = run(store.set_topic_configs("orders", {"a": None, "c": "3"}, incremental=True))
    assert dict(record.configs) == {"b": "2", "c": "3"}
    assert record.partition_count == 2
    assert run(store.get_topic("orders")) == record
    again = run(store.set_topic_configs("orders", {"missing": None}, incremental=True))
    assert dict(again.configs) == {"b": "2", "c": "3"}


def test_set_topic_configs_replacing_drops_other_keys(store: MetadataStore) -> None:
    run(store.create_topic("orders", 1, {"a": "1", "b": "2"}, T0_MS))
    record = run(store.set_topic_configs("orders", {"c": "3", "d": None}, incremental=False))
    assert dict(record.configs) == {"c": "3"}
    topic = run(store.get_topic("orders"))
    assert topic is not None and dict(topic.configs) == {"c": "3"}


def test_set_configs_of_unknown_topic_raises(store: MetadataStore) -> None:
    with pytest.raises(UnknownTopicOrPartition):
        run(store.set_topic_configs("nope", {"a": "1"}, incremental=True))


# ---------------------------------------------------------------- leases


def test_first_acquire_gives_epoch_one(store: MetadataStore) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    lease = run(store.acquire_lease(TP0, "agent-a", T0_MS, TTL_MS))
    assert lease is not None
    assert (lease.tp, lease.agent, lease.epoch, lease.expires_ms) == (
        TP0,
        "agent-a",
        1,
        T0_MS + TTL_MS,
    )
    partition = run(store.get_partition(TP0))
    assert (partition.leader_agent, partition.leader_epoch) == ("agent-a", 1)
    assert partition.lease_expires_ms == T0_MS + TTL_MS


def test_renewal_keeps_epoch_and_extends(store: MetadataStore) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    run(store.acquire_lease(TP0, "agent-a", T0_MS, TTL_MS))
    renewed = run(store.acquire_lease(TP0, "agent-a", T0_MS + 5_000, TTL_MS))
    assert renewed is not None
    assert (renewed.epoch, renewed.expires_ms) == (1, T0_MS + 5_000 + TTL_MS)


def test_other_agent_blocked_while_lease_unexpired(store: MetadataStore) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    run(store.acquire_lease(TP0, "agent-a", T0_MS, TTL_MS))
    assert run(store.acquire_lease(TP0, "agent-b", T0_MS + TTL_MS - 1, TTL_MS)) is None
    partition = run(store.get_partition(TP0))
    assert (partition.leader_agent, partition.leader_epoch) == ("agent-a", 1)


def test_other_agent_takes_expired_lease_with_new_epoch(store: MetadataStore) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    run(store.acquire_lease(TP0, "agent-a", T0_MS, TTL_MS))
    taken = run(store.acquire_lease(TP0, "agent-b", T0_MS + TTL_MS, TTL_MS))
    assert taken is not None and (taken.agent, taken.epoch) == ("agent-b", 2)
    # The old holder is now the other agent, blocked until b's lease expires.
    assert run(store.acquire_lease(TP0, "agent-a", T0_MS + TTL_MS + 1, TTL_MS)) is None
    back = run(store.acquire_lease(TP0, "agent-a", T0_MS + 2 * TTL_MS, TTL_MS))
    assert back is not None and (back.agent, back.epoch) == ("agent-a", 3)


def test_holder_renews_after_expiry_if_nobody_took_it(store: MetadataStore) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    run(store.acquire_lease(TP0, "agent-a", T0_MS, TTL_MS))
    late = run(store.acquire_lease(TP0, "agent-a", T0_MS + 10 * TTL_MS, TTL_MS))
    assert late is not None
    assert (late.epoch, late.expires_ms) == (1, T0_MS + 11 * TTL_MS)


def test_release_lets_another_agent_take_at_once(store: MetadataStore) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    run(store.acquire_lease(TP0, "agent-a", T0_MS, TTL_MS))
    run(store.release_lease(TP0, "agent-a"))
    partition = run(store.get_partition(TP0))
    assert partition.leader_epoch == 1
    assert partition.lease_expires_ms <= T0_MS
    taken = run(store.acquire_lease(TP0, "agent-b", T0_MS + 1, TTL_MS))
    assert taken is not None and taken.epoch == 2


def test_release_then_same_holder_keeps_epoch(store: MetadataStore) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    run(store.acquire_lease(TP0, "agent-a", T0_MS, TTL_MS))
    run(store.release_lease(TP0, "agent-a"))
    again = run(store.acquire_lease(TP0, "agent-a", T0_MS + 1, TTL_MS))
    assert again is not None and again.epoch == 1


def test_release_by_non_holder_changes_nothing(store: MetadataStore) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    run(store.acquire_lease(TP0, "agent-a", T0_MS, TTL_MS))
    before = run(store.get_partition(TP0))
    run(store.release_lease(TP0, "agent-b"))
    assert run(store.get_partition(TP0)) == before
    assert run(store.acquire_lease(TP0, "agent-b", T0_MS + 1, TTL_MS)) is None


# ---------------------------------------------------------------- flushes


def test_commit_flush_commits_rows_and_moves_durable_offset(store: MetadataStore) -> None:
    orders_led_by_a(store)
    commit = flush("obj-1", {TP0: 1, TP1: 1}, [(TP0, 0, 9), (TP0, 10, 14), (TP1, 0, 0)])
    outcome = run(store.commit_flush(commit))
    assert outcome == FlushOutcome(committed=frozenset({TP0, TP1}), fenced=frozenset())
    assert run(store.get_partition(TP0)).durable_end_offset == 15
    assert run(store.get_partition(TP1)).durable_end_offset == 1
    assert run(store.list_segments(TP0)) == [
        segment(TP0, 0, 9, "obj-1"),
        segment(TP0, 10, 14, "obj-1"),
    ]
    assert run(store.list_segments(TP1)) == [segment(TP1, 0, 0, "obj-1")]


def test_commit_flush_fences_stale_and_missing_partitions(store: MetadataStore) -> None:
    orders_led_by_a(store)
    run(store.acquire_lease(TP1, "agent-b", T0_MS + TTL_MS, TTL_MS))  # TP1 now at epoch 2
    gone = TopicPartition("gone", 0)
    commit = flush("obj-1", {TP0: 1, TP1: 1, gone: 1}, [(TP0, 0, 4), (TP1, 0, 4), (gone, 0, 4)])
    outcome = run(store.commit_flush(commit))
    assert outcome == FlushOutcome(committed=frozenset({TP0}), fenced=frozenset({TP1, gone}))
    assert run(store.get_partition(TP1)).durable_end_offset == 0
    assert run(store.list_segments(TP1)) == []
    assert run(store.get_partition(TP0)).durable_end_offset == 5


def test_commit_flush_all_fenced_still_records_object(store: MetadataStore) -> None:
    orders_led_by_a(store)
    outcome = run(store.commit_flush(flush("obj-1", {TP0: 7}, [(TP0, 0, 4)])))
    assert outcome == FlushOutcome(committed=frozenset(), fenced=frozenset({TP0}))
    assert [obj.key for obj in run(store.list_objects())] == ["obj-1"]
    assert run(store.list_segments(TP0)) == []


def test_commit_flush_replay_returns_first_outcome(store: MetadataStore) -> None:
    orders_led_by_a(store)
    commit = flush("obj-1", {TP0: 1, TP1: 9}, [(TP0, 0, 4), (TP1, 0, 4)])
    first = run(store.commit_flush(commit))
    # The epochs move on and the partition is deleted; a replay still answers the same.
    run(store.acquire_lease(TP0, "agent-b", T0_MS + TTL_MS, TTL_MS))
    assert run(store.commit_flush(commit)) == first
    run(store.delete_topic("orders"))
    assert run(store.commit_flush(commit)) == first
    assert [obj.key for obj in run(store.list_objects())] == ["obj-1"]


def test_replay_does_not_duplicate_rows(store: MetadataStore) -> None:
    orders_led_by_a(store)
    commit = flush("obj-1", {TP0: 1}, [(TP0, 0, 4)])
    run(store.commit_flush(commit))
    run(store.commit_flush(commit))
    assert run(store.list_segments(TP0)) == [segment(TP0, 0, 4, "obj-1")]
    assert run(store.get_partition(TP0)).durable_end_offset == 5


def test_partition_without_rows_is_committed_unchanged(store: MetadataStore) -> None:
    orders_led_by_a(store)
    outcome = run(store.commit_flush(flush("obj-1", {TP0: 1, TP1: 1}, [(TP0, 0, 4)])))
    assert outcome.committed == frozenset({TP0, TP1})
    assert run(store.get_partition(TP1)).durable_end_offset == 0


def test_consecutive_flushes_append(store: MetadataStore) -> None:
    orders_led_by_a(store)
    run(store.commit_flush(flush("obj-1", {TP0: 1}, [(TP0, 0, 4)])))
    run(store.commit_flush(flush("obj-2", {TP0: 1}, [(TP0, 5, 7)])))
    assert run(store.get_partition(TP0)).durable_end_offset == 8
    assert [row.object_key for row in run(store.list_segments(TP0))] == ["obj-1", "obj-2"]


@pytest.mark.parametrize(
    ("ranges", "kind"),
    [
        ([(TP0, 6, 9)], "gap"),
        ([(TP0, 3, 9)], "overlap"),
        ([(TP0, 5, 6), (TP0, 8, 9)], "gap"),
    ],
)
def test_non_contiguous_flush_is_an_engine_bug_and_rolls_back(
    store: MetadataStore, ranges: list[tuple[TopicPartition, int, int]], kind: str
) -> None:
    orders_led_by_a(store)
    run(store.commit_flush(flush("obj-1", {TP0: 1}, [(TP0, 0, 4)])))
    with pytest.raises(AssertionError, match=kind):
        run(store.commit_flush(flush("obj-2", {TP0: 1, TP1: 1}, [(TP1, 0, 0), *ranges])))
    assert [obj.key for obj in run(store.list_objects())] == ["obj-1"]
    assert run(store.get_partition(TP0)).durable_end_offset == 5
    assert run(store.get_partition(TP1)).durable_end_offset == 0
    assert run(store.list_segments(TP1)) == []


def test_rows_for_a_partition_without_epoch_are_an_engine_bug(store: MetadataStore) -> None:
    orders_led_by_a(store)
    with pytest.raises(AssertionError, match="no lease epoch"):
        run(store.commit_flush(flush("obj-1", {TP0: 1}, [(TP1, 0, 4)])))
    assert run(store.list_objects()) == []


def test_list_segments_filters_by_last_offset_in_order(store: MetadataStore) -> None:
    orders_led_by_a(store)
    run(store.commit_flush(flush("obj-2", {TP0: 1}, [(TP0, 0, 9), (TP0, 10, 19)])))
    run(store.commit_flush(flush("obj-1", {TP0: 1}, [(TP0, 20, 29)])))
    bases = [row.base_offset for row in run(store.list_segments(TP0))]
    assert bases == [0, 10, 20]
    assert [row.base_offset for row in run(store.list_segments(TP0, from_offset=9))] == bases
    assert [row.base_offset for row in run(store.list_segments(TP0, from_offset=10))] == [10, 20]
    assert [row.base_offset for row in run(store.list_segments(TP0, from_offset=29))] == [20]
    assert run(store.list_segments(TP0, from_offset=30)) == []
    assert [row.base_offset for row in run(store.list_segments(TP0, 5, limit=2))] == [0, 10]


def test_list_objects_sorted_by_key(store: MetadataStore) -> None:
    orders_led_by_a(store)
    run(store.commit_flush(flush("b", {TP0: 1}, [(TP0, 0, 0)])))
    run(store.commit_flush(flush("a", {TP0: 1}, [(TP0, 1, 1)])))
    run(store.commit_flush(flush("c", {TP0: 99}, [])))
    objects = run(store.list_objects())
    assert [obj.key for obj in objects] == ["a", "b", "c"]
    assert objects[0] == ObjectRecord("a", "agent-a", "org-1", 123, T0_MS)


# ---------------------------------------------------------------- log start


def test_set_log_start_offset_never_moves_back(store: MetadataStore) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    assert run(store.set_log_start_offset(TP0, 10)) == 10
    assert run(store.set_log_start_offset(TP0, 4)) == 10
    assert run(store.set_log_start_offset(TP0, 10)) == 10
    assert run(store.set_log_start_offset(TP0, 11)) == 11
    assert run(store.get_partition(TP0)).log_start_offset == 11


# ---------------------------------------------------------------- committed group offsets


def committed(offset: int, commit_ms: int = T0_MS, metadata: str | None = None) -> CommittedOffset:
    return CommittedOffset(offset=offset, leader_epoch=3, metadata=metadata, commit_ms=commit_ms)


def test_commit_and_fetch_offsets(store: MetadataStore) -> None:
    run(store.create_topic("orders", 2, {}, T0_MS))
    offsets = {TP0: committed(5, metadata="host-1"), TP1: committed(9)}
    run(store.commit_offsets("billing", offsets))
    assert run(store.fetch_offsets("billing")) == offsets
    assert run(store.fetch_offsets("billing", [TP1])) == {TP1: committed(9)}
    assert run(store.fetch_offsets("billing", [])) == {}
    assert run(store.fetch_offsets("other-group")) == {}


def test_commit_offsets_replaces_and_keeps_unnamed_partitions(store: MetadataStore) -> None:
    run(store.create_topic("orders", 2, {}, T0_MS))
    run(store.commit_offsets("billing", {TP0: committed(5), TP1: committed(9)}))
    newer = CommittedOffset(offset=2, leader_epoch=-1, metadata="", commit_ms=T0_MS + 7)
    run(store.commit_offsets("billing", {TP0: newer}))  # offsets may move back (a reset)
    assert run(store.fetch_offsets("billing")) == {TP0: newer, TP1: committed(9)}


def test_unasked_and_uncommitted_partitions_are_absent(store: MetadataStore) -> None:
    run(store.create_topic("orders", 2, {}, T0_MS))
    run(store.commit_offsets("billing", {TP0: committed(5)}))
    missing = TopicPartition("nope", 0)
    assert run(store.fetch_offsets("billing", [TP1, missing])) == {}
    assert run(store.fetch_offsets("billing", [TP0, TP1])) == {TP0: committed(5)}


def test_commit_offsets_for_an_unknown_partition_commits_nothing(store: MetadataStore) -> None:
    run(store.create_topic("orders", 2, {}, T0_MS))
    batch = {TP0: committed(5), TopicPartition("orders", 2): committed(1)}
    with pytest.raises(UnknownTopicOrPartition) as raised:
        run(store.commit_offsets("billing", batch))
    assert raised.value.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert run(store.fetch_offsets("billing")) == {}
    run(store.commit_offsets("billing", {}))  # nothing to do is fine


def test_groups_are_independent_and_listed_sorted(store: MetadataStore) -> None:
    run(store.create_topic("orders", 2, {}, T0_MS))
    assert run(store.list_offset_groups()) == []
    run(store.commit_offsets("zeta", {TP0: committed(1)}))
    run(store.commit_offsets("alpha", {TP0: committed(2), TP1: committed(3)}))
    assert run(store.list_offset_groups()) == ["alpha", "zeta"]
    assert run(store.fetch_offsets("zeta")) == {TP0: committed(1)}
    run(store.delete_group_offsets("alpha"))
    run(store.delete_group_offsets("never-there"))
    assert run(store.list_offset_groups()) == ["zeta"]
    assert run(store.fetch_offsets("alpha")) == {}
    assert run(store.fetch_offsets("zeta")) == {TP0: committed(1)}


def test_delete_offsets_of_some_partitions(store: MetadataStore) -> None:
    run(store.create_topic("orders", 2, {}, T0_MS))
    run(store.commit_offsets("billing", {TP0: committed(5), TP1: committed(9)}))
    run(store.commit_offsets("audit", {TP0: committed(4)}))
    run(store.delete_offsets("billing", [TP0, TopicPartition("nope", 3)]))
    assert run(store.fetch_offsets("billing")) == {TP1: committed(9)}
    assert run(store.fetch_offsets("audit")) == {TP0: committed(4)}
    run(store.delete_offsets("billing", []))
    run(store.delete_offsets("billing", [TP1]))
    assert run(store.list_offset_groups()) == ["audit"]


def test_expire_offsets_removes_only_older_commits_of_the_group(store: MetadataStore) -> None:
    run(store.create_topic("orders", 2, {}, T0_MS))
    run(store.commit_offsets("billing", {TP0: committed(5, T0_MS), TP1: committed(9, T0_MS + 10)}))
    run(store.commit_offsets("audit", {TP0: committed(4, T0_MS)}))
    assert run(store.expire_offsets("billing", T0_MS)) == 0  # strictly before
    assert run(store.expire_offsets("billing", T0_MS + 10)) == 1
    assert run(store.fetch_offsets("billing")) == {TP1: committed(9, T0_MS + 10)}
    assert run(store.fetch_offsets("audit")) == {TP0: committed(4, T0_MS)}
    assert run(store.expire_offsets("billing", T0_MS + 11)) == 1
    assert run(store.expire_offsets("never-there", T0_MS + 11)) == 0
    assert run(store.list_offset_groups()) == ["audit"]


def test_deleting_a_topic_deletes_its_committed_offsets(store: MetadataStore) -> None:
    run(store.create_topic("orders", 2, {}, T0_MS))
    run(store.create_topic("audit", 1, {}, T0_MS))
    audit = TopicPartition("audit", 0)
    run(
        store.commit_offsets("billing", {TP0: committed(5), TP1: committed(9), audit: committed(2)})
    )
    run(store.delete_topic("orders"))
    assert run(store.fetch_offsets("billing")) == {audit: committed(2)}
    run(store.create_topic("orders", 2, {}, T0_MS))  # a new topic of the same name starts clean
    assert run(store.fetch_offsets("billing", [TP0, TP1])) == {}


def test_offset_metadata_keeps_text_exactly(store: MetadataStore) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    text = "ünïcode ✓ " + "x" * 4000
    run(store.commit_offsets("billing", {TP0: committed(1, metadata=text)}))
    assert run(store.fetch_offsets("billing"))[TP0].metadata == text


# ---------------------------------------------------------------- unknown partitions


@pytest.mark.parametrize("tp", [TopicPartition("nope", 0), TopicPartition("orders", 2)])
def test_unknown_partition_raises_everywhere(store: MetadataStore, tp: TopicPartition) -> None:
    run(store.create_topic("orders", 2, {}, T0_MS))
    calls = [
        lambda: store.get_partition(tp),
        lambda: store.acquire_lease(tp, "agent-a", T0_MS, TTL_MS),
        lambda: store.release_lease(tp, "agent-a"),
        lambda: store.set_log_start_offset(tp, 5),
        lambda: store.list_segments(tp),
    ]
    for call in calls:
        with pytest.raises(UnknownTopicOrPartition) as raised:
            run(call())
        assert raised.value.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


# ---------------------------------------------------------------- real-world adapters only


def test_sqlite_reopen_keeps_data_and_migrations_are_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    first = open_sql_metadata(url)
    run(first.create_topic("orders", 1, {"k": "v"}, T0_MS))
    run(first.acquire_lease(TP0, "agent-a", T0_MS, TTL_MS))
    run(first.commit_flush(flush("obj-1", {TP0: 1}, [(TP0, 0, 4)])))
    run(first.close())
    second = open_sql_metadata(url)
    try:
        topic = run(second.get_topic("orders"))
        assert topic is not None and dict(topic.configs) == {"k": "v"}
        assert run(second.get_partition(TP0)).durable_end_offset == 5
        assert run(second.list_segments(TP0)) == [segment(TP0, 0, 4, "obj-1")]
    finally:
        run(second.close())
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        journal_mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    engine.dispose()
    head = ScriptDirectory.from_config(alembic_config(url=url)).get_current_head()
    assert [row[0] for row in versions] == [head]
    assert journal_mode == "wal"


def test_sqlite_in_unwritable_place_is_unavailable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'metadata.db'}"
    with pytest.raises(MetadataUnavailable, match="unavailable during migrate") as raised:
        open_sql_metadata(url)
    assert raised.value.code == ErrorCode.KAFKA_STORAGE_ERROR


def test_unreachable_postgres_is_unavailable() -> None:
    url = "postgresql://postgres@127.0.0.1:1/nothing?connect_timeout=2"
    with pytest.raises(MetadataUnavailable, match="reachable") as raised:
        open_sql_metadata(url)
    assert "127.0.0.1:1" in str(raised.value)


def test_failure_at_commit_is_an_unknown_outcome_for_writes(tmp_path: Path) -> None:
    store = open_sql_metadata(f"sqlite:///{tmp_path / 'metadata.db'}")
    run(store.create_topic("orders", 1, {}, T0_MS))

    def lose_connection(_conn: sa.Connection) -> None:
        raise sa.exc.OperationalError("COMMIT", None, Exception("server closed the connection"))

    sa.event.listen(store.engine, "commit", lose_connection)
    try:
        with pytest.raises(MetadataUnknownOutcome, match="may or may not"):
            run(store.set_log_start_offset(TP0, 5))
        with pytest.raises(MetadataUnavailable, match="server closed the connection"):
            run(store.get_partition(TP0))
    finally:
        sa.event.remove(store.engine, "commit", lose_connection)
    assert run(store.get_partition(TP0)).log_start_offset == 0
    run(store.close())


def test_migrations_run_from_a_url_and_downgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    command.upgrade(alembic_config(url=url), "head")
    engine = sa.create_engine(url)
    assert set(sa.inspect(engine).get_table_names()) >= {"topics", "segments", "flush_outcomes"}
    command.downgrade(alembic_config(url=url), "base")
    assert sa.inspect(engine).get_table_names() == ["alembic_version"]
    engine.dispose()
    store = open_sql_metadata(url)
    run(store.create_topic("orders", 1, {}, T0_MS))
    run(store.close())


def test_sqlite_file_at_revision_0001_upgrades_on_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    command.upgrade(alembic_config(url=url), "0001")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO topics (name, partition_count, configs, created_ms) "
                "VALUES ('orders', 1, '{}', 5)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO partitions (topic, partition, leader_epoch, lease_expires_ms, "
                "durable_end_offset, log_start_offset) VALUES ('orders', 0, 2, 0, 7, 0)"
            )
        )
    engine.dispose()
    store = open_sql_metadata(url)
    try:
        assert run(store.get_partition(TP0)).durable_end_offset == 7
        run(store.commit_offsets("billing", {TP0: committed(7)}))
        assert run(store.fetch_offsets("billing")) == {TP0: committed(7)}
    finally:
        run(store.close())


# ---------------------------------------------------------------- concurrency (several agents)


@pytest.fixture(params=["sqlite", "postgres"])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlMetadataStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'metadata.db'}"
    else:
        url = request.getfixturevalue("postgres_database_url")
    opened = open_sql_metadata(url, run_blocking=run_inline)  # threads call it directly
    try:
        yield opened
    finally:
        run(opened.close())


def all_at_once(calls: list[Callable[[], T]]) -> list[T]:
    """Run the calls on threads released together by a barrier."""
    barrier = threading.Barrier(len(calls))

    def start(call: Callable[[], T]) -> T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(start, calls))


def test_concurrent_acquisitions_grant_one_lease(sql_store: SqlMetadataStore) -> None:
    store = sql_store
    run(store.create_topic("orders", 1, {}, T0_MS))
    agents = [f"agent-{index}" for index in range(8)]
    leases = all_at_once(
        [
            lambda agent=agent: run(store.acquire_lease(TP0, agent, T0_MS, TTL_MS))
            for agent in agents
        ]
    )
    granted = [lease for lease in leases if lease is not None]
    assert len(granted) == 1 and granted[0].epoch == 1
    assert run(store.get_partition(TP0)).leader_agent == granted[0].agent


def test_concurrent_replays_of_one_flush_agree(sql_store: SqlMetadataStore) -> None:
    store = sql_store
    run(store.create_topic("orders", 2, {}, T0_MS))
    run(store.acquire_lease(TP0, "agent-a", T0_MS, TTL_MS))
    commit = flush("obj-1", {TP0: 1, TP1: 5}, [(TP0, 0, 4), (TP1, 0, 4)])
    outcomes = all_at_once([lambda: run(store.commit_flush(commit)) for _ in range(6)])
    assert set(outcomes) == {FlushOutcome(frozenset({TP0}), frozenset({TP1}))}
    assert run(store.list_segments(TP0)) == [segment(TP0, 0, 4, "obj-1")]
    assert run(store.get_partition(TP0)).durable_end_offset == 5


def test_flushes_racing_a_topic_deletion_do_not_deadlock(sql_store: SqlMetadataStore) -> None:
    store = sql_store
    audit = TopicPartition("audit", 0)
    run(store.create_topic("audit", 1, {}, T0_MS))
    for round_index in range(5):
        run(store.create_topic("orders", 2, {}, T0_MS))
        epochs = {}
        for tp in (TP0, TP1, audit):
            lease = run(store.acquire_lease(tp, "agent-a", T0_MS, TTL_MS))
            assert lease is not None
            epochs[tp] = lease.epoch
        audit_end = run(store.get_partition(audit)).durable_end_offset
        # Rows listed in reverse key order: the store must still lock in one order.
        ranges = [(audit, audit_end, audit_end), (TP1, 0, 0), (TP0, 0, 0)]
        commit = flush(f"obj-{round_index}", epochs, ranges)
        outcome, _ = all_at_once(
            [lambda c=commit: run(store.commit_flush(c)), lambda: run(store.delete_topic("orders"))]
        )
        assert audit in outcome.committed
        assert outcome.committed | outcome.fenced == {TP0, TP1, audit}
        assert run(store.get_partition(audit)).durable_end_offset == audit_end + 1


def test_concurrent_commits_of_one_group_leave_one_winner(sql_store: SqlMetadataStore) -> None:
    store = sql_store
    run(store.create_topic("orders", 2, {}, T0_MS))
    batches = [{TP0: committed(index), TP1: committed(index)} for index in range(8)]
    all_at_once(
        [lambda batch=batch: run(store.commit_offsets("billing", batch)) for batch in batches]
    )
    stored = run(store.fetch_offsets("billing"))
    assert set(stored) == {TP0, TP1}
    assert stored[TP0] in [batch[TP0] for batch in batches]


def test_offset_commits_racing_a_topic_deletion_do_not_deadlock(
    sql_store: SqlMetadataStore,
) -> None:
    store = sql_store
    for _ in range(5):
        run(store.create_topic("orders", 2, {}, T0_MS))
        results = all_at_once(
            [
                lambda: _commit_or_unknown(store, {TP1: committed(1), TP0: committed(1)}),
                lambda: run(store.delete_topic("orders")),
            ]
        )
        assert results[0] in ("committed", "unknown")
        assert run(store.fetch_offsets("billing")) == {}


def _commit_or_unknown(
    store: SqlMetadataStore, offsets: dict[TopicPartition, CommittedOffset]
) -> str:
    try:
        run(store.commit_offsets("billing", offsets))
    except UnknownTopicOrPartition:
        return "unknown"
    return "committed"


# ---------------------------------------------------------------- idempotent producers


def _produced(producer_id: int, epoch: int, first: int, base: int, count: int) -> ProducerBatch:
    batch = SequencedBatch(first, first + count - 1, base, base + count - 1)
    return ProducerBatch(producer_id, epoch, batch)


def test_producer_ids_are_never_handed_out_twice(store: MetadataStore) -> None:
    allocated = [run(store.allocate_producer_id()) for _ in range(5)]
    assert len(set(allocated)) == 5 and all(pid >= 0 for pid in allocated)


def test_flushes_fold_producer_batches_of_committed_partitions_only(
    store: MetadataStore,
) -> None:
    orders_led_by_a(store)
    first = flush("obj-1", {TP0: 1, TP1: 1}, [(TP0, 0, 5), (TP1, 0, 0)])
    run(
        store.commit_flush(
            replace(
                first,
                producers={
                    TP0: [_produced(1, 0, 0, 0, 3), _produced(1, 0, 3, 3, 3)],
                    TP1: [_produced(2, 0, 0, 0, 1)],
                },
            )
        )
    )
    for index in range(6):  # six more batches of producer 1: only the last five stay
        commit = flush(f"obj-{index + 2}", {TP0: 1}, [(TP0, 6 + index, 6 + index)])
        run(
            store.commit_flush(
                replace(commit, producers={TP0: [_produced(1, 0, 6 + index, 6 + index, 1)]})
            )
        )
    (state,) = run(store.list_producer_states(TP0))
    assert (state.producer_id, state.producer_epoch) == (1, 0)
    assert [b.first_sequence for b in state.batches] == [7, 8, 9, 10, 11]
    assert [s.producer_id for s in run(store.list_producer_states(TP1))] == [2]
    fenced = flush("obj-stale", {TP1: 0}, [(TP1, 1, 1)])
    run(store.commit_flush(replace(fenced, producers={TP1: [_produced(2, 0, 1, 1, 1)]})))
    (kept,) = run(store.list_producer_states(TP1))
    assert [b.first_sequence for b in kept.batches] == [0]


def test_producer_states_expire_and_go_with_their_topic(store: MetadataStore) -> None:
    orders_led_by_a(store)
    commit = flush("obj-1", {TP0: 1}, [(TP0, 0, 0)])
    run(store.commit_flush(replace(commit, producers={TP0: [_produced(1, 0, 0, 0, 1)]})))
    later = flush("obj-2", {TP0: 1}, [(TP0, 1, 1)])
    expiring = replace(
        later,
        obj=replace(later.obj, created_ms=T0_MS + 10),
        producers={TP0: [_produced(2, 0, 0, 1, 1)]},
        producers_expire_before_ms=T0_MS + 1,
    )
    run(store.commit_flush(expiring))
    assert [s.producer_id for s in run(store.list_producer_states(TP0))] == [2]
    run(store.delete_topic("orders"))
    run(store.create_topic("orders", 1, {}, T0_MS))
    assert run(store.list_producer_states(TP0)) == []


def test_offset_commits_racing_flushes_of_the_same_partitions(
    sql_store: SqlMetadataStore,
) -> None:
    store = sql_store
    run(store.create_topic("orders", 2, {}, T0_MS))
    for tp in (TP0, TP1):
        run(store.acquire_lease(tp, "agent-a", T0_MS, TTL_MS))
    for round_index in range(5):
        ranges = [(TP0, round_index, round_index), (TP1, round_index, round_index)]
        commit = flush(f"obj-{round_index}", {TP0: 1, TP1: 1}, ranges)
        offsets = {TP1: committed(round_index), TP0: committed(round_index)}
        outcome, _, _ = all_at_once(
            [
                lambda c=commit: run(store.commit_flush(c)),
                lambda o=offsets: run(store.commit_offsets("billing", o)),
                lambda o=offsets: run(store.commit_offsets("audit", o)),
            ]
        )
        assert outcome.committed == {TP0, TP1}
        assert run(store.fetch_offsets("billing")) == offsets == run(store.fetch_offsets("audit"))
    assert (
        run(store.get_partition(TP0)).durable_end_offset
        == 5
        == run(store.get_partition(TP1)).durable_end_offset
    )


def test_an_agent_that_lost_its_wal_fences_its_own_leases(store: MetadataStore) -> None:
    orders_led_by_a(store)  # agent-a holds both partitions at epoch 1
    run(store.create_topic("other", 1, {}, T0_MS))
    assert run(store.acquire_lease(TopicPartition("other", 0), "agent-b", T0_MS, TTL_MS))
    assert run(store.fence_own_leases("agent-a")) == 2
    assert run(store.get_partition(TP0)).leader_epoch == 2
    assert run(store.get_partition(TopicPartition("other", 0))).leader_epoch == 1
    stale = run(store.commit_flush(flush("obj-stale", {TP0: 1}, [(TP0, 0, 4)])))
    assert stale.fenced == frozenset({TP0})
    lease = run(store.acquire_lease(TP0, "agent-a", T0_MS, TTL_MS))  # renews the new epoch
    assert lease is not None and lease.epoch == 2
    assert run(store.fence_own_leases("agent-nobody")) == 0


def test_group_generation_reservations_rise_per_group(store: MetadataStore) -> None:
    first = run(store.reserve_group_generations("billing", 10))
    assert first >= 1
    assert run(store.reserve_group_generations("billing", 5)) >= first + 10
    assert run(store.reserve_group_generations("audit", 1)) >= 1
