"""Several agent processes as one cluster: they share one PostgreSQL database and one bucket on an
S3 endpoint (moto's server in tests and benchmarks) and need no other flag. Also who leads what
and who is live, as a Metadata answer says; the e2e cluster tests and the cluster benchmark share
these."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from streamhouse.testing.agent_process import AgentProcess, start_agent_process
from streamhouse.testing.moto_server import dummy_credentials

METADATA_TIMEOUT_S = 10
NO_LEADER = -1


@dataclass(frozen=True)
class SharedStores:
    """Where every agent of one cluster keeps its metadata and its objects."""

    metadata_url: str  # postgresql://...
    object_store_url: str  # s3://bucket/prefix
    s3_endpoint: str

    @classmethod
    def fresh_bucket(cls, metadata_url: str, s3_endpoint: str, name: str) -> SharedStores:
        """The stores with a bucket of its own, `name` then a random suffix."""
        return cls(metadata_url, f"s3://{name}-{uuid.uuid4().hex[:12]}/cluster", s3_endpoint)

    def agent_args(self) -> tuple[str, ...]:
        """The flags that make an agent a member of this cluster."""
        return (
            "--metadata-url",
            self.metadata_url,
            "--object-store",
            self.object_store_url,
            "--s3-endpoint",
            self.s3_endpoint,
        )


def agent_environment() -> dict[str, str]:
    """This process's environment with moto's dummy credentials, for agents started from it."""
    return {**os.environ, **dummy_credentials()}


@contextmanager
def running_agents(
    stores: SharedStores, base_dir: Path, count: int, *extra_args: str
) -> Iterator[list[AgentProcess]]:
    """`count` agents of one cluster (data under base_dir/agent-<i>) until the block ends; then
    each is stopped (SIGTERM, killed if it hangs)."""
    with ExitStack() as stack:
        agents = [
            stack.enter_context(
                start_agent_process(
                    base_dir / f"agent-{index}",
                    *stores.agent_args(),
                    *extra_args,
                    env=agent_environment(),
                )
            )
            for index in range(count)
        ]
        yield agents


def partition_leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """partition -> leader node id (NO_LEADER if none), as one Metadata answer says."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    listed = admin.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics[topic]
    if listed.error is not None:
        raise RuntimeError(f"Metadata for {topic}: {listed.error}")
    return {partition: meta.leader for partition, meta in listed.partitions.items()}


def live_nodes(bootstrap: str) -> dict[int, int]:
    """node id -> Kafka port of every live agent, as one Metadata answer says."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    brokers = admin.list_topics(timeout=METADATA_TIMEOUT_S).brokers
    return {node: broker.port for node, broker in brokers.items()}


def led_counts(leaders: dict[int, int]) -> dict[int, int]:
    """node id -> how many partitions it leads, from `partition_leaders`."""
    counts: dict[int, int] = {}
    for node in leaders.values():
        counts[node] = counts.get(node, 0) + 1
    return counts
