"""Transactions port: every adapter keeps transactions and their pending offsets alike, fenced
by the coordinator slot's lease epoch, and settles the offsets with the decision."""

from __future__ import annotations

import pytest

from streamhouse.errors import NotCoordinator, UnknownTopicOrPartition
from streamhouse.log.txn_state import Transaction, TxnState
from streamhouse.names import TopicPartition
from streamhouse.ports.groups import CoordinatorFence
from streamhouse.ports.metadata import MetadataStore
from tests.unit.metadata.builders import T0_MS, TP0, TP1, TTL_MS, committed, run

SLOT = TopicPartition("slots", 3)
OTHER_SLOT = TopicPartition("slots", 4)
PRODUCER_ID = 7


def _slots(store: MetadataStore) -> CoordinatorFence:
    """Topics `orders` (2 partitions) and `slots` (5); slot 3 leased by agent-a."""
    run(store.create_topic("orders", 2, {}, T0_MS))
    run(store.create_topic("slots", 5, {}, T0_MS))
    lease = run(store.acquire_lease(SLOT, "agent-a", TTL_MS))
    assert lease is not None
    return CoordinatorFence(SLOT, lease.epoch)


def _txn(state: TxnState = TxnState.ONGOING, **changes: object) -> Transaction:
    values: dict[str, object] = {
        "transactional_id": "tx-1",
        "producer_id": PRODUCER_ID,
        "producer_epoch": 2,
        "state": state,
        "timeout_ms": 60_000,
        "partitions": frozenset({TP0, TP1}),
        "groups": frozenset({"billing"}),
        "start_ms": T0_MS,
        "update_ms": T0_MS + 5,
        **changes,
    }
    return Transaction(**values)  # type: ignore[arg-type]


def test_a_transaction_is_stored_replaced_and_listed_by_slot(store: MetadataStore) -> None:
    fence = _slots(store)
    assert run(store.get_transaction("tx-1")) is None
    run(store.put_transaction(_txn(), fence))
    assert run(store.get_transaction("tx-1")) == _txn()
    emptied = _txn(TxnState.EMPTY, partitions=frozenset(), groups=frozenset(), start_ms=-1)
    run(store.put_transaction(emptied, fence))
    assert run(store.get_transaction("tx-1")) == emptied
    run(store.put_transaction(_txn(transactional_id="tx-0"), fence))
    listed = run(store.list_transactions())
    assert [t.transactional_id for t in listed] == ["tx-0", "tx-1"]
    assert [t.transactional_id for t in run(store.list_transactions(SLOT))] == ["tx-0", "tx-1"]
    assert run(store.list_transactions(OTHER_SLOT)) == []


def test_a_write_from_a_slot_that_moved_on_writes_nothing(store: MetadataStore) -> None:
    fence = _slots(store)
    run(store.put_transaction(_txn(), fence))
    run(store.release_lease(SLOT, "agent-a"))
    moved = run(store.acquire_lease(SLOT, "agent-b", TTL_MS))
    assert moved is not None and moved.epoch > fence.epoch
    with pytest.raises(NotCoordinator):
        run(store.put_transaction(_txn(TxnState.PREPARE_COMMIT), fence))
    assert run(store.get_transaction("tx-1")) == _txn()
    with pytest.raises(NotCoordinator):
        run(store.commit_pending_offsets("billing", PRODUCER_ID, {TP0: committed(5)}, fence))
    assert run(store.pending_offsets("billing")) == {}


def test_a_commit_decision_moves_the_producers_pending_offsets(store: MetadataStore) -> None:
    fence = _slots(store)
    run(store.put_transaction(_txn(), fence))
    run(store.commit_offsets("billing", {TP0: committed(1)}))
    run(store.commit_pending_offsets("billing", PRODUCER_ID, {TP0: committed(5)}, fence))
    run(store.commit_pending_offsets("billing", PRODUCER_ID, {TP1: committed(9)}))
    run(store.commit_pending_offsets("billing", PRODUCER_ID + 1, {TP1: committed(3)}))
    assert run(store.pending_offsets("billing")) == {
        PRODUCER_ID: {TP0: committed(5), TP1: committed(9)},
        PRODUCER_ID + 1: {TP1: committed(3)},
    }
    assert run(store.fetch_offsets("billing")) == {TP0: committed(1)}  # pending stay unseen
    run(store.put_transaction(_txn(TxnState.PREPARE_COMMIT), fence))
    assert run(store.fetch_offsets("billing")) == {TP0: committed(5), TP1: committed(9)}
    assert run(store.pending_offsets("billing")) == {PRODUCER_ID + 1: {TP1: committed(3)}}


