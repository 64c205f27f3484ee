"""The world every disaster-recovery phase runs in: one agent process on a bucket of moto's S3
server, its metadata in SQLite or PostgreSQL (a store the test can lose), the bucket read and
damaged directly through boto3, and real Kafka clients that produce and read records back
byte for byte."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamhouse.testing.agent_process import AgentProcess, start_agent_process
from streamhouse.testing.cluster import agent_environment
from streamhouse.testing.moto_server import dummy_credentials
from streamhouse.testing.postgres import PostgresServer

FLUSH_INTERVAL_MS = "50"
GROUP_DELAY_MS = "300"  # a new group's first generation comes quickly
CLIENT_TIMEOUT_S = 30.0
POLL_S = 0.2

# (partition, offset, key, value, headers, timestamp) as a consumer sees a record
Record = tuple[int, int, bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...], int]


@dataclass
class DrWorld:
    """One agent's storage, which the test may lose or damage, and the agent on it."""

    backend: str  # "sqlite" or "postgres"
    base_dir: Path
    metadata_url: str
    bucket: str
    prefix: str
    s3_endpoint: str
    postgres: PostgresServer | None = None
    database: str = ""

    # ------------------------------------------------------------ the agent

    def storage_args(self) -> tuple[str, ...]:
        return (
            "--metadata-url",
            self.metadata_url,
            "--object-store",
            f"s3://{self.bucket}/{self.prefix}",
            "--s3-endpoint",
            self.s3_endpoint,
        )

    def start_agent(self, *extra: str, name: str = "agent") -> AgentProcess:
        """An agent on this world's storage, its WAL under base_dir/`name`."""
        return start_agent_process(
            self.base_dir / name,
            *self.storage_args(),
            "--flush-interval-ms",
            FLUSH_INTERVAL_MS,
            "--group-initial-rebalance-delay-ms",
            GROUP_DELAY_MS,
            *extra,
            env=agent_environment(),
        )

    def streamctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`streamctl ARGS` with this world's storage options, as an operator runs it."""
        code = "from streamhouse.cli.streamctl import app; app(prog_name='streamctl')"
        return subprocess.run(
            [sys.executable, "-c", code, *args, *self.storage_args()],
            env=agent_environment(),
            capture_output=True,
            text=True,
            timeout=300,
        )

    def reconcile(self, *args: str, damage_expected: bool = False) -> dict[str, Any]:
        """`streamctl admin reconcile --output json ARGS`: its report (exit 1 only with
        `damage_expected`, which is how the command says damage was found)."""
        done = self.streamctl("admin", "reconcile", "--output", "json", *args)
        assert done.returncode == (1 if damage_expected else 0), done.stderr + done.stdout
        report: dict[str, Any] = json.loads(done.stdout)
        return report

    # ------------------------------------------------------------ the disasters

    def lose_metadata(self) -> None:
        """The metadata store is gone; a new, empty one takes its place."""
        if self.backend == "sqlite":
            for file in self.base_dir.glob("metadata.db*"):
                file.unlink()
            return
        assert self.postgres is not None
        self.postgres.drop_database(self.database)
        self.postgres.create_database(self.database)

    def sql(self, statement: str) -> None:
        """Run one statement on the metadata store behind the agent's back."""
        from sqlalchemy import create_engine, text

        url = self.metadata_url.replace("postgresql://", "postgresql+psycopg://")
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text(statement))
        finally:
            engine.dispose()

    # ------------------------------------------------------------ the bucket

    def s3(self) -> Any:
        return boto3.client("s3", endpoint_url=self.s3_endpoint, region_name="us-east-1", **_keys())

    def keys(self, under: str) -> dict[str, int]:
        """Key (below the agent's prefix) -> size of every object under `under`."""
        found: dict[str, int] = {}
        pages = self.s3().get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/{under}"):
            for item in page.get("Contents", []):
                found[item["Key"].removeprefix(f"{self.prefix}/")] = item["Size"]
        return found

    def get(self, key: str) -> bytes:
        body = self.s3().get_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}")["Body"]
        return bytes(body.read())

    def put(self, key: str, data: bytes) -> None:
        self.s3().put_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}", Body=data)

    def delete(self, key: str) -> None:
        self.s3().delete_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}")


