"""e2e phase 6: nine consumers (three per client library) share one group on a 12-partition topic.

Each member runs in its own process (tests/e2e/group_member.py) and logs its
assignments, consumed offsets and commits as JSON lines. While a producer
fills the topic, one member leaves cleanly and one is SIGKILLed and must
expire by session timeout; its partitions move to the others. Then all stop,
more records arrive, the agent restarts, and a fresh member resumes from the
committed offsets.

Checked from the logs: no partition has two owners in one generation (nor two
owners at once), no offset is skipped, and each new owner starts exactly at
a committed (or, for the killed member, possibly committed) offset, so only
the uncommitted tail is ever read twice.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.e2e.conftest import Agent, start_agent

TOPIC = "phase6"
GROUP = "phase6-group"
PARTITION_COUNT = 12
CLIENTS = ("confluent", "aiokafka", "kafka-python")
MEMBERS_PER_CLIENT = 3
LEAVER = "kafka-python-0"
VICTIM = "confluent-1"
MEMBER_SCRIPT = Path(__file__).with_name("group_member.py")

PRODUCE_ROUND_S = 0.1
PRODUCE_ROUNDS_MAX = 1_000
TAIL_RECORDS_PER_PARTITION = 5
STABLE_WAIT_S = 45.0
EXPIRY_WAIT_S = 45.0
EXIT_WAIT_S = 20.0
DRAIN_WAIT_S = 30.0
POLL_S = 0.2


# ---------------------------------------------------------------- member processes and logs


@dataclass
class Member:
    """A member process and its JSON-lines log."""

    name: str
    client: str
    log: Path
    process: subprocess.Popen[bytes]
    killed_at: float | None = None
    agent_run: int = 0  # generations start again on a restarted agent (groups are not stored)

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text().splitlines() if self.log.exists() else []:
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by SIGKILL
                break
        return found

    def current(self) -> tuple[int, frozenset[int]] | None:
        """(generation, partitions) if the member's last rebalance event is an assignment."""
        last = None
        for event in self.events():
            if event["e"] == "assigned":
                last = (event["gen"], frozenset(event["parts"]))
            elif event["e"] in ("revoked", "stopping", "stopped"):
                last = None
        return last

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=EXIT_WAIT_S)

    def kill(self) -> None:
        self.killed_at = time.monotonic()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=EXIT_WAIT_S)


def start_member(client: str, name: str, bootstrap: str, logs: Path) -> Member:
    log = logs / f"{name}.jsonl"
    stderr = open(log.with_suffix(".stderr"), "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, str(MEMBER_SCRIPT), client, bootstrap, TOPIC, GROUP, name, str(log)],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    return Member(name, client, log, process)


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / POLL_S) + 1):
        if check():
            return
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def stable(members: list[Member]) -> bool:
    """Every member holds an assignment of one generation; together they cover the topic once."""
    for member in members:
        if member.process.poll() is not None:
            errors = member.log.with_suffix(".stderr").read_text()[-2000:]
            raise AssertionError(f"{member.name} exited early:\n{errors}")
    held = [member.current() for member in members]
    if any(entry is None for entry in held):
        return False
    generations = {entry[0] for entry in held if entry is not None}
    parts = [part for entry in held if entry is not None for part in entry[1]]
    return len(generations) == 1 and sorted(parts) == list(range(PARTITION_COUNT))


def generation_of(members: list[Member]) -> int:
    held = members[0].current()
    assert held is not None
    return held[0]


# ---------------------------------------------------------------- producer


@dataclass
class Filler:
    """Produces one record per partition every PRODUCE_ROUND_S on a thread, until stopped."""

    bootstrap: str
    ends: dict[int, int] = field(default_factory=dict)  # partition -> last offset + 1
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all"})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None:
            self.failures.append(str(error))
            return
        partition = message.partition()
        self.ends[partition] = max(self.ends.get(partition, 0), message.offset() + 1)

    def produce_round(self) -> None:
        for partition in range(PARTITION_COUNT):
            self.producer.produce(TOPIC, b"x", partition=partition, on_delivery=self._delivered)
        self.producer.poll(0)

    def _run(self) -> None:
        for _ in range(PRODUCE_ROUNDS_MAX):
            if self._stop.wait(PRODUCE_ROUND_S):
                break
            self.produce_round()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=EXIT_WAIT_S)
        assert self.producer.flush(EXIT_WAIT_S) == 0, "records left undelivered"
        assert not self.failures, self.failures[:5]


