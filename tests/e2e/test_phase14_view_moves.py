"""e2e phase 14, a continuous view moving between agents: two agent processes share one SQLite
metadata store and one object directory; a tumble view over a topic runs on the agent leading
its output topic's partition 0. That agent is SIGKILLed while a window is
open; once its lease expires the other agent takes the output partition and the view with it,
resumes from the committed offsets and progress, and a read_committed Kafka consumer finds
every hand-computed window exactly once (none lost, none doubled) and the record for a window
emitted before the kill counted late, not emitted.

The input has one partition: partitions led by two agents are fetched apart, so records of one
may be read after later records of another, and the view's watermark (the largest event time
seen) would then rightly count them late, which is not what this test is about."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from streamhouse.config import Settings
from streamhouse.testing.agent_process import AgentProcess
from tests import views_world as world
from tests.e2e.conftest import start_agent, within
from tests.e2e.test_phase14_views import AFTER, BEFORE, LATE, OPEN
from tests.views_world import Event

CLIENT_TIMEOUT_S = 20


def one_partition(events: list[Event]) -> list[Event]:
    return [(0, offset_ms, user, amount) for _, offset_ms, user, amount in events]


BEFORE_1, OPEN_1, AFTER_1, LATE_1 = map(one_partition, (BEFORE, OPEN, AFTER, LATE))
AGENT_IDS = ("view-agent-a", "view-agent-b")
# The killed agent's leases expire, the survivor sees it gone and takes its partitions
MOVE_WITHIN_S = (
    max(Settings().lease_ttl_ms, Settings().agent_session_timeout_ms) / 1000
    + 3 * Settings().ownership_interval_ms / 1000
    + 10  # a busy machine: Metadata round trips, the runner's clients starting
)


def start_pair(tmp_path: Path) -> dict[str, AgentProcess]:
    """Two agents of one cluster (one SQLite file, one object directory), by agent id."""
    shared = tmp_path / "shared"
    shared.mkdir()
    stores = ("--metadata-url", f"sqlite:///{shared / 'metadata.db'}")
    stores += ("--object-store", str(shared / "objects"))
    agents: dict[str, AgentProcess] = {}
    try:
        for agent_id in AGENT_IDS:
            agents[agent_id] = start_agent(tmp_path / agent_id, *stores, "--agent-id", agent_id)
    except BaseException:
        for started in agents.values():
            started.kill()
        raise
    return agents


def runner_of(agent: AgentProcess, name: str) -> str | None:
    """The id of the agent running view `name`, as `GET /api/v1/sql/views` shows it."""
    shown = world.shown_view(agent.http_port, name)
    return None if shown is None else shown["agent"]


def test_view_moves_to_the_other_agent_exactly_once(tmp_path: Path) -> None:
    agents = start_pair(tmp_path)
    try:
        first = agents[AGENT_IDS[0]]
        topic = f"clicks-{uuid.uuid4().hex[:6]}"
        name = f"per_user_{uuid.uuid4().hex[:6]}"
        admin = AdminClient({"bootstrap.servers": first.bootstrap})
        admin.create_topics([NewTopic(topic, 1)])[topic].result(CLIENT_TIMEOUT_S)
        assert world.sql(first.http_port, world.view_sql(name, topic)).status == 200
        world.produce(first.bootstrap, topic, BEFORE_1)
        reader = world.output_reader(first.bootstrap, name)
        emitted = world.expected_windows(BEFORE_1, 27_000)
        assert world.await_windows(reader, len(emitted)) == emitted
        reader.close()
        world.produce(first.bootstrap, topic, OPEN_1)
        running = runner_of(first, name)
        assert running in AGENT_IDS, running
        doomed = agents.pop(running)
        survivor = next(iter(agents.values()))
        assert runner_of(survivor, name) == running  # both agents name the same runner

        def read_open() -> bool:  # the runner committed its progress past the open events
            shown = world.shown_view(doomed.http_port, name)
            return shown is not None and shown["watermark"] == world.BASE_MS + 29_000

        within(CLIENT_TIMEOUT_S, read_open, "the view's watermark at 29 s")
        doomed.kill()  # SIGKILL: the runner's state and its open window's rows lost
        started = time.monotonic()
        moved_to = AGENT_IDS[1] if running == AGENT_IDS[0] else AGENT_IDS[0]
        within(MOVE_WITHIN_S, lambda: runner_of(survivor, name) == moved_to, "the view moved")
        print(f"view moved within {time.monotonic() - started:.1f} s")
        world.produce(survivor.bootstrap, topic, LATE_1 + AFTER_1)
        expected = world.expected_windows(BEFORE_1 + OPEN_1 + AFTER_1, 58_000)
        reader = world.output_reader(survivor.bootstrap, name)  # the whole output, from its start
        assert world.read_windows(reader, len(expected)) == expected, "a window lost or doubled"
        reader.close()
        shown = world.shown_view(survivor.http_port, name)
        assert shown is not None and shown["agent"] == moved_to and shown["state"] == "running"
        assert shown["late_records"] == 1 and shown["windows_emitted"] == len(expected)
        assert shown["invalid_records"] == 0
    finally:
        for agent in agents.values():
            agent.stop_cleanly()
