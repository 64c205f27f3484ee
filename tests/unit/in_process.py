"""An agent run in the test's own process and event loop: read a partition's whole log back,
and stop it as kill -9 would (the suites of the storage engine and of the rebuild share these)."""

from __future__ import annotations

import asyncio

from streamhouse.agent import Agent
from streamhouse.kafka.batch_header import parse_header
from streamhouse.names import TopicPartition

READ_BYTES_MAX = 1 << 20


async def read_all(agent: Agent, tp: TopicPartition) -> list[bytes]:
    """Every batch of the partition from offset 0, as stored."""
    found: list[bytes] = []
    offset = 0
    while True:
        result = await agent.log.reads.read(tp, offset, READ_BYTES_MAX)
        if not result.batches:
            return found
        found += result.batches
        offset = parse_header(result.batches[-1]).next_offset


async def kill(agent: Agent) -> None:
    """Stop without flushing, closing or a final snapshot, as kill -9 would."""
    agent.log.flusher.stop()
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            task.cancel()
    await asyncio.sleep(0)
    await agent.kafka.close()
    await agent.metadata.close()
