"""Leases port: every adapter grants and fences leases by the store's own clock, and commits
flushes under them, alike."""

from __future__ import annotations

from dataclasses import replace

import pytest

from streamhouse.errors import ErrorCode, UnknownTopicOrPartition
from streamhouse.io.sql.store import SqlMetadataStore
from streamhouse.names import TopicPartition
from streamhouse.ports.leases import (
    FlushOutcome,
    Lease,
    ObjectRecord,
    ObjectRef,
    SegmentRecord,
    SegmentSwap,
)
from streamhouse.ports.metadata import MetadataStore
from tests.unit.metadata.builders import (
    T0_MS,
    TP0,
    TP1,
    TTL_MS,
    StoreTime,
    all_at_once,
    flush,
    orders_led_by_a,
    run,
    segment,
)

# ---------------------------------------------------------------- leases
#
# Expiry is the store's business: every call is judged by the store's own clock, which the
# tests move (`store_time`); nobody passes a time in. On PostgreSQL the server's clock also
# runs on by itself, so waits stay a whole SLACK_MS clear of every expiry.

SLACK_MS = 1_000


def _acquire(store: MetadataStore, store_time: StoreTime, agent: str) -> Lease:
    """agent takes or renews TP0's lease; its expiry is TTL_MS after the store's time."""
    assert isinstance(store, SqlMetadataStore)
    before = store_time.now_ms(store)
    lease = run(store.acquire_lease(TP0, agent, TTL_MS))
    after = store_time.now_ms(store)
    assert lease is not None, f"{agent} was refused"
    assert before + TTL_MS <= lease.expires_ms <= after + TTL_MS
    return lease


def test_first_acquire_gives_epoch_one(store: MetadataStore, store_time: StoreTime) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    lease = _acquire(store, store_time, "agent-a")
    assert (lease.tp, lease.agent, lease.epoch) == (TP0, "agent-a", 1)
    partition = run(store.get_partition(TP0))
    assert (partition.leader_agent, partition.leader_epoch) == ("agent-a", 1)
    assert partition.lease_expires_ms == lease.expires_ms
    assert partition.lease_live


def test_renewal_keeps_epoch_and_extends(store: MetadataStore, store_time: StoreTime) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    first = _acquire(store, store_time, "agent-a")
    store_time.advance_ms(5_000)
    renewed = _acquire(store, store_time, "agent-a")
    assert renewed.epoch == 1
    assert renewed.expires_ms >= first.expires_ms + 5_000


def test_renew_leases_renews_only_the_holder_at_its_epoch_even_expired(
    store: MetadataStore, store_time: StoreTime
) -> None:
    run(store.create_topic("orders", 3, {}, T0_MS))
    tp2 = TopicPartition("orders", 2)
    first = _acquire(store, store_time, "agent-a")
    run(store.acquire_lease(TP1, "agent-b", TTL_MS))
    run(store.acquire_lease(tp2, "agent-a", TTL_MS))
    store_time.advance_ms(TTL_MS + SLACK_MS)  # every lease expired: nobody took them
    held = {TP0: 1, TP1: 1, tp2: 2, TopicPartition("gone", 0): 1}
    renewed = run(store.renew_leases(held, "agent-a", TTL_MS))
    assert set(renewed) == {TP0, TP1, tp2}  # a partition that does not exist: no entry
    assert renewed[TP1] is None  # agent-b's
    assert renewed[tp2] is None  # held at epoch 1, not 2
    lease = renewed[TP0]
    assert lease is not None and (lease.agent, lease.epoch) == ("agent-a", 1)
    assert lease.expires_ms >= first.expires_ms + TTL_MS
    after = {p.tp: p for p in run(store.list_topic_partitions("orders"))}
    assert (after[TP0].lease_live, after[TP0].lease_expires_ms) == (True, lease.expires_ms)
    assert not after[TP1].lease_live and after[TP1].leader_agent == "agent-b"
    assert not after[tp2].lease_live and after[tp2].leader_epoch == 1
    assert run(store.renew_leases({}, "agent-a", TTL_MS)) == {}


