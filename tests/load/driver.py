"""The load driver: sustained produce and consume at a set rate for a set time against one agent
(started here on embedded defaults, or on moto's S3 with --s3, unless --bootstrap names one),
over many partitions and many client connections; reports HDR latency histograms (produce per ack
mode, end to end), the agent's memory and open files, and every record acked but not consumed
once, in order. `python -m tests.load --help`.

The measured clients (--clients, librdkafka through confluent-kafka) write and read every
partition; the rest of --connections are the C load generator's raw producer connections on a
side topic (tests/load/background.py): every librdkafka client asks for the topic's metadata,
which the agent answers with one store read per partition, so 200 of them on 1,000 partitions
would measure start-up, not load."""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.agents import create_topic
from bench.loadgen import raise_open_files_limit
from streamhouse.testing.agent_process import AgentProcess, start_agent_process
from streamhouse.testing.cluster import agent_environment
from streamhouse.testing.moto_server import running_moto_server
from tests.load.background import SIDE_TOPIC_PARTITIONS, Background
from tests.load.clients import (
    ACK_MODES,
    RECORD_BYTES_MIN,
    Latency,
    LoadConsumer,
    LoadProducer,
    Tally,
    encode,
)
from tests.load.report import write_report
from tests.load.sampler import PENDING_METRIC, AgentSampler, agent_metric, kafka_connections

RATE_MAX = 100_000  # records/s
SECONDS_MAX = 3_600
PARTITIONS_MAX = 10_000
CLIENTS_MIN = 4  # a producer per ack mode and two consumers
CONNECTIONS_MAX = 2_000
BACKGROUND_RATE_MAX = 100.0  # requests/s per background connection
RECORD_BYTES_MAX = 1_048_576
RECORDS_MAX = 50_000_000  # rate x seconds: the per-partition counters stay small
WARMUP_TIMEOUT_S = 120.0  # for the first write to every partition, and consumers to see it
FLUSH_TIMEOUT_S = 60.0  # for every outstanding ack after the last send
DRAIN_TIMEOUT_S = 60.0  # for consumers to receive every acked record
DRAIN_POLL_S = 0.1
PACING_SLEEP_MIN_S = 0.0005
AGENT_STOP_TIMEOUT_S = 120.0
NS_PER_S = 1_000_000_000
STALL_US = 1_000_000  # a second whose slowest produce took longer is listed as a stall
US_PER_MS = 1_000


@dataclass(frozen=True)
class Settings:
    rate: float  # records/s, all producers together
    seconds: float  # measured, after warmup_seconds of the same load
    warmup_seconds: float
    partitions: int
    connections: int  # measured clients plus background connections
    clients: int  # measured clients: a producer per ack mode, the rest consumers
    background_rate: float  # requests/s per background connection
    record_bytes: int
    report_dir: Path
    bootstrap: str | None
    agent_pid: int | None
    metrics_url: str | None
    s3: bool

    def refusal(self) -> str | None:
        """Why these settings are refused, or None."""
        bounds = {
            f"--rate must be in (0, {RATE_MAX}]": 0 < self.rate <= RATE_MAX,
            f"--seconds must be in (0, {SECONDS_MAX}]": 0 < self.seconds <= SECONDS_MAX,
            f"--warmup-seconds must be in [0, {SECONDS_MAX}]": 0
            <= self.warmup_seconds
            <= SECONDS_MAX,
            f"--partitions must be in [1, {PARTITIONS_MAX}]": 1
            <= self.partitions
            <= PARTITIONS_MAX,
            f"--clients must be in [{CLIENTS_MIN}, --connections]": CLIENTS_MIN
            <= self.clients
            <= self.connections,
            f"--connections must be at most {CONNECTIONS_MAX}": self.connections <= CONNECTIONS_MAX,
            f"--background-rate must be in (0, {BACKGROUND_RATE_MAX}]": 0
            < self.background_rate
            <= BACKGROUND_RATE_MAX,
            f"--record-bytes must be in [{RECORD_BYTES_MIN}, {RECORD_BYTES_MAX}]": RECORD_BYTES_MIN
            <= self.record_bytes
            <= RECORD_BYTES_MAX,
            f"at most {RECORDS_MAX} records (rate x time)": self.records <= RECORDS_MAX,
            "--s3 starts its own agent: leave out --bootstrap": not (self.s3 and self.bootstrap),
        }
        refused = [message for message, ok in bounds.items() if not ok]
        return "; ".join(refused) or None

    @property
    def records(self) -> int:
        """Records sent in all: the warm-up's load and the measured time's."""
        return int(self.rate * (self.warmup_seconds + self.seconds))

    @property
    def producers(self) -> int:
        return len(ACK_MODES)  # one per ack mode: each producer writes half the partitions

    @property
    def consumers(self) -> int:
        return self.clients - self.producers

    @property
    def background(self) -> int:
        return self.connections - self.clients