def _keys() -> dict[str, str]:
    credentials = dummy_credentials()
    return {
        "aws_access_key_id": credentials["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": credentials["AWS_SECRET_ACCESS_KEY"],
    }


def fresh_world(
    backend: str, base_dir: Path, s3_endpoint: str, postgres: PostgresServer | None
) -> DrWorld:
    bucket = f"dr-{uuid.uuid4().hex[:12]}"
    if backend == "sqlite":
        url = f"sqlite:///{base_dir / 'metadata.db'}"
        return DrWorld(backend, base_dir, url, bucket, "cluster", s3_endpoint)
    assert postgres is not None
    database = f"dr_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(database)
    return DrWorld(backend, base_dir, url, bucket, "cluster", s3_endpoint, postgres, database)


# ---------------------------------------------------------------- clients


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, partitions)])
    futures[topic].result(CLIENT_TIMEOUT_S)


def produce(bootstrap: str, topic: str, count: int, tag: str, partitions: int = 3) -> list[Record]:
    """`count` records with keys, headers and timestamps (some null keys and values), acks=all
    from an idempotent producer; every one acknowledged, as stored. The topic is created with
    `partitions` unless it exists."""
    if (
        topic
        not in AdminClient({"bootstrap.servers": bootstrap})
        .list_topics(timeout=CLIENT_TIMEOUT_S)
        .topics
    ):
        create_topic(bootstrap, topic, partitions)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    acked: list[Record] = []
    failures: list[str] = []

    def delivered_as(sent: Record) -> Callable[[Any, Any], None]:
        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                failures.append(str(error))
                return
            acked.append((message.partition(), message.offset(), *sent[2:]))

        return delivered

    for index in range(count):
        key = None if index % 7 == 3 else f"{tag}-key-{index}".encode()
        value = None if index % 11 == 5 else f"{tag}-value-{index}-".encode() * (1 + index % 4)
        headers = (("tag", tag.encode()), ("n", str(index).encode()), ("empty", None))
        timestamp = 1_700_000_000_000 + index
        producer.produce(
            topic,
            key=key,
            value=value,
            headers=list(headers),
            partition=index % partitions,
            timestamp=timestamp,
            on_delivery=delivered_as((0, 0, key, value, headers, timestamp)),
        )
    remaining = producer.flush(CLIENT_TIMEOUT_S)
    assert remaining == 0 and not failures, (remaining, failures[:3])
    return sorted(acked)


def consume(
    bootstrap: str,
    topic: str,
    expected_count: int,
    group: str | None = None,
    commit_after: int | None = None,
    partitions: int = 3,
) -> list[Record]:
    """Read `expected_count` records (from the group's committed offsets, or from the start
    without a group); with `commit_after`, commit synchronously once that many are read and
    stop there."""
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group or f"reader-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
    }
    consumer = Consumer(config)
    try:
        if group is None:
            consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        else:
            consumer.subscribe([topic])
        wanted = expected_count if commit_after is None else commit_after
        found = _poll_until(consumer, wanted)
        if commit_after is not None:
            consumer.commit(asynchronous=False)
        return sorted(found)
    finally:
        consumer.close()


def _poll_until(consumer: Consumer, wanted: int) -> list[Record]:
    found: list[Record] = []
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    while len(found) < wanted:
        assert time.monotonic() < deadline, f"read {len(found)} of {wanted} records"
        message = consumer.poll(POLL_S)
        if message is None:
            continue
        assert message.error() is None, message.error()
        found.append(_record(message))
    return found


def _record(message: Any) -> Record:
    headers = tuple((name, value) for name, value in (message.headers() or []))
    return (
        message.partition(),
        message.offset(),
        message.key(),
        message.value(),
        headers,
        message.timestamp()[1],
    )


def within(timeout_s: float, holds: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not holds():
        assert time.monotonic() < deadline, f"{what} not within {timeout_s} s"
        time.sleep(POLL_S)
