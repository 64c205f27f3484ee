"""Transactions in the log: markers end them, the last stable offset bounds read_committed
reads, aborted ranges are listed from the tail and from objects, and all of it survives a
restart (from the WAL or from the metadata store)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from streamhouse.config import Settings
from streamhouse.engine.log_store import AppendResult, LogStore
from streamhouse.errors import ErrorCode, ProducerRefused
from streamhouse.kafka.batch_header import iter_batches
from streamhouse.kafka.control_records import TxnMarker
from streamhouse.kafka.records import SimpleRecord, build_batch
from streamhouse.log.partition_txns import AbortedTxn
from streamhouse.names import TopicPartition
from tests.unit.log_world import LogWorld

TP = TopicPartition("t", 0)
PID = 42
SEED = 8


def _txn_batch(sequence: int, count: int = 2, epoch: int = 0, pid: int = PID) -> bytes:
    records = [SimpleRecord(None, b"v%d" % (sequence + i), (), 5) for i in range(count)]
    return build_batch(
        records,
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=sequence,
        is_transactional=True,
    )


async def _synced(result: Awaitable[AppendResult]) -> AppendResult:
    appended = await result
    await appended.synced
    return appended


async def _marker(store: LogStore, committed: bool, epoch: int = 0) -> AppendResult:
    """A marker, synced (its durable future is left to the flush)."""
    return await _synced(store.write_marker(TP, TxnMarker(PID, epoch, committed, 3)))


def _offsets(batches: object) -> list[tuple[int, int]]:
    found = []
    for batch in batches:  # type: ignore[attr-defined]
        for header, _ in iter_batches(bytes(batch), from_producer=False):
            found.append((header.base_offset, header.last_offset))
    return found


def _run(test: Callable[[LogWorld], Awaitable[None]]) -> None:
    asyncio.run(test(LogWorld(Settings(), SEED)))


def test_read_committed_stops_at_an_open_transaction_until_its_marker_is_synced() -> None:
    async def main(world: LogWorld) -> None:
        store = await world.open(TP.topic, 1)
        plain = await _synced(
            store.append(TP, build_batch([SimpleRecord(None, b"x")]), durable=False)
        )
        assert plain.base_offset == 0
        await _synced(store.append(TP, _txn_batch(0), durable=False))  # offsets 1-2
        committed = await store.reads.read(TP, 0, 1 << 20, read_committed=True)
        assert committed.last_stable_offset == 1 and committed.high_watermark == 3
        assert _offsets(committed.batches) == [(0, 0)]
        assert committed.aborted == []
        uncommitted = await store.reads.read(TP, 0, 1 << 20)
        assert _offsets(uncommitted.batches) == [(0, 0), (1, 2)] and uncommitted.aborted is None
        marker = await _marker(store, committed=True)
        assert marker.base_offset == 3
        after = await store.reads.read(TP, 1, 1 << 20, read_committed=True)
        assert after.last_stable_offset == 4
        assert _offsets(after.batches) == [(1, 2), (3, 3)] and after.aborted == []
        await store.close()

    _run(main)


def test_aborted_ranges_are_listed_from_the_tail_and_after_a_restart_from_objects() -> None:
    async def main(world: LogWorld) -> None:
        store = await world.open(TP.topic, 1)
        await _synced(store.append(TP, _txn_batch(0), durable=False))  # 0-1
        await _marker(store, committed=False)  # 2
        await _synced(store.append(TP, _txn_batch(2), durable=False))  # 3-4
        await _marker(store, committed=True)  # 5
        tail = await store.reads.read(TP, 0, 1 << 20, read_committed=True)
        assert tail.aborted == [AbortedTxn(PID, 0, 2)]
        assert (await store.reads.read(TP, 3, 1 << 20, read_committed=True)).aborted == []
        await store.close()  # flushes: every batch in an object, the aborted row stored
        store = await world.open(TP.topic, 1)
        plog = await store.partition(TP)
        assert plog.tail.start_offset == 6  # nothing in memory: a cold read
        cold = await store.reads.read(TP, 0, 1 << 20, read_committed=True)
        assert _offsets(cold.batches) == [(0, 1), (2, 2), (3, 4), (5, 5)]
        assert cold.aborted == [AbortedTxn(PID, 0, 2)] and cold.last_stable_offset == 6
        await store.close()

    _run(main)


@pytest.mark.parametrize("flushed", [True, False], ids=["from-store", "from-wal"])
def test_an_open_transaction_survives_a_restart(flushed: bool) -> None:
    async def main(world: LogWorld) -> None:
        store = await world.open(TP.topic, 1)
        await _synced(store.append(TP, build_batch([SimpleRecord(None, b"x")]), durable=False))
        await _synced(store.append(TP, _txn_batch(0), durable=False))  # 1-2
        await store.close(flush=flushed)
        store = await world.open(TP.topic, 1)
        plog = await store.partition(TP)
        assert plog.state.high_watermark == 3 and plog.last_stable_offset == 1
        await _synced(store.append(TP, _txn_batch(2), durable=False))  # same transaction
        await _marker(store, committed=False)
        assert plog.last_stable_offset == 6
        read = await store.reads.read(TP, 0, 1 << 20, read_committed=True)
        assert read.aborted == [AbortedTxn(PID, 1, 5)]
        await store.close()

    _run(main)


def test_markers_carry_the_producer_epoch() -> None:
    async def main(world: LogWorld) -> None:
        store = await world.open(TP.topic, 1)
        await _synced(store.append(TP, _txn_batch(0), durable=False))
        await _marker(store, committed=False, epoch=1)  # the coordinator fenced epoch 0
        with pytest.raises(ProducerRefused) as zombie:
            await store.append(TP, _txn_batch(2, epoch=0), durable=False)
        assert zombie.value.code == ErrorCode.INVALID_PRODUCER_EPOCH
        with pytest.raises(ProducerRefused) as stale:
            await store.write_marker(TP, TxnMarker(PID, 0, True, 3))
        assert stale.value.code == ErrorCode.INVALID_PRODUCER_EPOCH
        with pytest.raises(ProducerRefused):  # the new epoch starts its sequence at 0
            await store.append(TP, _txn_batch(2, epoch=1), durable=False)
        resumed = await _synced(store.append(TP, _txn_batch(0, epoch=1), durable=False))
        await store.close()  # the marker's epoch is stored with the flush
        store = await world.open(TP.topic, 1)
        with pytest.raises(ProducerRefused) as after_restart:
            await store.append(TP, _txn_batch(2, epoch=0), durable=False)
        assert after_restart.value.code == ErrorCode.INVALID_PRODUCER_EPOCH
        assert (await store.partition(TP)).last_stable_offset == resumed.base_offset
        await store.close()

    _run(main)


def test_a_producer_may_not_write_outside_its_open_transaction() -> None:
    async def main(world: LogWorld) -> None:
        store = await world.open(TP.topic, 1)
        await _synced(store.append(TP, _txn_batch(0), durable=False))
        idempotent = build_batch(
            [SimpleRecord(None, b"x")], producer_id=PID, producer_epoch=0, base_sequence=2
        )
        with pytest.raises(ProducerRefused) as refused:
            await store.append(TP, idempotent, durable=False)
        assert refused.value.code == ErrorCode.INVALID_TXN_STATE
        await store.close()

    _run(main)


def test_describe_producers_shows_where_open_transactions_began() -> None:
    async def main(world: LogWorld) -> None:
        store = await world.open(TP.topic, 1)
        await _synced(store.append(TP, _txn_batch(0, count=3), durable=False))
        (producer,) = await store.describe_producers(TP)
        assert (producer.producer_id, producer.producer_epoch) == (PID, 0)
        assert (producer.last_sequence, producer.current_txn_start_offset) == (2, 0)
        await _marker(store, committed=True, epoch=1)
        (ended,) = await store.describe_producers(TP)
        assert (ended.producer_epoch, ended.last_sequence) == (1, -1)
        assert ended.current_txn_start_offset == -1
        await store.close()

    _run(main)