def parse(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m tests.load", description=__doc__)
    parser.add_argument("--rate", type=float, default=10, help="records/s (default 10)")
    parser.add_argument("--seconds", type=float, default=60, help="measured time (default 60)")
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=15,
        help="load before the measured time: checked, not in the histograms (default 15)",
    )
    parser.add_argument("--partitions", type=int, default=1_000, help="(default 1000)")
    parser.add_argument(
        "--connections", type=int, default=200, help="Kafka connections in all (default 200)"
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=4,
        help="measured clients: 2 producers, the rest consumers (default 4)",
    )
    parser.add_argument(
        "--background-rate",
        type=float,
        default=2.0,
        help="requests/s per background connection (default 2)",
    )
    parser.add_argument("--record-bytes", type=int, default=100, help="value size (default 100)")
    parser.add_argument("--report", type=Path, default=Path("load-report"), help="report dir")
    parser.add_argument("--bootstrap", help="an agent already running (default: start one)")
    parser.add_argument("--agent-pid", type=int, help="with --bootstrap: the process to sample")
    parser.add_argument("--metrics-url", help="with --bootstrap: its /metrics, for connections")
    parser.add_argument("--s3", action="store_true", help="the agent on moto's S3 server")
    args = parser.parse_args(argv)
    settings = Settings(
        args.rate,
        args.seconds,
        args.warmup_seconds,
        args.partitions,
        args.connections,
        args.clients,
        args.background_rate,
        args.record_bytes,
        args.report,
        args.bootstrap,
        args.agent_pid,
        args.metrics_url,
        args.s3,
    )
    refusal = settings.refusal()
    if refusal:
        parser.error(refusal)
    return settings


@dataclass
class Target:
    """The agent under load: where it serves, what to sample, and (if started here) its process."""

    bootstrap: str
    pid: int | None
    metrics_url: str | None
    process: AgentProcess | None


@contextmanager
def agent_target(settings: Settings, scratch: Path) -> Iterator[Target]:
    """The agent named by --bootstrap, or one started here (stopped cleanly afterwards)."""
    if settings.bootstrap is not None:
        yield Target(settings.bootstrap, settings.agent_pid, settings.metrics_url, None)
        return
    with ExitStack() as stack:
        extra: tuple[str, ...] = ()
        if settings.s3:
            endpoint = stack.enter_context(running_moto_server(scratch))
            bucket = f"s3://load-{uuid.uuid4().hex[:12]}/agent"
            extra = ("--object-store", bucket, "--s3-endpoint", endpoint)
        log_path = settings.report_dir / "agent.log"
        agent = start_agent_process(
            scratch / "agent", *extra, log_path=log_path, env=agent_environment()
        )
        stack.enter_context(agent)
        yield Target(agent.bootstrap, agent.pid, agent.http_base + "/metrics", agent)


@dataclass
class Load:
    """The clients of one run and what they measure."""

    settings: Settings
    topic: str
    produce: dict[str, Latency]
    end_to_end: Latency
    tally: Tally
    producers: list[LoadProducer]
    consumers: list[LoadConsumer]


def open_clients(settings: Settings, bootstrap: str, topic: str) -> Load:
    """Producers first, each warmed up on its partitions; then the consumers."""
    tally = Tally(settings.partitions)
    produce = {acks: Latency() for acks in ACK_MODES}
    end_to_end = Latency()
    producers = [
        LoadProducer(
            bootstrap, ACK_MODES[i % len(ACK_MODES)], produce[ACK_MODES[i % len(ACK_MODES)]], tally
        )
        for i in range(settings.producers)
    ]
    deadline = time.monotonic() + WARMUP_TIMEOUT_S
    for i, producer in enumerate(producers):
        mine = owned(settings.partitions, i, settings.producers)
        if producer.warm_up(topic, mine, deadline - time.monotonic()):
            tally.error("warm-up: first writes unacknowledged")
    consumers = [
        LoadConsumer(
            bootstrap, topic, owned(settings.partitions, i, settings.consumers), end_to_end, tally
        )
        for i in range(settings.consumers)
    ]
    producers = [
        LoadProducer(
            bootstrap, ACK_MODES[i % len(ACK_MODES)], produce[ACK_MODES[i % len(ACK_MODES)]], tally
        )
        for i in range(settings.producers)
    ]
    return Load(settings, topic, produce, end_to_end, tally, producers, consumers)