def test_other_agent_blocked_while_lease_unexpired(
    store: MetadataStore, store_time: StoreTime
) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    _acquire(store, store_time, "agent-a")
    store_time.advance_ms(TTL_MS - SLACK_MS)
    assert run(store.acquire_lease(TP0, "agent-b", TTL_MS)) is None
    partition = run(store.get_partition(TP0))
    assert (partition.leader_agent, partition.leader_epoch) == ("agent-a", 1)
    assert partition.lease_live


# A server's clock does not stand still at a millisecond: the stores whose clock tests move.
@pytest.mark.parametrize("backend", ["sqlite", "sim"], indirect=True)
def test_a_lease_is_live_until_the_store_reaches_its_expiry(
    store: MetadataStore, store_time: StoreTime
) -> None:
    assert store_time.virtual is not None
    run(store.create_topic("orders", 1, {}, T0_MS))
    lease = _acquire(store, store_time, "agent-a")
    store_time.advance_ms(lease.expires_ms - store_time.virtual.now_ms() - 1)
    assert run(store.get_partition(TP0)).lease_live
    assert run(store.acquire_lease(TP0, "agent-b", TTL_MS)) is None
    store_time.advance_ms(1)
    expired = run(store.get_partition(TP0))
    assert (expired.leader_agent, expired.lease_live) == ("agent-a", False)
    assert _acquire(store, store_time, "agent-b").epoch == 2


def test_other_agent_takes_expired_lease_with_new_epoch(
    store: MetadataStore, store_time: StoreTime
) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    _acquire(store, store_time, "agent-a")
    store_time.advance_ms(TTL_MS)
    taken = _acquire(store, store_time, "agent-b")
    assert (taken.agent, taken.epoch) == ("agent-b", 2)
    # The old holder is now the other agent, blocked until b's lease expires.
    store_time.advance_ms(SLACK_MS)
    assert run(store.acquire_lease(TP0, "agent-a", TTL_MS)) is None
    store_time.advance_ms(TTL_MS)
    back = _acquire(store, store_time, "agent-a")
    assert (back.agent, back.epoch) == ("agent-a", 3)


def test_holder_renews_after_expiry_if_nobody_took_it(
    store: MetadataStore, store_time: StoreTime
) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    _acquire(store, store_time, "agent-a")
    store_time.advance_ms(10 * TTL_MS)
    assert not run(store.get_partition(TP0)).lease_live
    late = _acquire(store, store_time, "agent-a")
    assert late.epoch == 1
    assert run(store.get_partition(TP0)).lease_live


def test_release_lets_another_agent_take_at_once(
    store: MetadataStore, store_time: StoreTime
) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    _acquire(store, store_time, "agent-a")
    run(store.release_lease(TP0, "agent-a"))
    partition = run(store.get_partition(TP0))
    assert partition.leader_epoch == 1
    assert not partition.lease_live
    taken = _acquire(store, store_time, "agent-b")
    assert taken.epoch == 2


def test_release_then_same_holder_keeps_epoch(store: MetadataStore, store_time: StoreTime) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    _acquire(store, store_time, "agent-a")
    run(store.release_lease(TP0, "agent-a"))
    assert _acquire(store, store_time, "agent-a").epoch == 1


def test_release_by_non_holder_changes_nothing(store: MetadataStore, store_time: StoreTime) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    _acquire(store, store_time, "agent-a")
    before = run(store.get_partition(TP0))
    run(store.release_lease(TP0, "agent-b"))
    assert run(store.get_partition(TP0)) == before
    assert run(store.acquire_lease(TP0, "agent-b", TTL_MS)) is None


