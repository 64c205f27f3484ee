"""DR phase 5: an object removed from the bucket and one damaged in place are found by the
reconciler (the damaged one by `--verify`) and reported with their partitions and offsets;
the agent answers fetches of those offsets with a clear error at once and keeps serving
every other topic, and its metrics count the damage."""

from __future__ import annotations

import asyncio
import time
import urllib.request

from confluent_kafka import Consumer, KafkaError, TopicPartition

from streamhouse.io.sql.store import open_sql_metadata
from streamhouse.names import TopicPartition as Tp
from tests.dr.world import CLIENT_TIMEOUT_S, POLL_S, DrWorld, consume, produce

DAMAGED = "dr-damaged"
HEALTHY = "dr-healthy"


def _objects_of(world: DrWorld, topic: str) -> list[str]:
    """The keys of the objects holding the topic's partition 0, in offset order."""

    async def rows() -> list[str]:
        store = open_sql_metadata(world.metadata_url)
        try:
            return [row.object_key for row in await store.list_segments(Tp(topic, 0))]
        finally:
            await store.close()

    return list(dict.fromkeys(asyncio.run(rows())))


def _first_error(bootstrap: str) -> tuple[KafkaError, float]:
    """A consumer of the damaged topic from offset 0: its first error, and how soon."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "dr-damage", "fetch.error.backoff.ms": 100}
    )
    try:
        consumer.assign([TopicPartition(DAMAGED, 0, 0)])
        started = time.monotonic()
        while time.monotonic() - started < CLIENT_TIMEOUT_S:
            message = consumer.poll(POLL_S)
            if message is not None and message.error() is not None:
                return message.error(), time.monotonic() - started
        raise AssertionError("no error for the damaged offsets")
    finally:
        consumer.close()


def _damaged_gauge(http_base: str) -> float:
    with urllib.request.urlopen(http_base + "/metrics", timeout=CLIENT_TIMEOUT_S) as answer:
        metrics = answer.read().decode()
    prefix = "streamhouse_objects_damaged "
    return float(next(line for line in metrics.splitlines() if line.startswith(prefix)).split()[1])


def test_missing_and_corrupt_objects_are_reported_and_the_rest_serves(world: DrWorld) -> None:
    with world.start_agent("--reconcile-interval-ms", "0") as agent:
        produce(agent.bootstrap, DAMAGED, 30, "first", partitions=1)
        produce(agent.bootstrap, DAMAGED, 30, "second", partitions=1)
        healthy = produce(agent.bootstrap, HEALTHY, 45, "healthy")
        agent.stop_cleanly()
    gone, corrupted, *_ = _objects_of(world, DAMAGED)
    world.delete(gone)
    data = bytearray(world.get(corrupted))
    data[20] ^= 0xFF  # inside its first block: same size, a checksum that fails
    world.put(corrupted, bytes(data))

    listed = world.reconcile(damage_expected=True)
    assert (listed["missing"], listed["corrupt"]) == (1, 0)
    verified = world.reconcile("--verify", damage_expected=True)
    assert (verified["missing"], verified["corrupt"]) == (1, 1)
    found = {d["key"]: d for d in verified["damaged"]}
    assert found[gone]["damage"] == "missing" and found[corrupted]["damage"] == "corrupt"
    assert found[gone]["ranges"][0]["topic"] == DAMAGED
    assert found[gone]["ranges"][0]["first_offset"] == 0

    with world.start_agent("--reconcile-interval-ms", "300") as agent:
        error, after_s = _first_error(agent.bootstrap)
        assert error.code() == KafkaError.INVALID_MSG and after_s < CLIENT_TIMEOUT_S / 3
        assert consume(agent.bootstrap, HEALTHY, len(healthy)) == healthy
        assert _damaged_gauge(agent.http_base) >= 1  # the read found it, a run may have too
        agent.stop_cleanly()
    assert gone in agent.log_path.read_text()