def owned(partitions: int, index: int, clients: int) -> list[int]:
    """The partitions client `index` of `clients` serves: every clients-th one."""
    return list(range(index, partitions, clients))


def wait_for_consumers(load: Load) -> float:
    """Wait (at most WARMUP_TIMEOUT_S) until consumers have received every partition's warm-up
    record: every consumer then has its position and every connection is open. Returns the
    seconds waited; a partition not seen by then is an error."""
    started = time.monotonic()
    while not all(load.tally.warmup_consumed):
        if time.monotonic() - started > WARMUP_TIMEOUT_S:
            load.tally.error("warm-up: consumers did not receive every partition's first record")
            break
        time.sleep(DRAIN_POLL_S)
    return time.monotonic() - started


def wait_until_flushed(target: Target) -> float:
    """Wait (at most WARMUP_TIMEOUT_S) until the agent has no bytes pending flush: the warm-up's
    first flush, which commits a segment of every partition, is not load. Returns the seconds
    waited (0 when the agent's /metrics cannot be read)."""
    started = time.monotonic()
    while time.monotonic() - started < WARMUP_TIMEOUT_S:
        if not agent_metric(target.metrics_url, PENDING_METRIC):
            break
        time.sleep(DRAIN_POLL_S)
    return time.monotonic() - started


def background_notes(report: dict[str, Any] | None) -> list[str]:
    """What the background connections met, in words. Not a failure of the run: they send raw
    requests and never retry, where a client would retry (NOT_LEADER_OR_FOLLOWER when a lease
    lapsed); an unanswered request is one (see `problems`)."""
    if report is None or not report["errors"]:
        return []
    return [
        f"background: {report['errors']} of {report['sent']} requests answered with an error "
        f"(first error code {report['first_error_code']})"
    ]


def stalls(tally: Tally, started_ns: int) -> list[dict[str, float]]:
    """The seconds of the load (from its start, warm-up included) whose slowest produce took
    over STALL_US."""
    first = started_ns // NS_PER_S
    return [
        {"second": second - first, "slowest_ms": slowest / US_PER_MS}
        for second, slowest in sorted(tally.slowest_us_by_second.items())
        if slowest > STALL_US
    ]


def pace(load: Load) -> tuple[int, float]:
    """Send records open-loop at the set rate for the set time: record i is due at start +
    i/rate and carries that time, so a late send counts in its latency (no coordinated
    omission). Returns (records sent, seconds taken)."""
    settings = load.settings
    total = settings.records
    interval_ns = NS_PER_S / settings.rate
    started_ns = time.monotonic_ns()
    load.tally.measured_from_ns = started_ns + int(settings.warmup_seconds * NS_PER_S)
    sent = 0
    while sent < total:
        now_ns = time.monotonic_ns()
        due = min(total, int((now_ns - started_ns) / interval_ns) + 1)
        while sent < due:
            send(load, sent, started_ns + int(sent * interval_ns))
            sent += 1
        next_ns = started_ns + int(sent * interval_ns)
        time.sleep(max(PACING_SLEEP_MIN_S, (next_ns - time.monotonic_ns()) / NS_PER_S))
    return sent, (time.monotonic_ns() - started_ns) / NS_PER_S


def send(load: Load, index: int, intended_ns: int) -> None:
    partitions = load.settings.partitions
    partition = index % partitions
    producer = load.producers[partition % len(load.producers)]
    sequence = load.tally.sent[partition]
    value = encode(sequence, intended_ns, load.settings.record_bytes)
    deadline = time.monotonic() + FLUSH_TIMEOUT_S
    while True:
        try:
            producer.client.produce(load.topic, value, partition=partition)
            break
        except BufferError:  # its queue is full: wait for acks; the wait counts as latency
            if time.monotonic() > deadline:
                load.tally.error("produce: queue full")
                return
            producer.client.flush(DRAIN_POLL_S)
    load.tally.sent[partition] = sequence + 1


