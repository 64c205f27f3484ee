"""Reads each acks=1 record back from the agent that acknowledged it, right after the ack.

Kafka's Produce answer carries no leader epoch, and aiokafka's metadata
(Metadata v5) none either, but the batch a leader appends carries its epoch.
A producer's `ReadBack` fetches, through the producer's own aiokafka client
and from the node that answered, each partition from the lowest offset acked
since its last read-back; the capture (`sim.capture`) records each answer as
one of the producer's `FetchObserved`, so the checkers learn an ack's leader
epoch from the acked record itself -- a deposed leader's acks too, since the
read goes to the agent that acked. Reads run one at a time (the producer is
one reader) and are best effort: a failed one is not retried.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from aiokafka.protocol.fetch import FetchRequest  # type: ignore[import-untyped]

from sim.capture import observed_records

READ_BYTES_MAX = 1 << 20
READ_UNCOMMITTED = 0

Span = tuple[int, int]  # the lowest and highest acked offset not read back yet


class ReadBack:
    """The read-backs of one producer: `acked` queues, `run` reads, `finish` ends `run`."""

    def __init__(self, client: Any, topic: str) -> None:
        self._client = client
        self._topic = topic
        self._pending: dict[tuple[int, int], Span] = {}  # (node id, partition) -> span
        self._wake = asyncio.Event()
        self._finished = False

    def acked(self, node_id: int, partition: int, offset: int) -> None:
        self._merge((node_id, partition), (offset, offset))

    def finish(self) -> None:
        """`run` returns once everything queued so far is read back."""
        self._finished = True
        self._wake.set()

    async def run(self) -> None:
        while self._pending or not self._finished:
            if not self._pending:
                await self._wake.wait()
                self._wake.clear()
                continue
            pending, self._pending = self._pending, {}
            for (node_id, partition), span in sorted(pending.items()):
                await self._read(node_id, partition, span)

    def _merge(self, key: tuple[int, int], span: Span) -> None:
        low, high = self._pending.get(key, span)
        self._pending[key] = (min(low, span[0]), max(high, span[1]))
        self._wake.set()

    async def _read(self, node_id: int, partition: int, span: Span) -> None:
        low, high = span
        wanted = [(self._topic, [(partition, low, READ_BYTES_MAX)])]
        request = FetchRequest(0, 1, READ_BYTES_MAX, READ_UNCOMMITTED, wanted)
        try:
            response = await self._client.send(node_id, request)
        except KafkaError:
            return
        for _, partitions in response.topics:
            for _, error_code, _, *rest in partitions:
                if error_code != 0:
                    continue
                _, after = observed_records(rest[-1], low)
                if low < after <= high:  # more than one answer holds: read on from there
                    self._merge((node_id, partition), (after, high))