def test_an_agent_that_lost_its_wal_fences_its_own_leases(store: MetadataStore) -> None:
    orders_led_by_a(store)  # agent-a holds both partitions at epoch 1
    run(store.create_topic("other", 1, {}, T0_MS))
    assert run(store.acquire_lease(TopicPartition("other", 0), "agent-b", TTL_MS))
    assert run(store.fence_own_leases("agent-a")) == 2
    assert run(store.get_partition(TP0)).leader_epoch == 2
    assert run(store.get_partition(TopicPartition("other", 0))).leader_epoch == 1
    stale = run(store.commit_flush(flush("obj-stale", {TP0: 1}, [(TP0, 0, 4)])))
    assert stale.fenced == frozenset({TP0})
    lease = run(store.acquire_lease(TP0, "agent-a", TTL_MS))  # renews the new epoch
    assert lease is not None and lease.epoch == 2
    assert run(store.fence_own_leases("agent-nobody")) == 0


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


def test_commit_flush_fences_stale_and_missing_partitions(
    store: MetadataStore, store_time: StoreTime
) -> None:
    orders_led_by_a(store)
    store_time.advance_ms(TTL_MS)
    assert run(store.acquire_lease(TP1, "agent-b", TTL_MS))  # TP1 now at epoch 2
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


def test_commit_flush_replay_returns_first_outcome(
    store: MetadataStore, store_time: StoreTime
) -> None:
    orders_led_by_a(store)
    commit = flush("obj-1", {TP0: 1, TP1: 9}, [(TP0, 0, 4), (TP1, 0, 4)])
    first = run(store.commit_flush(commit))
    # The epochs move on and the partition is deleted; a replay still answers the same.
    store_time.advance_ms(TTL_MS)
    assert run(store.acquire_lease(TP0, "agent-b", TTL_MS))
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


def test_object_refs_page_by_key_with_segment_counts(store: MetadataStore) -> None:
    orders_led_by_a(store)
    run(store.commit_flush(flush("b", {TP0: 1, TP1: 1}, [(TP0, 0, 0), (TP1, 0, 3)])))
    run(store.commit_flush(flush("a", {TP0: 1}, [(TP0, 1, 1)])))
    run(store.commit_flush(flush("c", {TP0: 99}, [])))  # fenced: a row nothing points into
    run(store.commit_flush(flush("d", {TP0: 1}, [(TP0, 2, 2)])))
    refs = run(store.list_object_refs("", 2))
    assert refs == [ObjectRef("a", 123, T0_MS, 1), ObjectRef("b", 123, T0_MS, 2)]
    assert run(store.list_object_refs("b", 2)) == [
        ObjectRef("c", 123, T0_MS, 0),
        ObjectRef("d", 123, T0_MS, 1),
    ]
    assert run(store.list_object_refs("bb", 10))[0].key == "c"
    assert run(store.list_object_refs("d", 2)) == []
    assert run(store.list_object_refs("", 0)) == []
    assert run(store.object_segments("b")) == [segment(TP0, 0, 0, "b"), segment(TP1, 0, 3, "b")]
    assert run(store.object_segments("c")) == []
    assert run(store.object_segments("nothing")) == []


def test_forget_object_only_without_segment_rows(store: MetadataStore) -> None:
    orders_led_by_a(store)
    run(store.commit_flush(flush("kept", {TP0: 1}, [(TP0, 0, 0)])))
    fenced = flush("fenced", {TP0: 99}, [])
    first = run(store.commit_flush(fenced))
    assert run(store.forget_object("kept")) is False
    assert run(store.forget_object("fenced")) is True
    assert run(store.forget_object("fenced")) is False  # gone already
    assert run(store.forget_object("never")) is False
    assert [ref.key for ref in run(store.list_object_refs())] == ["kept"]
    assert run(store.list_segments(TP0)) == [segment(TP0, 0, 0, "kept")]
    # Its flush outcome went with it: the same commit now commits afresh (and is fenced again).
    assert run(store.commit_flush(fenced)) == first
    assert [ref.key for ref in run(store.list_object_refs())] == ["fenced", "kept"]


