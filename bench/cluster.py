"""Cluster benchmark: produce throughput (acks=all, a fixed record count) through one agent and
through three agents on this machine, each cluster on its own database of one throwaway
PostgreSQL and its own bucket of one moto S3 server, the same setup for both, started with the
harness the e2e tests use (streamhouse.testing); ROUNDS rounds each, the median reported. The
topic's partitions are spread over the agents before measuring (each agent is asked first for
its share), and the leaders per agent are reported next to the figures."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from bench.kafka import produce
from streamhouse.testing.agent_process import AgentProcess
from streamhouse.testing.cluster import (
    SharedStores,
    led_counts,
    partition_leaders,
    running_agents,
)
from streamhouse.testing.moto_server import running_moto_server
from streamhouse.testing.postgres import PostgresServer, running_postgres

TOPIC = "bench-cluster"
PARTITIONS = 12  # an even share for one agent and for three
AGENT_COUNTS = (1, 3)
TOPIC_TIMEOUT_S = 30
SPREAD_TIMEOUT_S = 30
SPREAD_VALUE = b"spread"
ROUNDS = 3  # per cluster; the median round is reported (two cores shared with others: noisy)


def run(records: int, value_bytes: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="streamhouse-cbench-", dir=".") as scratch,
        running_postgres() as postgres,
        running_moto_server(Path(scratch)) as s3_endpoint,
    ):
        runs = {
            f"agents_{count}": _cluster_run(
                postgres,
                s3_endpoint,
                Path(scratch) / f"agents-{count}",
                count,
                records,
                value_bytes,
            )
            for count in AGENT_COUNTS
        }
    rate = "records_per_s"
    return {
        "records": records,
        "value_bytes": value_bytes,
        "partitions": PARTITIONS,
        "acks": "all",
        **runs,
        "three_vs_one_ratio": runs["agents_3"][rate] / runs["agents_1"][rate],
    }


def _cluster_run(
    postgres: PostgresServer,
    s3_endpoint: str,
    base_dir: Path,
    count: int,
    records: int,
    value_bytes: int,
) -> dict[str, Any]:
    metadata_url = postgres.create_database(f"bench_agents_{count}")
    stores = SharedStores.fresh_bucket(metadata_url, s3_endpoint, "bench-cluster")
    with running_agents(stores, base_dir, count) as agents:
        bootstrap = ",".join(agent.bootstrap for agent in agents)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(TOPIC_TIMEOUT_S)
        _spread_leadership(agents)
        config = {"bootstrap.servers": bootstrap, "acks": "all"}
        report = _median_round(
            [produce(config, TOPIC, records, value_bytes) for _ in range(ROUNDS)]
        )
        leaders = partition_leaders(agents[0].bootstrap, TOPIC)
        report["leaders_per_agent"] = sorted(led_counts(leaders).values(), reverse=True)
        for agent in agents:
            agent.check_alive()  # a figure from a dead agent is no figure
    return report


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median rate, with every round's rate next to it."""
    ordered = sorted(rounds, key=lambda r: float(r["records_per_s"]))
    return {
        **ordered[len(ordered) // 2],
        "records_per_s_rounds": [round(r["records_per_s"]) for r in rounds],
    }


def _spread_leadership(agents: list[AgentProcess]) -> None:
    """One acknowledged record on every partition, agent i asked first for partitions
    p with p % len(agents) == i: an agent with unowned partitions takes those its clients
    ask it for, and one that balances ownership answers its own placement instead."""
    for index, agent in enumerate(agents):
        producer = Producer({"bootstrap.servers": agent.bootstrap, "acks": "all"})
        for partition in range(index, PARTITIONS, len(agents)):
            producer.produce(TOPIC, SPREAD_VALUE, partition=partition)
        if producer.flush(SPREAD_TIMEOUT_S) != 0:
            raise RuntimeError(f"spreading leadership: agent {index} did not acknowledge")
