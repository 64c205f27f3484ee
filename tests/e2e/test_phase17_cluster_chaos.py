"""e2e phase 17: several agents as real processes sharing one PostgreSQL and one moto S3 bucket,
through failover, a pause past the lease, a clean leave and a join.

Three agents serve a 12-partition topic; a confluent-kafka producer (acks=all, idempotent) writes
sequence-numbered values to every partition in turn, and a consumer group with a confluent-kafka
and an aiokafka member reads and commits after every batch, while an admin client samples the
group's committed offsets. Then, one step at a time, each waiting for every partition to take
acknowledged records again: the agent leading the most partitions is SIGKILLed, and restarted on
its WAL; the next is SIGSTOPped past its lease TTL and SIGCONTed; the last leaves with SIGTERM;
a fourth joins and must come to lead its share, floor(12 / live agents), per Metadata.

Verdict (phase17_verdict.py): every acknowledged record read exactly once, where its ack said,
in order, by a final fresh scan; no offset holds two values across everything any consumer
read (a tail that was never acknowledged may be replaced after a failover); committed offsets
never went back. Measured and reported, not asserted beyond liveness bounds: failover (SIGKILL
to the first acknowledgement, on a partition the killed agent led, of a record handed to the
producer after the kill), handover (the same after SIGTERM) and join (the fourth agent's start
to leading its share). Printed as one JSON line and written to phase17.json in the test's tmp
dir.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from streamhouse.config import Settings
from streamhouse.testing.agent_process import AgentProcess
from streamhouse.testing.cluster import SharedStores, live_nodes, partition_leaders
from tests.e2e.conftest import start_agent
from tests.e2e.phase17_verdict import (
    Verdict,
    judge_committed_offsets,
    judge_final_scan,
    judge_sightings,
)
from tests.e2e.phase17_workload import (
    PARTITIONS,
    TOPIC,
    AiokafkaMember,
    ConfluentMember,
    GroupReads,
    OffsetSampler,
    SequencedProducer,
    final_scan,
    high_watermarks,
)

SETTINGS = Settings()
LEASE_TTL_S = SETTINGS.lease_ttl_ms / 1000
SESSION_S = SETTINGS.agent_session_timeout_ms / 1000
PAUSE_PAST_LEASE_S = 3.0  # the paused agent stays stopped this long after its lease's TTL
TEST_TIMEOUT_S = 300  # the whole test, whatever happens (pytest-timeout)
WARM_UP_TIMEOUT_S = 60  # every partition acknowledges its first records
PROGRESS_ACKS = 10  # after each step, every partition acknowledges this many more records
PROGRESS_TIMEOUT_S = LEASE_TTL_S + SESSION_S + 45  # a lease expires, clients find the new leader
FAILOVER_TIMEOUT_S = PROGRESS_TIMEOUT_S
JOIN_TIMEOUT_S = 60  # the fourth agent comes to lead its share
CATCH_UP_TIMEOUT_S = 60  # the group commits up to the end of every partition
STEADY_S = 2.0  # records flow between steps
POLL_S = 0.2
TOPIC_TIMEOUT_S = 30


@dataclass
class Cluster:
    """The agents by name, and where they keep their data."""

    stores: SharedStores
    base_dir: Path
    stack: ExitStack
    agents: dict[str, AgentProcess] = field(default_factory=dict)
    origin: float = field(default_factory=time.monotonic)
    timeline: dict[str, float] = field(default_factory=dict)

    def note(self, event: str) -> float:
        """Record when `event` happened (seconds since the cluster started); time.monotonic()."""
        now = time.monotonic()
        self.timeline[event] = round(now - self.origin, 1)
        return now

    def start(self, name: str, *extra: str) -> AgentProcess:
        agent = start_agent(self.base_dir / name, *self.stores.agent_args(), *extra)
        self.agents[name] = self.stack.enter_context(agent)
        return agent

    def restart(self, name: str) -> AgentProcess:
        """The same data directory (WAL) and the same ports, so clients find it again."""
        old = self.agents[name]
        ports = ("--kafka-port", str(old.port), "--http-port", str(old.http_port))
        return self.start(name, *ports)

    def live(self) -> dict[str, AgentProcess]:
        return {n: a for n, a in list(self.agents.items()) if a.process.poll() is None}

    def bootstrap(self) -> str:
        """Every live agent's address, for a client starting now."""
        return ",".join(a.bootstrap for a in self.live().values())

    def leaders_by_name(self, asked: AgentProcess) -> dict[str, set[int]]:
        """agent name -> the partitions `asked` says it leads."""
        port_to_name = {a.port: n for n, a in self.live().items()}
        node_to_name = {
            node: port_to_name.get(port, "?") for node, port in live_nodes(asked.bootstrap).items()
        }
        led: dict[str, set[int]] = {name: set() for name in self.live()}
        for partition, node in partition_leaders(asked.bootstrap, TOPIC).items():
            led.setdefault(node_to_name.get(node, f"node {node}"), set()).add(partition)
        return led


