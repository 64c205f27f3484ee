"""The simulation smoke workload: one real agent, one aiokafka client, one seed.

The agent is the real composition (`assemble_agent`: Kafka listener, LogStore,
WAL, flusher) on the simulator's ports: SimDisk, SimObjectStore,
SimMetadataStore, a LoopClock and a SeededRng, listening on the simulated
network. An aiokafka producer on another virtual host sends records with
acks=1 and acks=all, an aiokafka consumer reads every partition back (with
the faulty options the network delays, splits, resets and clogs, and the
client is cut from the agent for a while), and
the result checks that every acknowledged record came back byte for byte, at
the offset it was acknowledged at, and that each partition's offsets are
unique and increasing. The trace records every network delivery, every
acknowledgement and every record consumed, with virtual timestamps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from aiokafka.structs import TopicPartition as ClientPartition  # type: ignore[import-untyped]

from sim.clock import LoopClock
from sim.disk import SimDisk
from sim.loop import SimLoop, run_simulation
from sim.metadata import SimMetadataStore
from sim.network import NetworkFaults, SimNetwork, on_host
from sim.object_store import SimObjectStore
from sim.pins import pinned_aiokafka
from sim.rng import SeededRng
from sim.trace import Trace, fingerprint
from streamhouse.agent import assemble_agent
from streamhouse.config import Settings

AGENT_HOST = "agent-1"
CLIENT_HOST = "client-1"
KAFKA_PORT = 9092
TOPIC = "smoke"
KEY_BYTES_MAX = 16
VALUE_BYTES_MAX = 300
CONSUME_POLLS_MAX = 500
POLL_TIMEOUT_MS = 1_000
CLIENT_REQUEST_TIMEOUT_MS = 30_000
CLIENT_START_ATTEMPTS_MAX = 20
CLIENT_START_BACKOFF_MS = 500
T = TypeVar("T")

CUT_AT_MS_MAX = 2_000
CUT_MS_MAX = 8_000  # well within the clients' request timeout: they ride it out
# Faults of the smoke's "faulty network" run: bounded delay, occasional resets and clogs.
FAULTY_NETWORK = NetworkFaults(
    delay_ms_min=1,
    delay_ms_max=40,
    reset_rate=0.02,
    split_rate=0.3,
    clog_rate=0.01,
    clog_ms_max=2_000,
)


@dataclass(frozen=True)
class SmokeOptions:
    """Everything a smoke run depends on; printed first by `python -m sim run`."""

    seed: int
    records_per_ack_mode: int = 60
    partition_count: int = 2
    faults: NetworkFaults = field(default_factory=NetworkFaults)
    # client and agent cut apart from this virtual time, for cut_ms (None: never)
    cut_at_ms: int | None = None
    cut_ms: int = 0

    @classmethod
    def faulty(cls, seed: int, records_per_ack_mode: int = 60) -> SmokeOptions:
        """The faulty network, and one partition whose start and length the seed draws."""
        draw = SeededRng(seed).fork("options")
        return cls(
            seed,
            records_per_ack_mode,
            faults=FAULTY_NETWORK,
            cut_at_ms=draw.randint(0, CUT_AT_MS_MAX),
            cut_ms=draw.randint(1, CUT_MS_MAX),
        )

    def describe(self) -> str:
        return (
            f"seed={self.seed} records_per_ack_mode={self.records_per_ack_mode} "
            f"partition_count={self.partition_count} cut_at_ms={self.cut_at_ms} "
            f"cut_ms={self.cut_ms} faults={self.faults}"
        )


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


@dataclass
class SmokeResult:
    trace: Trace
    acked: int = 0
    unacked: int = 0
    consumed: int = 0
    virtual_ms: int = 0
    resets: int = 0
    problems: list[str] = field(default_factory=list)


def run_smoke(options: SmokeOptions, echo: Callable[[str], None] | None = None) -> SmokeResult:
    """Run the smoke workload for `options` in a fresh simulated world."""
    rng = SeededRng(options.seed)
    network = SimNetwork(rng.fork("network"), options.faults)
    network.trace = Trace(lambda: network.loop.time_ns(), echo=echo)
    result = SmokeResult(network.trace)

    async def main(loop: SimLoop) -> SmokeResult:
        await _smoke(loop, rng, options, result)
        result.virtual_ms = loop.time_ns() // 1_000_000
        result.resets = network.resets
        return result

    return run_simulation(main, network)


async def _smoke(loop: SimLoop, rng: SeededRng, options: SmokeOptions, result: SmokeResult) -> None:
    clock = LoopClock(loop)
    settings = Settings(kafka_host=AGENT_HOST, kafka_port=KAFKA_PORT, agent_id=AGENT_HOST)
    agent = await on_host(
        AGENT_HOST,
        assemble_agent(
            settings,
            clock,
            rng.fork("agent"),
            SimDisk(rng.fork("disk")),
            SimObjectStore(clock, rng.fork("objects")),
            SimMetadataStore(rng.fork("metadata")),
        ),
    )
    try:
        await on_host(AGENT_HOST, agent.admin.create_topic(TOPIC, options.partition_count))
        records = _records(rng.fork("workload"), clock.now_ms(), options)
        nemesis = asyncio.ensure_future(_cut(loop, clock, options))
        with pinned_aiokafka(clock, rng.fork("client")):
            await on_host(CLIENT_HOST, _client(records, options, result))
        nemesis.cancel()
        assert loop.network is not None
        loop.network.heal()
    finally:
        await on_host(AGENT_HOST, agent.close())
    if agent.failure.error is not None:  # our own invariant failed: the smoke run crashes
        raise agent.failure.error


async def _cut(loop: SimLoop, clock: LoopClock, options: SmokeOptions) -> None:
    """Partition the client from the agent for a while, if the options say so."""
    if options.cut_at_ms is None:
        return
    assert loop.network is not None
    await clock.sleep_ms(options.cut_at_ms)
    loop.network.partition(CLIENT_HOST, AGENT_HOST)
    await clock.sleep_ms(options.cut_ms)
    loop.network.heal()


def _records(rng: SeededRng, start_ms: int, options: SmokeOptions) -> list[Record]:
    records = []
    for index in range(2 * options.records_per_ack_mode):
        key = None if rng.chance(0.1) else rng.randbytes(rng.randint(0, KEY_BYTES_MAX))
        value = None if rng.chance(0.05) else rng.randbytes(rng.randint(0, VALUE_BYTES_MAX))
        if key is None and value is None:  # aiokafka refuses records with neither
            value = b""
        headers = tuple(
            (f"h{n}", rng.randbytes(rng.randint(0, 8))) for n in range(rng.randint(0, 2))
        )
        records.append(Record(key, value, headers, start_ms + index))
    return records


async def _client(records: list[Record], options: SmokeOptions, result: SmokeResult) -> None:
    trace = result.trace
    half = options.records_per_ack_mode
    acked: dict[tuple[int, int], Record] = {}
    for acks, batch in ((1, records[:half]), ("all", records[half:])):
        acked.update(await _produce(acks, batch, options.partition_count, result))
    trace.record("client.produced", f"acked={len(acked)}", f"unacked={result.unacked}")
    consumed = await _consume(options.partition_count, acked, result)
    _check(acked, consumed, result)


async def _produce(
    acks: int | str, batch: list[Record], partition_count: int, result: SmokeResult
) -> dict[tuple[int, int], Record]:
    producer = await _started(
        lambda: AIOKafkaProducer(
            bootstrap_servers=f"{AGENT_HOST}:{KAFKA_PORT}",
            client_id=f"smoke-acks-{acks}",
            acks=acks,
            request_timeout_ms=CLIENT_REQUEST_TIMEOUT_MS,
        ),
        result,
    )
    acked: dict[tuple[int, int], Record] = {}
    sends: list[asyncio.Future[Any]] = []
    try:
        for index, record in enumerate(batch):
            try:
                sent = await producer.send(
                    TOPIC,
                    record.value,
                    key=record.key,
                    partition=index % partition_count,
                    timestamp_ms=record.timestamp_ms,
                    headers=list(record.headers),
                )
            except KafkaError as error:  # no metadata within the request timeout
                sent = asyncio.get_running_loop().create_future()
                sent.set_exception(error)
            sends.append(sent)
        outcomes = await asyncio.gather(*sends, return_exceptions=True)
    finally:
        await producer.stop()
    for index, (record, outcome) in enumerate(zip(batch, outcomes, strict=True)):
        if isinstance(outcome, KafkaError):
            result.unacked += 1
            result.trace.record("client.unacked", f"acks={acks}", index, type(outcome).__name__)
            continue
        if isinstance(outcome, BaseException):
            raise outcome
        acked[(outcome.partition, outcome.offset)] = record
        result.acked += 1
        result.trace.record("client.ack", f"acks={acks}", f"p={outcome.partition}", outcome.offset)
    return acked


async def _started(make: Callable[[], T], result: SmokeResult) -> T:
    """Start a client, starting over when bootstrapping fails (a reset connection)."""
    for attempt in range(1, CLIENT_START_ATTEMPTS_MAX + 1):
        client = make()
        try:
            await client.start()  # type: ignore[attr-defined]
            return client
        except KafkaError as error:
            await client.stop()  # type: ignore[attr-defined]
            result.trace.record("client.start-failed", attempt, type(error).__name__)
            if attempt == CLIENT_START_ATTEMPTS_MAX:
                raise
            await asyncio.sleep(CLIENT_START_BACKOFF_MS / 1000)
    raise AssertionError("unreachable")


async def _consume(
    partition_count: int, acked: dict[tuple[int, int], Record], result: SmokeResult
) -> dict[tuple[int, int], Record]:
    """Read every partition from the start until each acknowledged offset was seen."""
    wanted = {partition: -1 for partition in range(partition_count)}
    for partition, offset in acked:
        wanted[partition] = max(wanted[partition], offset)
    consumer = await _started(
        lambda: AIOKafkaConsumer(
            bootstrap_servers=f"{AGENT_HOST}:{KAFKA_PORT}",
            client_id="smoke-consumer",
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=CLIENT_REQUEST_TIMEOUT_MS,
        ),
        result,
    )
    consumed: dict[tuple[int, int], Record] = {}
    try:
        partitions = [ClientPartition(TOPIC, partition) for partition in range(partition_count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen = {partition: -1 for partition in range(partition_count)}
        for _ in range(CONSUME_POLLS_MAX):
            if all(seen[p] >= wanted[p] for p in wanted):
                break
            polled = await consumer.getmany(*partitions, timeout_ms=POLL_TIMEOUT_MS)
            for client_partition in partitions:  # a fixed order, not the dict's
                for message in polled.get(client_partition, []):
                    position = (message.partition, message.offset)
                    if message.offset <= seen[message.partition] or position in consumed:
                        result.problems.append(f"offset {position} consumed out of order")
                    seen[message.partition] = message.offset
                    consumed[position] = Record(
                        message.key,
                        message.value,
                        tuple(message.headers),
                        message.timestamp,
                    )
                    result.consumed += 1
                    result.trace.record(
                        "client.record",
                        f"p={message.partition}",
                        message.offset,
                        fingerprint(message.key),
                        fingerprint(message.value),
                        message.timestamp,
                    )
        else:
            result.problems.append(f"consumer stopped at {seen} before reaching {wanted}")
    finally:
        await consumer.stop()
    return consumed


def _check(
    acked: dict[tuple[int, int], Record],
    consumed: dict[tuple[int, int], Record],
    result: SmokeResult,
) -> None:
    for position in sorted(acked):
        if position not in consumed:
            result.problems.append(f"acknowledged record at {position} was never consumed")
        elif consumed[position] != acked[position]:
            result.problems.append(
                f"record at {position} differs: sent {acked[position]}, read {consumed[position]}"
            )
    result.trace.record(
        "smoke.done",
        f"acked={result.acked}",
        f"consumed={result.consumed}",
        f"problems={len(result.problems)}",
    )
