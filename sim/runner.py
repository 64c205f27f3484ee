"""One simulated cluster run for one seed: safety phase with faults, heal, liveness phase,
final scan, then the checkers' verdict.

The safety phase runs the workload's producers and group members while the
nemesis injects the seed's faults (crashes and restarts, pauses, partitions,
clogs, clock steps and drift, member crashes) on top of background fault
rates (network, disks, object store, metadata). Then everything is healed
and down agents restart; within `liveness_bound_ms` of virtual time fresh
producers must get every record acked, a fresh group must settle with every
partition assigned, and a final scan must read every partition to its high
watermark. The History the clients recorded is judged by `sim.checkers`;
the exit code follows `sim.verdict`. An agent whose own invariant fails ends
the run at once: a crash (127), with its traceback in the notes and the
agents' log lines kept for the reproduction file.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from sim.capture import captured_aiokafka
from sim.checkers import (
    LIVENESS,
    Violation,
    check_all,
    check_deletes,
    check_durable_log_start,
    check_pointers,
)
from sim.clock import LoopClock
from sim.cluster import DOWN, PAUSED, UP, SimAgent, SimCluster
from sim.disaster import (
    RUNBOOK_RETRY_MS,
    DeleteWatch,
    damage_objects,
    final_storage,
    plant_orphan,
    reconcile_at_the_end,
    recreate_topics,
    wipe_metadata,
)
from sim.history import (
    ACKS_ALL,
    FAULT_HEAL,
    FAULT_METADATA_WIPE,
    FAULT_NETWORK_PARTITION,
    FAULT_RESTART,
    FAULT_STORE_FAILOVER,
    PHASE_FINAL,
    PHASE_LIVENESS,
    PHASE_SAFETY,
    FaultInjected,
    GroupGeneration,
    History,
    ObjectDamaged,
    PhaseStarted,
    ProduceAcked,
    ProduceAttempt,
    TopicCreated,
)
from sim.logs import captured_logs
from sim.loop import SimLoop, run_simulation
from sim.network import SimNetwork, spawn_on_host
from sim.options import (
    CLOCK_DRIFT,
    CLOCK_STEP,
    CLOG,
    CRASH,
    CRASH_AT,
    DAMAGE_OBJECT,
    DR_PROFILE,
    MEMBER_CRASH,
    METADATA_WIPE,
    PARTITION,
    PAUSE,
    PLANT_ORPHAN,
    STORE_FAILOVER,
    Nemesis,
    SimOptions,
    draw_options,
    drew_reconcile,
    options_to_json,
)
from sim.pins import pinned_aiokafka
from sim.rng import SeededRng
from sim.trace import Trace
from sim.txn_workload import TxnClients
from sim.verdict import EXIT_CRASH, exit_code
from sim.workload import Clients
from streamhouse.ports.buggify import CRASH_POINTS

GROUP = "sim-group"
SAFETY_GRACE_MS = 120_000  # after the nemesis, clients still running are stopped
LIVENESS_MEMBER_POLLS = 16
LIVENESS_TXN_TRIES = 3  # transactions a fresh transactional producer tries after healing


@dataclass
class RunOutcome:
    """What a run ended with; enough to print, to compare and to write a reproduction."""

    seed: int
    options: str
    options_json: dict[str, Any] = field(default_factory=dict)
    exit_code: int = 0
    violations: list[str] = field(default_factory=list)
    virtual_ms: int = 0
    wall_s: float = 0.0
    trace_lines: int = 0
    trace_digest: str = ""
    history_digest: str = ""
    history: str = ""  # JSON lines
    notes: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # the agents' log lines (sim.logs)

    def summary(self) -> str:
        return (
            f"seed={self.seed} exit={self.exit_code} virtual_ms={self.virtual_ms} "
            f"wall_s={self.wall_s:.2f} trace_lines={self.trace_lines} "
            f"trace_digest={self.trace_digest} history_digest={self.history_digest}"
        )


def run_seed(
    seed: int, echo: Callable[[str], None] | None = None, options: SimOptions | None = None
) -> RunOutcome:
    """Run the cluster workload of `seed` (options drawn from it unless given)."""
    options = options or draw_options(seed)
    rng = SeededRng(seed)
    network = SimNetwork(rng.fork("network"), options.network_faults)
    trace = Trace(lambda: network.loop.time_ns(), echo=echo)
    network.trace = trace
    history = History()
    outcome = RunOutcome(seed, options.describe(), options_to_json(options))
    violations: list[Violation] = []
    started_s = time.perf_counter()
    crashed = False

    async def main(loop: SimLoop) -> None:
        try:
            await _run(loop, network, rng, options, history, trace, violations, outcome)
        finally:
            outcome.virtual_ms = loop.time_ns() // 1_000_000

    with captured_logs(lambda: network.loop.time_ns()) as logs:
        try:
            run_simulation(main, network)
        except Exception:  # the simulation or an agent blew up: a crash verdict, with its story
            crashed = True
            outcome.notes.append(traceback.format_exc())
    outcome.log = list(logs.lines)
    outcome.wall_s = time.perf_counter() - started_s
    if not crashed:
        violations += check_all(history, liveness_bound_ms=options.liveness_bound_ms)
        if any(isinstance(e, FaultInjected) and e.kind == FAULT_METADATA_WIPE for e in history):
            violations += check_durable_log_start(history)
    outcome.exit_code = exit_code(violations, crashed=crashed)
    outcome.violations = [f"[{v.checker}] {v.message}" for v in violations]
    outcome.trace_lines = trace.count
    outcome.trace_digest = trace.digest()
    outcome.history = history.to_jsonl()
    outcome.history_digest = hashlib.sha256(outcome.history.encode()).hexdigest()[:16]
    return outcome


async def _run(
    loop: SimLoop,
    network: SimNetwork,
    rng: SeededRng,
    options: SimOptions,
    history: History,
    trace: Trace,
    violations: list[Violation],
    outcome: RunOutcome,
) -> None:
    cluster = SimCluster(loop, network, rng.fork("cluster"), options.cluster, history, trace)
    await cluster.until_an_agent_fails(_phases(cluster, rng, options, history, violations, outcome))


async def _phases(
    cluster: SimCluster,
    rng: SeededRng,
    options: SimOptions,
    history: History,
    violations: list[Violation],
    outcome: RunOutcome,
) -> None:
    loop = cluster.loop
    workload = options.workload
    watch = DeleteWatch(cluster)
    await cluster.start()
    first = cluster.agents[0]
    assert first.running is not None
    creating = first.running.admin.create_topic(
        workload.topic, workload.partitions, workload.topic_configs()
    )
    await cluster.spawn(first.host, creating, "topic")
    created = TopicCreated(
        cluster.now_us(), "admin", workload.topic, workload.partitions, workload.compacted
    )
    history.append(created)
    if options.txn is not None and options.txn.transformers:
        output = options.txn.output_topic
        await cluster.spawn(
            first.host, first.running.admin.create_topic(output, workload.partitions), "topic"
        )
        history.append(TopicCreated(cluster.now_us(), "admin", output, workload.partitions))
    cluster.arm_faults()
    bootstrap = ",".join(f"{agent.host}:{agent.settings.kafka_port}" for agent in cluster.agents)
    clients = Clients(
        history, cluster.now_us, bootstrap, workload.topic, workload.partitions, workload.keys
    )
    txns = None if options.txn is None else TxnClients(clients, options.txn)
    with pinned_aiokafka(LoopClock(loop), rng.fork("clients")), captured_aiokafka():
        history.append(PhaseStarted(cluster.now_us(), PHASE_SAFETY))
        await _safety(cluster, clients, options, outcome, _txn_runs(txns, rng.fork("txn")))
        cluster.heal_faults()
        await cluster.restart_down_agents()
        while cluster.metadata.wipes and not await recreate_topics(cluster):
            await cluster.clock.sleep_ms(RUNBOOK_RETRY_MS)
        damages = tuple(n for n in options.nemeses if n.kind == DAMAGE_OBJECT)
        if damages:
            rows, _ = await final_storage(cluster.metadata, cluster.objects)
            damage_objects(cluster, damages, rows)
        heal_ms = cluster.clock.monotonic_ms()
        history.append(PhaseStarted(cluster.now_us(), PHASE_LIVENESS))
        try:
            await asyncio.wait_for(
                _liveness(cluster, clients, options, violations, txns),
                options.liveness_bound_ms / 1000,
            )
        except TimeoutError:
            waited_ms = cluster.clock.monotonic_ms() - heal_ms
            violations.append(
                Violation(LIVENESS, f"the liveness phase did not finish within {waited_ms} ms")
            )
    if options.profile == DR_PROFILE and drew_reconcile(options.cluster.settings):
        violations += await reconcile_at_the_end(cluster)
    await cluster.close()
    damaged = frozenset(e.key for e in history.of_type(ObjectDamaged))
    violations += check_pointers(
        *await final_storage(cluster.metadata, cluster.objects), damaged=damaged
    )
    violations += check_deletes(watch.deletes, options.cluster.settings.reconcile_grace_ms)


def _txn_runs(
    txns: TxnClients | None, rng: SeededRng
) -> list[tuple[str, Coroutine[Any, Any, Any]]]:
    """The transactional clients of the safety phase (the txn profile), by name."""
    if txns is None:
        return []
    txn = txns.options
    runs: list[tuple[str, Coroutine[Any, Any, Any]]] = []
    for number in range(1, txn.producers + 1):
        name = f"txn-producer-{number}"
        runs.append((name, txns.producer(name, rng.fork(name))))
    for number in range(1, txn.readers + 1):
        name = f"rc-reader-{number}"
        runs.append((name, txns.clients.reader(name, txn.reader_polls)))
    for number in range(1, txn.transformers + 1):
        name = f"transformer-{number}"
        runs.append((name, txns.transformer(name, txn.transformer_polls, rng.fork(name))))
    return runs


async def _safety(
    cluster: SimCluster,
    clients: Clients,
    options: SimOptions,
    outcome: RunOutcome,
    more: list[tuple[str, Coroutine[Any, Any, Any]]],
) -> None:
    workload = options.workload
    tasks: list[asyncio.Task[Any]] = []
    for number, (acks, idempotent) in enumerate(workload.producers, start=1):
        name = f"producer-{number}-acks{acks}" + ("-idem" if idempotent else "")
        run = clients.produce(
            name, acks, idempotent, workload.records_per_producer, workload.send_interval_ms
        )
        tasks.append(_client_task(cluster, name, run))
    members = [f"member-{number}" for number in range(1, workload.group_members + 1)]
    for name in members:
        run = clients.member(name, GROUP, workload.member_polls)
        tasks.append(_client_task(cluster, name, run))
    tasks += [_client_task(cluster, name, run) for name, run in more]
    nemesis = asyncio.ensure_future(_nemesis(cluster, clients, options, members))
    bound_s = (options.safety_ms + SAFETY_GRACE_MS) / 1000
    _, pending = await asyncio.wait([*tasks, nemesis], timeout=bound_s)
    nemesis.cancel()
    await asyncio.gather(nemesis, return_exceptions=True)
    for task in pending - {nemesis}:  # still stuck after the grace: its process is stopped
        name = task.get_name()
        clients.killed.add(name)
        cluster.kill_host(name)
        outcome.notes.append(f"{name} still running after the safety phase; stopped")
    await asyncio.gather(*tasks, return_exceptions=True)
    _raise_client_bugs(tasks)


def _client_task(
    cluster: SimCluster, name: str, run: Coroutine[Any, Any, Any]
) -> asyncio.Task[Any]:
    """A client process on its own host (named as the client)."""
    cluster.add_client_host(name)
    task = spawn_on_host(name, run, name)
    cluster.exit_when_done(name, task)
    return task


def _raise_client_bugs(tasks: list[asyncio.Task[Any]]) -> None:
    """A client that ended on anything but a Kafka error or its own kill is a bug to see."""
    for task in tasks:
        if task.cancelled():
            continue
        error = task.exception()
        if error is not None and not isinstance(error, KafkaError):
            raise error


async def _nemesis(
    cluster: SimCluster, clients: Clients, options: SimOptions, members: list[str]
) -> None:
    start_ms = cluster.clock.monotonic_ms()
    running: list[asyncio.Task[None]] = []
    try:
        for nemesis in options.nemeses:
            wait_ms = start_ms + nemesis.at_ms - cluster.clock.monotonic_ms()
            if wait_ms > 0:
                await cluster.clock.sleep_ms(wait_ms)
            injected = _inject(cluster, clients, nemesis, members, options.safety_ms)
            running.append(asyncio.ensure_future(injected))
        await asyncio.gather(*running)
    finally:
        for task in running:
            task.cancel()


async def _inject(
    cluster: SimCluster, clients: Clients, nemesis: Nemesis, members: list[str], safety_ms: int
) -> None:
    agent = cluster.agents[nemesis.agent - 1]
    kind, duration_ms = nemesis.kind, nemesis.duration_ms
    cluster.record_trace("nemesis", kind, agent.host, duration_ms, nemesis.amount)
    if kind == CRASH and agent.state in (UP, PAUSED):
        agent.crash()
        await cluster.clock.sleep_ms(duration_ms)
        await _restart(cluster, agent, wipe=bool(nemesis.amount))
    elif kind == CRASH_AT:  # armed until the safety phase's schedule ends
        if await agent.crash_at(CRASH_POINTS[nemesis.amount], safety_ms - nemesis.at_ms):
            await cluster.clock.sleep_ms(duration_ms)
            await _restart(cluster, agent, wipe=False)
    elif kind == PAUSE and agent.state == UP:
        agent.pause(duration_ms)
        await cluster.clock.sleep_ms(duration_ms)
        agent.resume()
    elif kind == PARTITION:
        cluster.fault(FAULT_NETWORK_PARTITION, agent.host, detail=f"{duration_ms}ms")
        for host in cluster.hosts():
            if host != agent.host:
                cluster.network.partition(agent.host, host)
        await cluster.clock.sleep_ms(duration_ms)
        cluster.network.heal()
        cluster.fault(FAULT_HEAL, agent.host)
    elif kind == CLOG:
        for host in cluster.hosts():
            if host != agent.host:
                cluster.network.clog(agent.host, host, duration_ms)
                cluster.network.clog(host, agent.host, duration_ms)
    elif kind == CLOCK_STEP:
        agent.clock.step_wall_ms(nemesis.amount)
    elif kind == CLOCK_DRIFT:
        agent.clock.set_drift_ppm(nemesis.amount)
    elif kind == STORE_FAILOVER:
        cluster.fault(FAULT_STORE_FAILOVER, "*", detail=f"{duration_ms}ms")
        cluster.metadata.begin_failover()
        await cluster.clock.sleep_ms(duration_ms)
        cluster.metadata.end_failover(nemesis.amount)
        cluster.fault(FAULT_HEAL, "*")
    elif kind == METADATA_WIPE:
        await wipe_metadata(cluster, nemesis)
    elif kind == PLANT_ORPHAN:
        plant_orphan(cluster, nemesis)
    elif kind == MEMBER_CRASH:
        alive = [name for name in members if name not in clients.killed]
        if alive:
            victim = alive[nemesis.agent % len(alive)]
            clients.killed.add(victim)
            cluster.kill_host(victim)


async def _restart(cluster: SimCluster, agent: SimAgent, wipe: bool) -> None:
    if agent.state != DOWN:
        return
    if wipe:
        agent.wipe_disk()
    cluster.fault(FAULT_RESTART, agent.host)
    await agent.start()  # under faults it may fail: then it stays down until the heal


async def _liveness(
    cluster: SimCluster,
    clients: Clients,
    options: SimOptions,
    violations: list[Violation],
    txns: TxnClients | None,
) -> None:
    workload = options.workload
    history = clients.history
    first_op = history.new_op()
    runs: list[tuple[str, Coroutine[Any, Any, Any]]] = []
    for number, (acks, idempotent) in enumerate(workload.producers or ((ACKS_ALL, False),), 1):
        name = f"live-producer-{number}"
        count, first = workload.liveness_records, workload.records_per_producer
        runs.append((name, clients.produce(name, acks, idempotent, count, 0, first)))
    await asyncio.gather(*(_on_own_host(cluster, name, run) for name, run in runs))
    group_from_us = cluster.now_us()
    members = [f"live-member-{number}" for number in range(1, workload.group_members + 1)]
    polls = LIVENESS_MEMBER_POLLS
    await asyncio.gather(
        *(_on_own_host(cluster, name, clients.member(name, GROUP, polls)) for name in members)
    )
    acked = {event.op for event in history.of_type(ProduceAcked)}
    unacked = [
        event.op
        for event in history.of_type(ProduceAttempt)
        if event.op > first_op and event.op not in acked
    ]
    if unacked:
        violations.append(Violation(LIVENESS, f"liveness-phase produces not acked: ops {unacked}"))
    if members and not group_settled(history, group_from_us, workload.partitions):
        violations.append(
            Violation(LIVENESS, "the group never settled with every partition assigned")
        )
    topics: tuple[str, ...] = ()
    if txns is not None:
        # a fresh transactional producer commits a transaction on the healed cluster
        name, rng = "live-txn-producer", SeededRng(options.seed).fork("live-txn-producer")
        for _ in range(LIVENESS_TXN_TRIES):
            if await _on_own_host(cluster, name, txns.producer(name, rng, 1, aborts=False)):
                break
        else:
            violations.append(Violation(LIVENESS, "no transaction committed after healing"))
        topics = (workload.topic,)
        if txns.options.transformers:
            topics += (txns.options.output_topic,)
    history.append(PhaseStarted(cluster.now_us(), PHASE_FINAL))
    cluster.add_client_host("final-scan")
    scan = clients.scan("final-scan", topics, read_committed=txns is not None)
    if not await _on_own_host(cluster, "final-scan", scan):
        violations.append(Violation(LIVENESS, "the final scan did not reach the high watermark"))


async def _on_own_host(cluster: SimCluster, name: str, run: Coroutine[Any, Any, Any]) -> Any:
    return await _client_task(cluster, name, run)


def group_settled(history: History, from_us: int, partitions: int, group: str = GROUP) -> bool:
    """Some generation of `group` after `from_us` assigned every partition to its members."""
    owned: dict[int, set[int]] = {}
    for event in history.of_type(GroupGeneration):
        if event.at_us >= from_us and event.group == group:
            owned.setdefault(event.generation, set()).update(p.partition for p in event.partitions)
    return any(len(assigned) == partitions for assigned in owned.values())


__all__ = ["EXIT_CRASH", "RunOutcome", "group_settled", "run_seed"]
