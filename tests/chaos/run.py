"""One chaos run on real processes, in the simulator's shape: a safety phase (producers, group
members and transactional clients run while the test's nemesis injects its faults), the heal,
a liveness phase (fresh producers must get every record acknowledged, a fresh group must
settle, a final scan must read every partition to its high watermark), then the simulator's
own checkers judge the History the clients recorded.

The clients are the simulator's (`sim.workload`, `sim.txn_workload`: real aiokafka clients,
their answers captured below them by `sim.capture`), here on a real event loop, real sockets
and the wall clock. The history is written to `history.jsonl` in the run's directory, so a
failure can be judged again with `python -m sim.verdict`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from sim.capture import Watcher, captured_aiokafka, watch
from sim.checkers import LIVENESS, Violation, check_all, check_durable_log_start
from sim.history import (
    ACKS_ALL,
    FAULT_METADATA_WIPE,
    PHASE_FINAL,
    PHASE_LIVENESS,
    PHASE_SAFETY,
    Event,
    FaultInjected,
    PhaseStarted,
    ProduceAcked,
    ProduceAttempt,
)
from sim.options import TxnOptions
from sim.rng import SeededRng
from sim.runner import group_settled
from sim.txn_workload import TxnClients
from sim.verdict import report
from sim.workload import Clients
from tests.chaos.world import ChaosWorld, now_us

TOPIC = "chaos"
GROUP = "chaos-group"
SAFETY_GRACE_S = 60  # clients still running this long after the nemesis are cancelled
LIVENESS_BOUND_S = 90
LIVENESS_RECORDS = 24
LIVENESS_MEMBER_POLLS = 12
LIVENESS_TXN_TRIES = 3

Nemesis = Callable[[ChaosWorld], Awaitable[None]]


@dataclass(frozen=True)
class Plan:
    """The clients of a run's safety phase."""

    producers: tuple[tuple[int, bool], ...] = ((ACKS_ALL, True),)  # (acks, idempotent)
    records_per_producer: int = 300
    send_interval_ms: int = 50
    partitions: int = 6
    members: int = 2
    member_polls: int = 50
    txn: TxnOptions | None = None
    liveness_acks: int = ACKS_ALL


@dataclass
class RealClients(Clients):
    """The simulator's clients, naming the agent that answered by the port it was reached at
    (every agent here is 127.0.0.1)."""

    world: ChaosWorld | None = field(default=None, repr=False)

    def _watch(self, client: Any, name: str) -> Watcher:
        world = self.world
        assert world is not None

        def record(event: Event) -> None:
            self.record(name, event)

        def agent_of(node_id: int) -> str | None:
            broker = client.cluster.broker_metadata(node_id)
            return None if broker is None else world.agent_at_port(int(broker.port))

        return watch(client, Watcher(name, self.now_us, record, agent_of))


@dataclass
class Outcome:
    """What a run ended with: the violations, and their report with the agents' logs."""

    violations: list[Violation]
    text: str


def run_chaos(world: ChaosWorld, plan: Plan, nemesis: Nemesis, seed: int = 1) -> Outcome:
    """Create the topic, run the phases with `nemesis`, judge; the history is saved."""
    world.create_topic(TOPIC, plan.partitions)
    if plan.txn is not None and plan.txn.transformers:
        world.create_topic(plan.txn.output_topic, plan.partitions)
    violations = asyncio.run(_phases(world, plan, nemesis, seed))
    history = world.history
    violations += check_all(history)
    if any(isinstance(e, FaultInjected) and e.kind == FAULT_METADATA_WIPE for e in history):
        violations += check_durable_log_start(history)
    path = world.base_dir / "history.jsonl"
    path.write_text(history.to_jsonl())
    text = report(violations, history)
    if violations:
        text += f"history: {path}\n{world.log_tails()}\n"
    return Outcome(violations, text)


def run_clean(world: ChaosWorld, plan: Plan, nemesis: Nemesis) -> Outcome:
    """`run_chaos`, failing the test with the report unless every checker passed."""
    outcome = run_chaos(world, plan, nemesis)
    assert not outcome.violations, outcome.text
    return outcome


