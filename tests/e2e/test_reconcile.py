"""The reconciler against a data directory a real agent wrote: `streamctl admin reconcile` (no
agent running) deletes an orphan past the grace and reports a missing object with its
partition and offsets; a Fetch of the missing object's offsets answers a clear error at once
while another partition of the same consumer keeps being served."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamhouse.io.sql.store import open_sql_metadata
from streamhouse.names import TopicPartition as Tp
from tests.e2e.conftest import start_agent

TOPIC = "recon"
RECORDS = 20
TIMEOUT_S = 20
ORPHAN = "orgs/default/objects/20200101/agent-x-orphan.obj"
SNAPSHOT = "metadata/snapshots/someone-elses.json"
DAY_AGO_S = 24 * 3600


def _produce(bootstrap: str, partition: int, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    failures: list[object] = []
    for index in range(count):
        producer.produce(
            TOPIC,
            value=f"p{partition}-{index}".encode(),
            partition=partition,
            on_delivery=lambda error, _: error and failures.append(error),
        )
    assert producer.flush(TIMEOUT_S) == 0
    assert failures == []


def _written(data_dir: Path) -> str:
    """An agent's data: partition 0's records in objects of their own, then partition 1's
    (acks=all: in a committed object before the next produce). Returns the key of an object
    holding partition 1's records and no other partition's."""
    agent = start_agent(data_dir, "--reconcile-interval-ms", "0")
    try:
        admin = AdminClient({"bootstrap.servers": agent.bootstrap})
        admin.create_topics([NewTopic(TOPIC, 2, 1)])[TOPIC].result(TIMEOUT_S)
        _produce(agent.bootstrap, 0, RECORDS)
        _produce(agent.bootstrap, 1, RECORDS)
    finally:
        assert agent.stop() == 0
    return _object_of(data_dir, Tp(TOPIC, 1))


def _object_of(data_dir: Path, tp: Tp) -> str:
    async def rows() -> list[str]:
        store = open_sql_metadata(f"sqlite:///{data_dir / 'metadata.db'}")
        try:
            return [row.object_key for row in await store.list_segments(tp)]
        finally:
            await store.close()

    keys = asyncio.run(rows())
    assert keys, f"no segment rows for {tp}"
    return keys[0]


def _put_old(data_dir: Path, key: str, data: bytes) -> None:
    path = data_dir / "objects" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    old = time.time() - DAY_AGO_S
    os.utime(path, (old, old))


def _reconcile(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = "from streamhouse.cli.streamctl import app; app(prog_name='streamctl')"
    return subprocess.run(
        [sys.executable, "-c", code, "admin", "reconcile", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_streamctl_admin_reconcile_on_an_agents_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    damaged = _written(data_dir)
    original = (data_dir / "objects" / damaged).read_bytes()
    (data_dir / "objects" / damaged).unlink()
    _put_old(data_dir, ORPHAN, b"an upload whose commit never came")
    _put_old(data_dir, SNAPSHOT, b"{}")

    dry = _reconcile(data_dir, "--dry-run", "--output", "json")
    assert dry.returncode == 1, dry.stderr  # damage found
    report = json.loads(dry.stdout)
    assert (report["dry_run"], report["orphans_deleted"], report["missing"]) == (True, 1, 1)
    assert report["listed"] == report["referenced"] + 1
    [found] = report["damaged"]
    assert (found["key"], found["damage"]) == (damaged, "missing")
    held = [(r["topic"], r["partition"], r["first_offset"]) for r in found["ranges"]]
    assert held == [(TOPIC, 1, 0)]
    assert (data_dir / "objects" / ORPHAN).exists()

    table = _reconcile(data_dir)
    assert table.returncode == 1, table.stderr
    assert "missing" in table.stdout and f"{TOPIC}-1@0" in table.stdout
    assert not (data_dir / "objects" / ORPHAN).exists()
    assert (data_dir / "objects" / SNAPSHOT).exists()  # not under orgs/: never touched

    again = _reconcile(data_dir, "--output", "json")
    second = json.loads(again.stdout)
    assert (second["orphans_deleted"], second["orphans_kept_in_grace"]) == (0, 0)
    assert second["missing"] == 1 and again.returncode == 1

    (data_dir / "objects" / damaged).write_bytes(original[:-1])  # one byte short: corrupt
    _put_old(data_dir, ORPHAN, b"x")
    os.utime(data_dir / "objects" / ORPHAN)  # uploaded now: in its grace
    corrupt = _reconcile(data_dir, "--output", "json")
    third = json.loads(corrupt.stdout)
    assert (third["corrupt"], third["orphans_kept_in_grace"]) == (1, 1)
    assert corrupt.returncode == 1

    (data_dir / "objects" / damaged).write_bytes(original)  # repaired: nothing to report
    healthy = _reconcile(data_dir, "--verify", "--grace-ms", "0", "--output", "json")
    assert healthy.returncode == 0, healthy.stdout
    fourth = json.loads(healthy.stdout)
    assert (fourth["missing"], fourth["corrupt"], fourth["orphans_deleted"]) == (0, 0, 1)
    assert fourth["blocks_verified"] >= 2


def test_a_fetch_of_a_missing_object_errors_and_other_partitions_serve(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    damaged = _written(data_dir)
    (data_dir / "objects" / damaged).unlink()
    shutil.rmtree(data_dir / "local")  # no WAL to replay into the tail: reads go to objects
    agent = start_agent(data_dir, "--reconcile-interval-ms", "0")
    try:
        consumer = Consumer(
            {
                "bootstrap.servers": agent.bootstrap,
                "group.id": "recon-reader",
                "enable.auto.commit": False,
                "fetch.error.backoff.ms": 100,
            }
        )
        consumer.assign([TopicPartition(TOPIC, 0, 0), TopicPartition(TOPIC, 1, 0)])
        served: list[bytes] = []
        errors: list[KafkaError] = []
        started = time.monotonic()
        while (len(served) < RECORDS or not errors) and time.monotonic() - started < TIMEOUT_S:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                errors.append(message.error())
            else:
                assert message.partition() == 0
                served.append(message.value())
        consumer.close()
        assert served == [f"p0-{index}".encode() for index in range(RECORDS)]
        assert errors, "the damaged partition's fetch never reported an error"
        assert errors[0].code() == KafkaError.INVALID_MSG  # CORRUPT_MESSAGE, code 2
        assert time.monotonic() - started < TIMEOUT_S / 2  # promptly, not after retries
        with urllib.request.urlopen(agent.http_base + "/metrics", timeout=TIMEOUT_S) as answer:
            metrics = answer.read().decode()
        assert "streamhouse_objects_damaged 1.0" in metrics
        agent.check_alive()
    finally:
        assert agent.stop() == 0
    log = agent.log_path.read_text()
    assert damaged in log and f"{TOPIC}-1@0" in log  # the object and its offsets, named


def test_the_agent_reconciles_in_the_background(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _written(data_dir)
    _put_old(data_dir, ORPHAN, b"an upload whose commit never came")
    agent = start_agent(data_dir, "--reconcile-interval-ms", "300")
    try:
        started = time.monotonic()
        while (data_dir / "objects" / ORPHAN).exists():
            assert time.monotonic() - started < TIMEOUT_S, "the orphan was never deleted"
            time.sleep(0.1)
        with urllib.request.urlopen(agent.http_base + "/metrics", timeout=TIMEOUT_S) as answer:
            metrics = answer.read().decode()
        assert "streamhouse_reconcile_orphans_deleted_total 1.0" in metrics
        assert "streamhouse_objects_damaged 0.0" in metrics
    finally:
        assert agent.stop() == 0