def test_an_abort_decision_drops_the_producers_pending_offsets(store: MetadataStore) -> None:
    fence = _slots(store)
    run(store.put_transaction(_txn(), fence))
    run(store.commit_pending_offsets("billing", PRODUCER_ID, {TP0: committed(5)}))
    run(store.put_transaction(_txn(TxnState.PREPARE_ABORT), fence))
    assert run(store.fetch_offsets("billing")) == {}
    assert run(store.pending_offsets("billing")) == {}
    run(store.put_transaction(_txn(TxnState.COMPLETE_ABORT), fence))
    assert run(store.get_transaction("tx-1")) == _txn(TxnState.COMPLETE_ABORT)


def test_a_repeated_decision_settles_nothing_more(store: MetadataStore) -> None:
    fence = _slots(store)
    run(store.put_transaction(_txn(TxnState.PREPARE_COMMIT), fence))
    # offsets of the producer's next transaction are not settled by a rewrite of the last one
    run(store.commit_pending_offsets("billing", PRODUCER_ID, {TP0: committed(5)}))
    run(store.put_transaction(_txn(TxnState.PREPARE_COMMIT), fence))
    assert run(store.fetch_offsets("billing")) == {}
    assert run(store.pending_offsets("billing")) == {PRODUCER_ID: {TP0: committed(5)}}


def test_pending_offsets_of_an_unknown_partition_store_nothing(store: MetadataStore) -> None:
    _slots(store)
    wanted = {TP0: committed(5), TopicPartition("orders", 2): committed(1)}
    with pytest.raises(UnknownTopicOrPartition):
        run(store.commit_pending_offsets("billing", PRODUCER_ID, wanted))
    assert run(store.pending_offsets("billing")) == {}


def test_deleting_a_topic_deletes_its_pending_offsets(store: MetadataStore) -> None:
    _slots(store)
    run(store.commit_pending_offsets("billing", PRODUCER_ID, {TP0: committed(5)}))
    run(store.delete_topic("orders"))
    assert run(store.pending_offsets("billing")) == {}


def test_idle_transactional_ids_of_the_slot_expire(store: MetadataStore) -> None:
    fence = _slots(store)
    other = run(store.acquire_lease(OTHER_SLOT, "agent-a", TTL_MS))
    assert other is not None
    old_ms, new_ms = T0_MS, T0_MS + 1_000
    elsewhere = CoordinatorFence(OTHER_SLOT, other.epoch)
    for transactional_id, state, update_ms, where in (
        ("idle", TxnState.EMPTY, old_ms, fence),
        ("done", TxnState.COMPLETE_COMMIT, old_ms, fence),
        ("open", TxnState.ONGOING, old_ms, fence),  # in a transaction: kept
        ("recent", TxnState.EMPTY, new_ms, fence),
        ("other", TxnState.EMPTY, old_ms, elsewhere),  # another slot's
    ):
        txn = _txn(state, transactional_id=transactional_id, update_ms=update_ms)
        run(store.put_transaction(txn, where))
    assert run(store.expire_transactions(fence, new_ms)) == 2
    remaining = [t.transactional_id for t in run(store.list_transactions())]
    assert remaining == ["open", "other", "recent"]
    run(store.release_lease(SLOT, "agent-a"))
    assert run(store.acquire_lease(SLOT, "agent-b", TTL_MS)) is not None
    with pytest.raises(NotCoordinator):
        run(store.expire_transactions(fence, new_ms + 10**9))
    assert len(run(store.list_transactions())) == 3