# ---------------------------------------------------------------- the scenario


def test_nine_members_of_three_clients_share_rebalance_and_resume(
    group_agent: Agent, tmp_path: Path
) -> None:
    bootstrap = group_agent.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, PARTITION_COUNT, 1)])[TOPIC].result(timeout=10)
    logs = tmp_path / "members"
    logs.mkdir()
    filler = Filler(bootstrap)
    filler.start()
    members = [
        start_member(client, f"{client}-{index}", bootstrap, logs)
        for index in range(MEMBERS_PER_CLIENT)
        for client in CLIENTS
    ]
    everyone = list(members)
    agents = [group_agent]
    try:
        wait_until(lambda: stable(members), STABLE_WAIT_S, "nine members share the topic")
        first_generation = generation_of(members)

        leaver = next(member for member in members if member.name == LEAVER)
        wait_until(lambda: commits_in(leaver, first_generation), STABLE_WAIT_S, "leaver commits")
        leaver.stop()
        members.remove(leaver)
        wait_until(lambda: stable(members), STABLE_WAIT_S, "eight members after a clean leave")
        after_leave = generation_of(members)
        assert after_leave > first_generation

        victim = next(member for member in members if member.name == VICTIM)
        wait_until(lambda: commits_in(victim, after_leave), STABLE_WAIT_S, "victim commits")
        victim.kill()
        members.remove(victim)
        wait_until(lambda: stable(members), EXPIRY_WAIT_S, "seven members after the kill")
        assert generation_of(members) > after_leave

        time.sleep(1.0)  # let the seven consume their new partitions for a while
        filler.stop()
        for member in members:
            member.stop()
        for member in members:
            assert member.process.returncode == 0, f"{member.name} exited badly"

        committed = committed_offsets(admin)
        for _ in range(TAIL_RECORDS_PER_PARTITION):
            filler.produce_round()
        assert filler.producer.flush(EXIT_WAIT_S) == 0

        # Committed offsets live in the metadata store: a restarted agent still has them.
        assert group_agent.stop() == 0
        restarted = start_agent(group_agent.data_dir, "--group-initial-rebalance-delay-ms", "300")
        agents.append(restarted)
        assert committed_offsets(AdminClient({"bootstrap.servers": restarted.bootstrap})) == (
            committed
        )
        final = start_member("confluent", "final", restarted.bootstrap, logs)
        final.agent_run = 1
        everyone.append(final)
        wait_until(
            lambda: reached_ends(final, filler.ends),
            DRAIN_WAIT_S,
            "the new member reads to the end",
        )
        final.stop()
    finally:
        for member in everyone:
            if member.process.poll() is None:
                member.process.kill()
                member.process.wait(timeout=EXIT_WAIT_S)
        for running in agents[1:]:
            if running.process.poll() is None:
                assert running.stop() == 0

    history = History.read(everyone)
    history.check_one_owner_per_generation()
    history.check_no_two_owners_at_once()
    history.check_contiguous_reads()
    history.check_nothing_skipped(filler.ends)
    history.check_new_owners_start_at_commits()
    history.check_final_member_resumed(final, committed)
    assert history.generations_seen() >= 3


def committed_offsets(admin: AdminClient) -> dict[int, int]:
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(GROUP)])
    result = futures[GROUP].result(timeout=10)
    return {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}


def commits_in(member: Member, generation: int) -> bool:
    """The member has consumed and committed in this generation."""
    return any(
        event["e"] == "committed" and event["ok"] and event["gen"] == generation
        for event in member.events()
    )


def reached_ends(member: Member, ends: dict[int, int]) -> bool:
    top: dict[int, int] = {}
    for event in member.events():
        if event["e"] == "consumed":
            top[event["p"]] = max(top.get(event["p"], -1), event["o"][-1])
    return all(top.get(partition, -1) >= end - 1 for partition, end in ends.items())


# ---------------------------------------------------------------- checking the history


@dataclass
class Ownership:
    """One member's hold on one partition, from an assignment to the next rebalance event."""

    member: str
    agent_run: int
    generation: int
    partition: int
    start: float
    end: float
    offsets: list[int] = field(default_factory=list)


