"""Producers port: every adapter hands out producer ids and keeps producers' state alike."""

from __future__ import annotations

from dataclasses import replace

from streamhouse.log.partition_txns import AbortedTxn, TxnBegan, TxnEnded
from streamhouse.ports.metadata import MetadataStore
from tests.unit.metadata.builders import (
    T0_MS,
    TP0,
    TP1,
    flush,
    orders_led_by_a,
    produced,
    run,
)

# ---------------------------------------------------------------- producer ids


def test_producer_ids_are_never_handed_out_twice(store: MetadataStore) -> None:
    allocated = [run(store.allocate_producer_id()) for _ in range(5)]
    assert len(set(allocated)) == 5 and all(pid >= 0 for pid in allocated)


# ---------------------------------------------------------------- producer states


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
                    TP0: [produced(1, 0, 0, 0, 3), produced(1, 0, 3, 3, 3)],
                    TP1: [produced(2, 0, 0, 0, 1)],
                },
            )
        )
    )
    for index in range(6):  # six more batches of producer 1: only the last five stay
        commit = flush(f"obj-{index + 2}", {TP0: 1}, [(TP0, 6 + index, 6 + index)])
        run(
            store.commit_flush(
                replace(commit, producers={TP0: [produced(1, 0, 6 + index, 6 + index, 1)]})
            )
        )
    (state,) = run(store.list_producer_states(TP0))
    assert (state.producer_id, state.producer_epoch) == (1, 0)
    assert [b.first_sequence for b in state.batches] == [7, 8, 9, 10, 11]
    assert [s.producer_id for s in run(store.list_producer_states(TP1))] == [2]
    fenced = flush("obj-stale", {TP1: 0}, [(TP1, 1, 1)])
    run(store.commit_flush(replace(fenced, producers={TP1: [produced(2, 0, 1, 1, 1)]})))
    (kept,) = run(store.list_producer_states(TP1))
    assert [b.first_sequence for b in kept.batches] == [0]


def test_producer_states_expire_and_go_with_their_topic(store: MetadataStore) -> None:
    orders_led_by_a(store)
    commit = flush("obj-1", {TP0: 1}, [(TP0, 0, 0)])
    run(store.commit_flush(replace(commit, producers={TP0: [produced(1, 0, 0, 0, 1)]})))
    later = flush("obj-2", {TP0: 1}, [(TP0, 1, 1)])
    expiring = replace(
        later,
        obj=replace(later.obj, created_ms=T0_MS + 10),
        producers={TP0: [produced(2, 0, 0, 1, 1)]},
        producers_expire_before_ms=T0_MS + 1,
    )
    run(store.commit_flush(expiring))
    assert [s.producer_id for s in run(store.list_producer_states(TP0))] == [2]
    run(store.delete_topic("orders"))
    run(store.create_topic("orders", 1, {}, T0_MS))
    assert run(store.list_producer_states(TP0)) == []


# ---------------------------------------------------------------- transactions in partitions


def test_flushes_keep_open_and_aborted_transactions_of_committed_partitions(
    store: MetadataStore,
) -> None:
    orders_led_by_a(store)
    first = flush("obj-1", {TP0: 1, TP1: 1}, [(TP0, 0, 5), (TP1, 0, 0)])
    changes = {
        TP0: [TxnBegan(1, 0), TxnBegan(2, 1), TxnEnded(1, 0, 3, committed=False)],
        TP1: [TxnBegan(3, 0)],
    }
    run(store.commit_flush(replace(first, txns=changes)))
    assert run(store.list_open_txns(TP0)) == {2: 1}
    assert run(store.list_open_txns(TP1)) == {3: 0}
    second = flush("obj-2", {TP0: 1}, [(TP0, 6, 9)])
    ends = {TP0: [TxnEnded(2, 1, 6, committed=True), TxnBegan(1, 7), TxnEnded(1, 7, 9, False)]}
    run(store.commit_flush(replace(second, txns=ends)))
    assert run(store.list_open_txns(TP0)) == {}
    assert run(store.list_aborted_txns(TP0, 0, 100)) == [AbortedTxn(1, 0, 3), AbortedTxn(1, 7, 9)]
    assert run(store.list_aborted_txns(TP0, 4, 6)) == []
    assert run(store.list_aborted_txns(TP0, 3, 3)) == [AbortedTxn(1, 0, 3)]
    assert run(store.list_aborted_txns(TP0, 8, 8)) == [AbortedTxn(1, 7, 9)]
    fenced = flush("obj-stale", {TP1: 0}, [(TP1, 1, 1)])
    run(store.commit_flush(replace(fenced, txns={TP1: [TxnEnded(3, 0, 1, False)]})))
    assert run(store.list_open_txns(TP1)) == {3: 0}  # the fenced flush changed nothing
    run(store.delete_topic("orders"))
    run(store.create_topic("orders", 2, {}, T0_MS))
    assert run(store.list_open_txns(TP1)) == {} and run(store.list_aborted_txns(TP0, 0, 99)) == []