@dataclass
class Workload:
    producer: SequencedProducer
    reads: GroupReads
    members: list[ConfluentMember | AiokafkaMember]
    sampler: OffsetSampler


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_phase17_cluster_chaos(
    tmp_path: Path, moto_s3_with_credentials: str, postgres_database_url: str
) -> None:
    stores = SharedStores.fresh_bucket(postgres_database_url, moto_s3_with_credentials, "phase17")
    report: dict[str, Any] = {}
    verdict = Verdict()
    started = time.monotonic()
    with ExitStack() as stack:
        cluster = Cluster(stores, tmp_path, stack)
        for name in ("a", "b", "c"):
            cluster.start(name)
        _create_topic(cluster.bootstrap())
        with _running_workload(cluster) as workload:
            _chaos(cluster, workload, report, verdict)
        _judge(cluster, workload, report, verdict)
        report["run_s"] = round(time.monotonic() - started, 1)
        _publish(report, tmp_path / "phase17.json")
        for agent in cluster.live().values():
            agent.stop_cleanly()
    assert not verdict.problems, verdict.summary()


def _create_topic(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(TOPIC_TIMEOUT_S)


@contextmanager
def _running_workload(cluster: Cluster) -> Iterator[Workload]:
    bootstrap = cluster.bootstrap()
    reads = GroupReads()
    members: list[ConfluentMember | AiokafkaMember] = [
        ConfluentMember(bootstrap, reads),
        AiokafkaMember(bootstrap, reads),
    ]
    workload = Workload(
        SequencedProducer(bootstrap), reads, members, OffsetSampler(cluster.bootstrap)
    )
    threads = [*members, workload.sampler, workload.producer]
    for thread in threads:
        thread.start()
    try:
        yield workload
    finally:
        for thread in threads:  # no-ops after a clean run; after a failure, end them all
            thread.stopping.set()


def _chaos(cluster: Cluster, workload: Workload, report: dict[str, Any], verdict: Verdict) -> None:
    producer = workload.producer
    _wait_for_progress(producer, WARM_UP_TIMEOUT_S, "warm-up")
    report["leaders_at_start"] = _led_counts(cluster)
    killed = _most_leading(cluster, exclude=set())
    report["failover_s"] = _kill_and_restart(cluster, producer, killed)
    paused = _most_leading(cluster, exclude={killed})
    _pause_past_lease(cluster, producer, paused)
    leaving = _most_leading(cluster, exclude={killed, paused})
    report["handover_s"] = _leave(cluster, producer, leaving)
    report["join_s"] = _join(cluster, producer, verdict)
    report["leaders_at_end"] = _led_counts(cluster)
    cluster.note("producer stops")
    producer.stop()
    _wait_for_catch_up(workload, report, verdict)
    cluster.note("group caught up")
    for member in workload.members:
        member.stop()
    workload.sampler.stop()


def _most_leading(cluster: Cluster, exclude: set[str]) -> str:
    """The live agent, not in `exclude`, that leads the most partitions now (by name on ties),
    so that each step hits leadership whatever the placement."""
    led = cluster.leaders_by_name(next(iter(cluster.live().values())))
    candidates = [name for name in cluster.live() if name not in exclude]
    return min(candidates, key=lambda name: (-len(led.get(name, ())), name))


def _kill_and_restart(cluster: Cluster, producer: SequencedProducer, name: str) -> float | None:
    """SIGKILL `name`; seconds until a partition it led acknowledges a record handed over after
    the kill (None if it led none); then restart it on its WAL."""
    victim = cluster.agents[name]
    led = _led_by(cluster, name)
    killed_at = cluster.note(f"SIGKILL {name} (led {sorted(led)})")
    victim.kill()
    failover_s = _wait_for_ack_after(producer, led, killed_at, "failover after SIGKILL")
    _wait_for_progress(producer, PROGRESS_TIMEOUT_S, f"progress after SIGKILL of {name}")
    cluster.note(f"restart {name}")
    cluster.restart(name)
    _wait_for_progress(producer, PROGRESS_TIMEOUT_S, f"progress after restarting {name}")
    return failover_s


def _pause_past_lease(cluster: Cluster, producer: SequencedProducer, name: str) -> None:
    agent = cluster.agents[name]
    cluster.note(f"SIGSTOP {name} (led {sorted(_led_by(cluster, name))})")
    agent.send_signal(signal.SIGSTOP)
    try:
        time.sleep(LEASE_TTL_S + PAUSE_PAST_LEASE_S)
    finally:
        agent.send_signal(signal.SIGCONT)
        cluster.note(f"SIGCONT {name}")
    _wait_for_progress(producer, PROGRESS_TIMEOUT_S, f"progress after pausing {name}")
    agent.check_alive()


def _leave(cluster: Cluster, producer: SequencedProducer, name: str) -> float | None:
    """SIGTERM `name` (it hands its partitions over); seconds until a partition it led
    acknowledges a record handed over after the signal (None if it led none)."""
    led = _led_by(cluster, name)
    left_at = cluster.note(f"SIGTERM {name} (led {sorted(led)})")
    cluster.agents[name].stop_cleanly()
    handover_s = _wait_for_ack_after(producer, led, left_at, "handover after SIGTERM")
    _wait_for_progress(producer, PROGRESS_TIMEOUT_S, f"progress after {name} left")
    return handover_s


def _join(cluster: Cluster, producer: SequencedProducer, verdict: Verdict) -> float | None:
    """Start a fourth agent; seconds until Metadata says it leads its share."""
    joined_at = cluster.note("start d")
    joiner = cluster.start("d")
    share = [0]

    def leads_its_share() -> bool:
        share[0] = PARTITIONS // len(live_nodes(joiner.bootstrap))
        return len(cluster.leaders_by_name(joiner).get("d", ())) >= share[0]

    join_s = _wait_until(JOIN_TIMEOUT_S, leads_its_share)
    if join_s is None:
        verdict.add(
            f"the joining agent did not come to lead its share ({share[0]} partitions) within "
            f"{JOIN_TIMEOUT_S} s; leaders per agent: {_led_counts(cluster)}"
        )
    else:
        join_s = time.monotonic() - joined_at
    _wait_for_progress(producer, PROGRESS_TIMEOUT_S, "progress after the join")
    return join_s


def _led_by(cluster: Cluster, name: str) -> set[int]:
    asked = next(a for n, a in cluster.live().items() if n != name)
    return cluster.leaders_by_name(asked).get(name, set())


def _led_counts(cluster: Cluster) -> dict[str, int]:
    asked = next(iter(cluster.live().values()))
    return {name: len(led) for name, led in sorted(cluster.leaders_by_name(asked).items())}


def _wait_for_ack_after(
    producer: SequencedProducer, partitions: set[int], since: float, what: str
) -> float | None:
    if not partitions:
        return None
    acked: list[float] = []

    def has_acked() -> bool:
        first = producer.first_ack_after(partitions, since)
        acked[:] = [] if first is None else [first]
        return first is not None

    if _wait_until(FAILOVER_TIMEOUT_S, has_acked) is None:
        raise AssertionError(f"{what}: no acknowledgement within {FAILOVER_TIMEOUT_S} s")
    return acked[0] - since


def _wait_for_progress(producer: SequencedProducer, timeout_s: float, what: str) -> None:
    """Until every partition has acknowledged PROGRESS_ACKS more records, then STEADY_S."""
    before = producer.acked_counts()

    def progressed() -> bool:
        now = producer.acked_counts()
        return all(now[p] >= before[p] + PROGRESS_ACKS for p in range(PARTITIONS))

    if _wait_until(timeout_s, progressed) is None:
        raise AssertionError(
            f"{what}: not every partition acknowledged {PROGRESS_ACKS} more records within "
            f"{timeout_s} s (before {before}, now {producer.acked_counts()}, "
            f"failures {producer.failures[-3:]})"
        )
    time.sleep(STEADY_S)


def _wait_for_catch_up(workload: Workload, report: dict[str, Any], verdict: Verdict) -> None:
    """Until the group's committed offsets reach the last acknowledged offset + 1 everywhere."""
    ends = {p: acks[-1].offset + 1 for p, acks in workload.producer.acks.items() if acks}

    def caught_up() -> bool:
        latest = workload.sampler.latest()
        return all(latest.get(p, -1) >= end for p, end in ends.items())

    caught_up_s = _wait_until(CATCH_UP_TIMEOUT_S, caught_up)
    report["group_caught_up_s"] = caught_up_s
    if caught_up_s is None:
        verdict.add(
            f"the group did not commit up to the acknowledged ends {ends} within "
            f"{CATCH_UP_TIMEOUT_S} s: last committed {workload.sampler.latest()}"
        )


def _wait_until(timeout_s: float, holds: Callable[[], bool]) -> float | None:
    """Seconds until `holds()`, or None after `timeout_s`."""
    started = time.monotonic()
    while not holds():
        if time.monotonic() - started > timeout_s:
            return None
        time.sleep(POLL_S)
    return time.monotonic() - started


def _judge(cluster: Cluster, workload: Workload, report: dict[str, Any], verdict: Verdict) -> None:
    producer = workload.producer
    bootstrap = cluster.bootstrap()
    scanned = final_scan(bootstrap, high_watermarks(bootstrap))
    judge_final_scan(verdict, producer.acks, scanned)
    judge_sightings(verdict, workload.reads.sightings, producer.acks, scanned)
    judge_committed_offsets(verdict, workload.sampler.samples, workload.reads, cluster.origin)
    if producer.failures or producer.unflushed:
        verdict.add(
            f"{len(producer.failures)} deliveries failed ({producer.failures[:3]}), "
            f"{producer.unflushed} unflushed"
        )
    report.update(
        acknowledged=sum(len(acks) for acks in producer.acks.values()),
        read_by_group=len(workload.reads.sightings),
        commits_ok=sum(c.ok for c in workload.reads.commits),
        commits_failed=sum(not c.ok for c in workload.reads.commits),
        offset_samples=len(workload.sampler.samples),
        offset_samples_failed=workload.sampler.failed,
        offset_sample_last_error=workload.sampler.last_error,
        scan_redelivered=sum(part.redelivered for part in scanned.values()),
        cut_offsets_read=sum(len(o) for o in verdict.truncated.values()),
        cuts_seen_by_aiokafka=len(workload.reads.cuts),
        excused_offset_regressions=verdict.excused_regressions,
        problems=len(verdict.problems),
        timeline=cluster.timeline,
        assignments=[
            (round(at - cluster.origin, 1), reader.removeprefix("phase17-"), partitions)
            for at, reader, partitions in workload.reads.assignments
        ],
    )


def _publish(report: dict[str, Any], path: Path) -> None:
    rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in report.items()}
    line = json.dumps({"phase17": rounded}, sort_keys=True)
    path.write_text(line + "\n")
    print(line)