def test_objects_of_a_deleted_topic_lose_their_segment_counts(store: MetadataStore) -> None:
    orders_led_by_a(store)
    run(store.commit_flush(flush("obj-1", {TP0: 1}, [(TP0, 0, 4)])))
    run(store.delete_topic("orders"))
    assert run(store.list_object_refs()) == [ObjectRef("obj-1", 123, T0_MS, 0)]
    assert run(store.forget_object("obj-1")) is True
    assert run(store.list_object_refs()) == []


def test_partition_sizes_and_objects_of_the_topics_committed_rows(store: MetadataStore) -> None:
    orders_led_by_a(store)
    run(store.create_topic("orders-2", 1, {}, T0_MS))
    other = TopicPartition("orders-2", 0)
    assert run(store.acquire_lease(other, "agent-a", TTL_MS)) is not None
    assert run(store.partition_sizes("orders")) == {}
    # segment() sizes a row 10 bytes per offset
    run(store.commit_flush(flush("obj-1", {TP0: 1, other: 1}, [(TP0, 0, 4), (other, 0, 99)])))
    run(store.commit_flush(flush("obj-2", {TP0: 1, TP1: 1}, [(TP0, 5, 6), (TP1, 0, 0)])))
    run(store.commit_flush(flush("obj-3", {TP1: 7}, [(TP1, 1, 50)])))  # fenced: not counted
    assert run(store.partition_sizes("orders")) == {0: 70, 1: 10}
    assert run(store.partition_sizes("orders-2")) == {0: 1000}
    assert run(store.partition_sizes("nope")) == {}
    assert run(store.partition_objects("orders")) == {0: 2, 1: 1}
    assert run(store.partition_objects("orders-2")) == {0: 1}
    assert run(store.partition_objects("nope")) == {}
    run(store.delete_topic("orders"))
    assert run(store.partition_sizes("orders")) == {}
    assert run(store.partition_objects("orders")) == {}


# ---------------------------------------------------------------- log start


def test_set_log_start_offset_never_moves_back(store: MetadataStore) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    assert run(store.set_log_start_offset(TP0, 10)) == 10
    assert run(store.set_log_start_offset(TP0, 4)) == 10
    assert run(store.set_log_start_offset(TP0, 10)) == 10
    assert run(store.set_log_start_offset(TP0, 11)) == 11
    assert run(store.get_partition(TP0)).log_start_offset == 11


def test_raising_the_log_start_drops_rows_below_and_releases_their_objects(
    store: MetadataStore, store_time: StoreTime
) -> None:
    orders_led_by_a(store)
    run(store.commit_flush(flush("a", {TP0: 1, TP1: 1}, [(TP0, 0, 4), (TP1, 0, 0)])))
    run(store.commit_flush(flush("b", {TP0: 1}, [(TP0, 5, 9)])))
    assert run(store.set_log_start_offset(TP0, 5)) == 5
    assert run(store.list_segments(TP0)) == [segment(TP0, 5, 9, "b")]
    refs = {ref.key: ref for ref in run(store.list_object_refs())}
    assert refs["a"] == ObjectRef("a", 123, T0_MS, 1)  # TP1 still reads it: not released
    assert run(store.set_log_start_offset(TP0, 7)) == 7  # a row that straddles it stays
    assert run(store.list_segments(TP0)) == [segment(TP0, 5, 9, "b")]
    assert run(store.set_log_start_offset(TP1, 1)) == 1
    store_time.advance_ms(5_000)
    released = {ref.key: ref for ref in run(store.list_object_refs())}["a"]
    assert released.segment_count == 0
    assert released.released_age_ms is not None
    assert 5_000 <= released.released_age_ms < 5_000 + SLACK_MS
    assert run(store.get_partition(TP0)).durable_end_offset == 10  # the durable end stays


# ---------------------------------------------------------------- rewrites (swaps)