@dataclass
class History:
    """Every member's log, cut into ownerships, with every commit."""

    ownerships: list[Ownership]
    commits: list[dict[str, Any]]  # "commit" and "committed" events, with the member's name

    @classmethod
    def read(cls, members: list[Member]) -> History:
        ownerships: list[Ownership] = []
        commits: list[dict[str, Any]] = []
        for member in members:
            events = member.events()
            last_t = events[-1]["t"] if events else 0.0
            end_of_life = member.killed_at if member.killed_at is not None else last_t
            open_now: dict[int, Ownership] = {}
            for event in events:
                kind = event["e"]
                if kind in ("assigned", "revoked", "stopping"):
                    for held in open_now.values():
                        held.end = event["t"]
                    open_now = {}
                if kind == "assigned":
                    for part in event["parts"]:
                        held = Ownership(
                            member.name,
                            member.agent_run,
                            event["gen"],
                            part,
                            event["t"],
                            end_of_life,
                        )
                        open_now[part] = held
                        ownerships.append(held)
                elif kind == "consumed":
                    assert event["p"] in open_now, f"{member.name} read unowned {event}"
                    open_now[event["p"]].offsets.extend(event["o"])
                elif kind in ("commit", "committed"):
                    commits.append({**event, "member": member.name})
        return cls(ownerships, commits)

    def generations_seen(self) -> int:
        return len({(held.agent_run, held.generation) for held in self.ownerships})

    def check_one_owner_per_generation(self) -> None:
        owners: dict[tuple[int, int], str] = {}
        for held in self.ownerships:
            key = (held.agent_run, held.generation, held.partition)
            assert held.generation >= 0, f"{held.member} has no generation"
            other = owners.setdefault(key, held.member)
            assert other == held.member, f"partition {held.partition} has two owners {key}"

    def check_no_two_owners_at_once(self) -> None:
        for partition in range(PARTITION_COUNT):
            holds = sorted(
                (held for held in self.ownerships if held.partition == partition),
                key=lambda held: held.start,
            )
            for before, after in itertools.pairwise(holds):
                assert after.start >= before.end, (
                    f"partition {partition}: {after.member} (gen {after.generation}) took it "
                    f"while {before.member} (gen {before.generation}) still held it"
                )

    def check_contiguous_reads(self) -> None:
        for held in self.ownerships:
            if held.offsets:
                expected = list(range(held.offsets[0], held.offsets[0] + len(held.offsets)))
                assert held.offsets == expected, f"{held.member} read gaps in {held.partition}"

    def check_nothing_skipped(self, ends: dict[int, int]) -> None:
        assert sorted(ends) == list(range(PARTITION_COUNT))
        for partition, end in ends.items():
            read = {
                o for held in self.ownerships if held.partition == partition for o in held.offsets
            }
            assert read == set(range(end)), (
                f"partition {partition}: missing {set(range(end)) - read}"
            )

    def check_new_owners_start_at_commits(self) -> None:
        """A new owner starts at the last committed offset, or one the killed member may have."""
        for held in self.ownerships:
            if not held.offsets:
                continue
            done, maybe = self._commits_before(held.partition, held.start)
            floor = max(done, default=0)
            allowed = {floor} | {offset for offset in maybe if offset > floor}
            assert held.offsets[0] in allowed, (
                f"{held.member} started partition {held.partition} at {held.offsets[0]}, "
                f"not at a committed offset {sorted(allowed)}"
            )

    def _commits_before(self, partition: int, t: float) -> tuple[list[int], list[int]]:
        """Offsets committed before t, and offsets whose commit's outcome is unknown."""
        key = str(partition)
        done, tried = [], []
        for event in self.commits:
            if event["t"] >= t or key not in event["offsets"]:
                continue
            offset = event["offsets"][key]
            if event["e"] == "commit":
                tried.append((event["member"], offset))
            elif event["ok"]:
                done.append(offset)
        answered = {
            (event["member"], event["offsets"][key])
            for event in self.commits
            if event["e"] == "committed" and key in event["offsets"]
        }
        return done, [offset for who, offset in tried if (who, offset) not in answered]

    def check_final_member_resumed(self, final: Member, committed: dict[int, int]) -> None:
        assert sorted(committed) == list(range(PARTITION_COUNT)), committed
        firsts = {
            held.partition: held.offsets[0]
            for held in self.ownerships
            if held.member == final.name and held.offsets
        }
        assert firsts == committed
