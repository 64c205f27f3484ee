"""Marker delivery on the simulated metadata store: partitions another agent leads get one
WriteTxnMarkers per agent with all of them, an unreachable agent is asked again after a
backoff, a deleted partition settles, a partition this agent leads is written here; and the
handlers' PRODUCER_FENCED is INVALID_PRODUCER_EPOCH to clients too old to know it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sim.clock import VirtualClock
from sim.metadata import SimMetadataStore
from streamhouse.config import Settings
from streamhouse.engine.cluster import AgentAddress, ClusterDirectory
from streamhouse.engine.txn_markers import FIRST_BACKOFF_MS, MarkerDelivery
from streamhouse.errors import ErrorCode, PeerUnreachable
from streamhouse.kafka.control_records import TxnMarker
from streamhouse.names import TopicPartition
from streamhouse.ports.txn_markers import MarkerSender
from streamhouse.server.kafka_transactions import fenced_code
from tests.unit.test_transaction_coordinator import RecordingMarkers

TP0, TP1, TP2 = (TopicPartition("orders", p) for p in range(3))
MARKER = TxnMarker(producer_id=7, producer_epoch=1, committed=True, coordinator_epoch=3)
TTL_MS = 10_000
PEER = AgentAddress("agent-b", 2, "10.0.0.2", 9092)


class FlakyPeer(MarkerSender):
    """Unreachable `failures` times, then writes every marker it is sent."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[str, int, TxnMarker, list[TopicPartition]]] = []

    async def send_markers(
        self, host: str, port: int, marker: TxnMarker, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        self.requests.append((host, port, marker, list(partitions)))
        if self.failures:
            self.failures -= 1
            raise PeerUnreachable("connection refused")
        return dict.fromkeys(partitions, ErrorCode.NONE)


async def _world(peer: FlakyPeer) -> tuple[MarkerDelivery, RecordingMarkers, VirtualClock]:
    """Partitions 0 and 1 leased by agent-b, partition 2 by no one (so written here)."""
    clock = VirtualClock()
    metadata = SimMetadataStore()
    await metadata.create_topic("orders", 3, {}, clock.now_ms())
    for tp in (TP0, TP1):
        assert await metadata.acquire_lease(tp, PEER.agent_id, TTL_MS) is not None
    cluster = ClusterDirectory("agent-a")
    cluster.advertise("10.0.0.1", 9092, 1)
    cluster.update([PEER])
    here = RecordingMarkers()
    delivery = MarkerDelivery(
        Settings(), clock, log=here, topics=metadata, cluster=cluster, sender=peer
    )
    return delivery, here, clock


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_one_request_per_other_leader_and_a_retry_after_a_backoff() -> None:
    async def main() -> None:
        peer = FlakyPeer(failures=1)
        delivery, here, clock = await _world(peer)
        task = asyncio.ensure_future(delivery.deliver([TP0, TP1, TP2], MARKER, lambda: True))
        await _settle()
        assert not task.done()  # the peer did not answer: waiting out the backoff
        assert here.written == [(TP2, MARKER)]
        clock.advance_ms(FIRST_BACKOFF_MS)
        assert await task
        asked = (PEER.host, PEER.port, MARKER, [TP0, TP1])
        assert peer.requests == [asked, asked]

    asyncio.run(main())


def test_a_caller_that_stops_coordinating_stops_the_delivery() -> None:
    async def main() -> None:
        delivery, _, clock = await _world(FlakyPeer(failures=10**6))
        coordinating = [True]
        task = asyncio.ensure_future(delivery.deliver([TP0], MARKER, lambda: coordinating[0]))
        await _settle()  # the first attempt failed: waiting out the backoff
        coordinating[0] = False
        clock.advance_ms(FIRST_BACKOFF_MS)
        await _settle()
        assert task.done() and task.result() is False

    asyncio.run(main())


def test_a_deleted_partition_settles() -> None:
    async def main() -> None:
        delivery, here, _ = await _world(FlakyPeer(failures=0))
        assert await delivery.deliver([TopicPartition("gone", 0)], MARKER, lambda: True)
        assert here.written == []

    asyncio.run(main())


def test_producer_fenced_is_invalid_producer_epoch_to_older_clients() -> None:
    fenced = ErrorCode.PRODUCER_FENCED
    assert fenced_code(fenced, "EndTxn", 1) is ErrorCode.INVALID_PRODUCER_EPOCH
    assert fenced_code(fenced, "EndTxn", 2) is fenced
    assert fenced_code(fenced, "InitProducerId", 3) is ErrorCode.INVALID_PRODUCER_EPOCH
    assert fenced_code(ErrorCode.NONE, "TxnOffsetCommit", 0) is ErrorCode.NONE