def _swap(
    key: str, old: list[SegmentRecord], ranges: list[tuple[int, int]], epoch: int = 1
) -> SegmentSwap:
    obj = ObjectRecord(key=key, agent="agent-a", org="org-1", size_bytes=50, created_ms=T0_MS)
    return SegmentSwap(obj, TP0, epoch, old, [segment(TP0, b, last, key) for b, last in ranges])


def _three_flushes(store: MetadataStore) -> list[SegmentRecord]:
    orders_led_by_a(store)
    run(store.commit_flush(flush("a", {TP0: 1, TP1: 1}, [(TP0, 0, 4), (TP1, 0, 0)])))
    run(store.commit_flush(flush("b", {TP0: 1}, [(TP0, 5, 9)])))
    run(store.commit_flush(flush("c", {TP0: 1}, [(TP0, 10, 12)])))
    return run(store.list_segments(TP0))


def test_a_swap_replaces_rows_and_releases_objects_left_without_rows(
    store: MetadataStore, store_time: StoreTime
) -> None:
    rows = _three_flushes(store)
    swap = _swap("merged", rows[:2], [(0, 6), (7, 9)])
    assert run(store.swap_segments(swap)) is True
    expected = [*swap.new, segment(TP0, 10, 12, "c")]
    assert run(store.list_segments(TP0)) == expected
    assert run(store.swap_segments(swap)) is True  # a replay: nothing more changes
    assert run(store.list_segments(TP0)) == expected
    store_time.advance_ms(1_000)
    refs = {ref.key: ref for ref in run(store.list_object_refs())}
    assert refs["a"].segment_count == 1 and refs["a"].released_age_ms is None  # TP1's row
    assert refs["b"].segment_count == 0 and refs["b"].released_age_ms is not None
    assert refs["merged"].segment_count == 2 and refs["merged"].released_age_ms is None
    assert run(store.get_partition(TP0)).durable_end_offset == 13
    assert run(store.list_segments(TP1)) == [segment(TP1, 0, 0, "a")]


def test_a_swap_is_fenced_by_the_epoch_and_by_the_rows_it_replaces(
    store: MetadataStore,
) -> None:
    rows = _three_flushes(store)
    assert run(store.swap_segments(_swap("stale", rows[:2], [(0, 9)], epoch=2))) is False
    run(store.set_log_start_offset(TP0, 5))  # row 0-4 went
    assert run(store.swap_segments(_swap("late", rows[:2], [(0, 9)]))) is False
    assert run(store.swap_segments(_swap("first", rows[1:], [(5, 12)]))) is True
    # the same rows swapped a second time, by a rewrite that listed them before the first
    assert run(store.swap_segments(_swap("second", rows[1:], [(5, 12)]))) is False
    assert run(store.list_segments(TP0)) == [segment(TP0, 5, 12, "first")]
    keys = [ref.key for ref in run(store.list_object_refs())]
    assert keys == ["a", "b", "c", "first"]  # refused swaps wrote no object row


def test_a_compaction_swap_moves_the_checkpoint_forward_only(
    store: MetadataStore, store_time: StoreTime
) -> None:
    rows = _three_flushes(store)
    assert run(store.get_partition(TP0)).cleaned_end_offset == 0
    assert run(store.get_partition(TP0)).compacted_ms is None
    cleaned = replace(_swap("cleaned", rows[:2], [(0, 9)]), cleaned_end_offset=10)
    before_ms = store_time.now_ms(store)
    assert run(store.swap_segments(cleaned)) is True
    partition = run(store.get_partition(TP0))
    assert partition.cleaned_end_offset == 10
    assert partition.compacted_ms is not None and partition.compacted_ms >= before_ms
    again = run(store.list_segments(TP0))[:1]
    behind = replace(_swap("behind", again, [(0, 9)]), cleaned_end_offset=4)
    assert run(store.swap_segments(behind)) is True
    assert run(store.get_partition(TP0)).cleaned_end_offset == 10  # never back
    merged = _swap("merged", run(store.list_segments(TP0)), [(0, 12)])
    assert run(store.swap_segments(merged)) is True
    assert run(store.get_partition(TP0)).cleaned_end_offset == 10  # a merge leaves it


