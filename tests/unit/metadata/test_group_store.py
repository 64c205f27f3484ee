"""Groups port: every adapter keeps consumer groups' offsets and generations alike."""

from __future__ import annotations

import pytest

from streamhouse.errors import ErrorCode, NotCoordinator, UnknownTopicOrPartition
from streamhouse.io.sql.store import SqlMetadataStore
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import CommittedOffset, CoordinatorFence
from streamhouse.ports.metadata import MetadataStore
from tests.unit.metadata.builders import (
    T0_MS,
    TP0,
    TP1,
    TTL_MS,
    all_at_once,
    committed,
    flush,
    run,
)

# ---------------------------------------------------------------- committed offsets


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


# ---------------------------------------------------------------- generations


def test_group_generation_reservations_rise_per_group(store: MetadataStore) -> None:
    first = run(store.reserve_group_generations("billing", 10))
    assert first >= 1
    assert run(store.reserve_group_generations("billing", 5)) >= first + 10
    assert run(store.reserve_group_generations("audit", 1)) >= 1


# ---------------------------------------------------------------- several agents at once


def test_concurrent_commits_of_one_group_leave_one_winner(sql_store: SqlMetadataStore) -> None:
    run(sql_store.create_topic("orders", 2, {}, T0_MS))
    batches = [{TP0: committed(index), TP1: committed(index)} for index in range(8)]
    all_at_once(
        [lambda batch=batch: run(sql_store.commit_offsets("billing", batch)) for batch in batches]
    )
    stored = run(sql_store.fetch_offsets("billing"))
    assert set(stored) == {TP0, TP1}
    assert stored[TP0] in [batch[TP0] for batch in batches]


def test_offset_commits_racing_a_topic_deletion_do_not_deadlock(
    sql_store: SqlMetadataStore,
) -> None:
    for _ in range(5):
        run(sql_store.create_topic("orders", 2, {}, T0_MS))
        results = all_at_once(
            [
                lambda: _commit_or_unknown(sql_store, {TP1: committed(1), TP0: committed(1)}),
                lambda: run(sql_store.delete_topic("orders")),
            ]
        )
        assert results[0] in ("committed", "unknown")
        assert run(sql_store.fetch_offsets("billing")) == {}


def _commit_or_unknown(
    store: SqlMetadataStore, offsets: dict[TopicPartition, CommittedOffset]
) -> str:
    try:
        run(store.commit_offsets("billing", offsets))
    except UnknownTopicOrPartition:
        return "unknown"
    return "committed"


def test_offset_commits_racing_flushes_of_the_same_partitions(
    sql_store: SqlMetadataStore,
) -> None:
    run(sql_store.create_topic("orders", 2, {}, T0_MS))
    for tp in (TP0, TP1):
        run(sql_store.acquire_lease(tp, "agent-a", TTL_MS))
    for round_index in range(5):
        ranges = [(TP0, round_index, round_index), (TP1, round_index, round_index)]
        commit = flush(f"obj-{round_index}", {TP0: 1, TP1: 1}, ranges)
        offsets = {TP1: committed(round_index), TP0: committed(round_index)}
        outcome, _, _ = all_at_once(
            [
                lambda c=commit: run(sql_store.commit_flush(c)),
                lambda o=offsets: run(sql_store.commit_offsets("billing", o)),
                lambda o=offsets: run(sql_store.commit_offsets("audit", o)),
            ]
        )
        assert outcome.committed == {TP0, TP1}
        assert (
            run(sql_store.fetch_offsets("billing"))
            == offsets
            == run(sql_store.fetch_offsets("audit"))
        )
    assert (
        run(sql_store.get_partition(TP0)).durable_end_offset
        == 5
        == run(sql_store.get_partition(TP1)).durable_end_offset
    )


# ---------------------------------------------------------------- fenced by the coordinator slot

SLOT = TopicPartition("slots", 0)


def test_a_commit_fenced_by_the_current_slot_epoch_lands(store: MetadataStore) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    run(store.create_topic("slots", 1, {}, T0_MS))
    lease = run(store.acquire_lease(SLOT, "agent-a", TTL_MS))
    assert lease is not None
    fence = CoordinatorFence(SLOT, lease.epoch)
    run(store.commit_offsets("billing", {TP0: committed(5)}, fence))
    assert run(store.fetch_offsets("billing")) == {TP0: committed(5)}


def test_a_commit_from_a_slot_that_moved_on_is_refused_and_commits_nothing(
    store: MetadataStore,
) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    run(store.create_topic("slots", 1, {}, T0_MS))
    old = run(store.acquire_lease(SLOT, "agent-a", TTL_MS))
    assert old is not None
    run(store.release_lease(SLOT, "agent-a"))
    new = run(store.acquire_lease(SLOT, "agent-b", TTL_MS))
    assert new is not None and new.epoch == old.epoch + 1
    with pytest.raises(NotCoordinator) as raised:
        run(store.commit_offsets("billing", {TP0: committed(5)}, CoordinatorFence(SLOT, old.epoch)))
    assert raised.value.code == ErrorCode.NOT_COORDINATOR == 16
    assert run(store.fetch_offsets("billing")) == {}
    with pytest.raises(NotCoordinator):  # a slot that does not exist fences every commit
        fence = CoordinatorFence(TopicPartition("slots", 9), new.epoch)
        run(store.commit_offsets("billing", {TP0: committed(5)}, fence))