def drain(load: Load) -> float:
    """Wait for every ack, then for consumers to receive every acked record; returns the
    seconds the consumers took after the last ack."""
    deadline = time.monotonic() + FLUSH_TIMEOUT_S
    unacked = sum(p.flush(deadline - time.monotonic()) for p in load.producers)
    if unacked:
        load.tally.error("produce: unacknowledged at the end")
    started = time.monotonic()
    while time.monotonic() - started < DRAIN_TIMEOUT_S and load.tally.missing():
        time.sleep(DRAIN_POLL_S)
    return time.monotonic() - started


def close(load: Load) -> None:
    """Stop every client and let it go, so none reconnects to the agent once it stops."""
    for producer in load.producers:
        producer.stop()
    for consumer in load.consumers:
        consumer.stop()
    load.producers.clear()
    load.consumers.clear()
    gc.collect()  # a producer and its delivery callback hold each other


def run(settings: Settings) -> dict[str, Any]:
    """One load run; returns the report (also written under settings.report_dir)."""
    settings.report_dir.mkdir(parents=True, exist_ok=True)
    limits = raise_open_files_limit()
    topic = f"load-{uuid.uuid4().hex[:12]}"
    with (
        tempfile.TemporaryDirectory(prefix="streamhouse-load-") as scratch,
        agent_target(settings, Path(scratch)) as target,
    ):
        create_topic(target.bootstrap, topic, settings.partitions)
        create_topic(target.bootstrap, topic + "-side", SIDE_TOPIC_PARTITIONS)
        background = Background(
            target.bootstrap,
            topic + "-side",
            settings.background,
            settings.background_rate,
            settings.warmup_seconds + settings.seconds,
        )
        with AgentSampler(target.pid, target.metrics_url) as sampler:
            load = open_clients(settings, target.bootstrap, topic)
            try:
                warmup_s = wait_for_consumers(load)
                flush_wait_s = wait_until_flushed(target)
                background.start()
                load_started_ns = time.monotonic_ns()
                sent, produce_s = pace(load)
                connected = kafka_connections(target.metrics_url)
                drain_s = drain(load)
                background_report = background.result()
            finally:
                background.stop()
                close(load)
        figures = summary(load, sent, produce_s, drain_s, connected, limits)
        figures["warmup_s"] = warmup_s
        figures["warmup_flush_wait_s"] = flush_wait_s
        figures["stalls"] = stalls(load.tally, load_started_ns)
        figures["background"] = background_report
        figures["notes"] = background_notes(background_report)
        figures["agent"] = sampler.as_json()
        figures["agent"]["exit_code"] = stop_agent(target, load.tally)
        figures["errors"] = dict(load.tally.errors)
    return write_report(settings.report_dir, figures, load.produce, load.end_to_end)


def stop_agent(target: Target, tally: Tally) -> int | None:
    """Stop the agent started here (SIGTERM: it flushes and exits); a failure exit is an error."""
    if target.process is None:
        return None
    code = target.process.stop(AGENT_STOP_TIMEOUT_S)
    if code != 0:
        tally.error(f"agent exited {code} (see agent.log)")
    return code


def summary(
    load: Load,
    sent: int,
    produce_s: float,
    drain_s: float,
    connected: int | None,
    limits: tuple[int, int],
) -> dict[str, Any]:
    settings, tally = load.settings, load.tally
    acked = sum(tally.acked)
    settings_json = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()}
    return {
        "settings": settings_json,
        "topic": load.topic,
        "clients": {
            "producers": settings.producers,
            "consumers": settings.consumers,
            "background_connections": settings.background,
        },
        "agent_connections_at_end_of_load": connected,
        "open_files_limit": {"soft": limits[0], "hard": limits[1]},
        "records": {
            "sent": sent,
            "acked": acked,
            "consumed": sum(tally.consumed),
            "missing": tally.missing(),
        },
        "bytes_sent": sent * settings.record_bytes,
        "produce_s": produce_s,
        "drain_s": drain_s,
        "rate_asked": settings.rate,
        "rate_achieved": sent / produce_s if produce_s else 0.0,
        "rate_acked": acked / produce_s if produce_s else 0.0,
        "errors": dict(tally.errors),
        "anomalies": dict(tally.anomalies),
    }


def main(argv: list[str] | None = None) -> int:
    settings = parse(argv)
    report = run(settings)
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