async def _phases(world: ChaosWorld, plan: Plan, nemesis: Nemesis, seed: int) -> list[Violation]:
    history = world.history
    clients = RealClients(history, now_us, world.bootstrap, TOPIC, plan.partitions, world=world)
    txns = None if plan.txn is None else TxnClients(clients, plan.txn)
    rng = SeededRng(seed)
    with captured_aiokafka():
        history.append(PhaseStarted(now_us(), PHASE_SAFETY))
        await _safety(world, clients, plan, nemesis, txns, rng)
        history.append(PhaseStarted(now_us(), PHASE_LIVENESS))
        try:
            return await asyncio.wait_for(_liveness(clients, plan, txns, rng), LIVENESS_BOUND_S)
        except TimeoutError:
            return [Violation(LIVENESS, f"the liveness phase took over {LIVENESS_BOUND_S} s")]


async def _safety(
    world: ChaosWorld,
    clients: Clients,
    plan: Plan,
    nemesis: Nemesis,
    txns: TxnClients | None,
    rng: SeededRng,
) -> None:
    runs: list[tuple[str, Awaitable[Any]]] = []
    for number, (acks, idempotent) in enumerate(plan.producers, start=1):
        name = f"producer-{number}-acks{acks}" + ("-idem" if idempotent else "")
        count, interval = plan.records_per_producer, plan.send_interval_ms
        runs.append((name, clients.produce(name, acks, idempotent, count, interval)))
    for number in range(1, plan.members + 1):
        name = f"member-{number}"
        runs.append((name, clients.member(name, GROUP, plan.member_polls)))
    if txns is not None:
        for number in range(1, txns.options.producers + 1):
            name = f"txn-producer-{number}"
            runs.append((name, txns.producer(name, rng.fork(name))))
        for number in range(1, txns.options.readers + 1):
            name = f"rc-reader-{number}"
            runs.append((name, clients.reader(name, txns.options.reader_polls)))
    tasks = [asyncio.ensure_future(run) for _, run in runs]
    await nemesis(world)
    done, pending = await asyncio.wait(tasks, timeout=SAFETY_GRACE_S)
    for task in pending:  # stuck past the grace: stopped, as the simulator stops its host
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        error = None if task.cancelled() else task.exception()
        if error is not None and not isinstance(error, KafkaError):
            raise error  # a client that ended on anything but a Kafka error is a bug to see


async def _liveness(
    clients: Clients, plan: Plan, txns: TxnClients | None, rng: SeededRng
) -> list[Violation]:
    history = clients.history
    violations: list[Violation] = []
    first_op = history.new_op()
    idempotent = plan.liveness_acks == ACKS_ALL
    await clients.produce("live-producer", plan.liveness_acks, idempotent, LIVENESS_RECORDS, 0)
    acked = {event.op for event in history.of_type(ProduceAcked)}
    unacked = [
        e.op for e in history.of_type(ProduceAttempt) if e.op > first_op and e.op not in acked
    ]
    if unacked:
        violations.append(Violation(LIVENESS, f"liveness-phase produces not acked: ops {unacked}"))
    if plan.members:
        from_us = now_us()
        await clients.member("live-member", GROUP, LIVENESS_MEMBER_POLLS)
        if not group_settled(history, from_us, plan.partitions, GROUP):
            violations.append(Violation(LIVENESS, "the group never settled on every partition"))
    topics: tuple[str, ...] = ()
    if txns is not None:
        live_rng = rng.fork("live-txn-producer")
        for _ in range(LIVENESS_TXN_TRIES):
            if await txns.producer("live-txn-producer", live_rng, 1, aborts=False):
                break
        else:
            violations.append(Violation(LIVENESS, "no transaction committed after healing"))
        topics = (TOPIC,) + ((txns.options.output_topic,) if txns.options.transformers else ())
    history.append(PhaseStarted(now_us(), PHASE_FINAL))
    if not await clients.scan("final-scan", topics, read_committed=txns is not None):
        violations.append(Violation(LIVENESS, "the final scan did not reach the high watermark"))
    return violations