def test_a_swap_must_keep_its_offsets(store: MetadataStore) -> None:
    rows = _three_flushes(store)
    with pytest.raises(AssertionError, match="keeps its last offset"):
        _swap("short", rows[:2], [(0, 8)])
    with pytest.raises(AssertionError, match="consecutive"):
        _swap("gap", rows[:2], [(0, 3), (5, 9)])


# ---------------------------------------------------------------- unknown partitions


@pytest.mark.parametrize("tp", [TopicPartition("nope", 0), TopicPartition("orders", 2)])
def test_unknown_partition_raises_everywhere(store: MetadataStore, tp: TopicPartition) -> None:
    run(store.create_topic("orders", 2, {}, T0_MS))
    calls = [
        lambda: store.get_partition(tp),
        lambda: store.acquire_lease(tp, "agent-a", TTL_MS),
        lambda: store.release_lease(tp, "agent-a"),
        lambda: store.set_log_start_offset(tp, 5),
        lambda: store.list_segments(tp),
    ]
    for call in calls:
        with pytest.raises(UnknownTopicOrPartition) as raised:
            run(call())
        assert raised.value.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


# ---------------------------------------------------------------- several agents at once


def test_concurrent_acquisitions_grant_one_lease(sql_store: SqlMetadataStore) -> None:
    run(sql_store.create_topic("orders", 1, {}, T0_MS))
    agents = [f"agent-{index}" for index in range(8)]
    leases = all_at_once(
        [lambda agent=agent: run(sql_store.acquire_lease(TP0, agent, TTL_MS)) for agent in agents]
    )
    granted = [lease for lease in leases if lease is not None]
    assert len(granted) == 1 and granted[0].epoch == 1
    assert run(sql_store.get_partition(TP0)).leader_agent == granted[0].agent


def test_concurrent_replays_of_one_flush_agree(sql_store: SqlMetadataStore) -> None:
    run(sql_store.create_topic("orders", 2, {}, T0_MS))
    run(sql_store.acquire_lease(TP0, "agent-a", TTL_MS))
    commit = flush("obj-1", {TP0: 1, TP1: 5}, [(TP0, 0, 4), (TP1, 0, 4)])
    outcomes = all_at_once([lambda: run(sql_store.commit_flush(commit)) for _ in range(6)])
    assert set(outcomes) == {FlushOutcome(frozenset({TP0}), frozenset({TP1}))}
    assert run(sql_store.list_segments(TP0)) == [segment(TP0, 0, 4, "obj-1")]
    assert run(sql_store.get_partition(TP0)).durable_end_offset == 5


def test_flushes_racing_a_topic_deletion_do_not_deadlock(sql_store: SqlMetadataStore) -> None:
    audit = TopicPartition("audit", 0)
    run(sql_store.create_topic("audit", 1, {}, T0_MS))
    for round_index in range(5):
        run(sql_store.create_topic("orders", 2, {}, T0_MS))
        epochs = {}
        for tp in (TP0, TP1, audit):
            lease = run(sql_store.acquire_lease(tp, "agent-a", TTL_MS))
            assert lease is not None
            epochs[tp] = lease.epoch
        audit_end = run(sql_store.get_partition(audit)).durable_end_offset
        # Rows listed in reverse key order: the store must still lock in one order.
        ranges = [(audit, audit_end, audit_end), (TP1, 0, 0), (TP0, 0, 0)]
        commit = flush(f"obj-{round_index}", epochs, ranges)
        outcome, _ = all_at_once(
            [
                lambda c=commit: run(sql_store.commit_flush(c)),
                lambda: run(sql_store.delete_topic("orders")),
            ]
        )
        assert audit in outcome.committed
        assert outcome.committed | outcome.fenced == {TP0, TP1, audit}
        assert run(sql_store.get_partition(audit)).durable_end_offset == audit_end + 1
