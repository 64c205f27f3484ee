"""DR phase 1: a metadata snapshot reaches the bucket after a committed flush, coalesced (one per
interval), and a clean shutdown writes a final one covering the newest durable offsets."""

from __future__ import annotations

import urllib.request

from streamhouse.log.snapshot_format import SNAPSHOT_PREFIX, decode_snapshot
from tests.dr.world import DrWorld, consume, produce, within

TOPIC = "dr-snapshots"
INTERVAL_MS = "600000"  # one snapshot at the first flush, then none until shutdown


def _durable_ends(world: DrWorld, key: str) -> dict[int, int]:
    dump = decode_snapshot(world.get(key)).dump
    rows = dump.tables["partitions"]
    topic, partition, end = (
        rows.columns.index(c) for c in ("topic", "partition", "durable_end_offset")
    )
    return {row[partition]: row[end] for row in rows.rows if row[topic] == TOPIC}  # type: ignore[misc]


def test_a_snapshot_follows_the_first_flush_and_a_final_one_the_shutdown(world: DrWorld) -> None:
    with world.start_agent("--snapshot-interval-ms", INTERVAL_MS) as agent:
        first = produce(agent.bootstrap, TOPIC, 30, "first")
        within(20, lambda: bool(world.keys(SNAPSHOT_PREFIX)), "a snapshot after the flush")
        [early] = world.keys(SNAPSHOT_PREFIX)
        with urllib.request.urlopen(f"{agent.http_base}/metrics", timeout=10) as answer:
            metrics = answer.read().decode()
        assert "streamhouse_snapshots_written_total 1.0" in metrics
        assert "streamhouse_snapshot_last_seq 0.0" in metrics
        assert sum(_durable_ends(world, early).values()) > 0
        more = produce(agent.bootstrap, TOPIC, 60, "more")  # many flushes, one interval
        assert list(world.keys(SNAPSHOT_PREFIX)) == [early], "coalesced to one per interval"
        agent.stop_cleanly()
    snapshots = sorted(world.keys(SNAPSHOT_PREFIX))
    assert len(snapshots) == 2 and snapshots[0] == early
    records = sorted(first + more)
    final_ends = _durable_ends(world, snapshots[-1])
    assert final_ends == {p: 1 + max(r[1] for r in records if r[0] == p) for p in range(3)}
    snapshot = decode_snapshot(world.get(snapshots[-1]))
    assert snapshot.dump.schema_revision and snapshot.seq > decode_snapshot(world.get(early)).seq
    with world.start_agent() as agent:
        assert consume(agent.bootstrap, TOPIC, len(records)) == records
        agent.stop_cleanly()


def test_a_damaged_snapshot_is_refused_by_its_checksum(world: DrWorld) -> None:
    with world.start_agent("--snapshot-interval-ms", INTERVAL_MS) as agent:
        produce(agent.bootstrap, TOPIC, 10, "x")
        agent.stop_cleanly()
    key = sorted(world.keys(SNAPSHOT_PREFIX))[-1]
    data = bytearray(world.get(key))
    data[-10] ^= 0xFF
    try:
        decode_snapshot(bytes(data))
    except Exception as refused:
        assert "checksum" in str(refused)
    else:
        raise AssertionError("a damaged snapshot decoded")
