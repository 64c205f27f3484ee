"""DR phase 3: the metadata database is deleted; an agent started on a new, empty one rebuilds it
from the bucket (the newest snapshot, then the footers of later objects), serves the same log
byte for byte, and consumer groups resume from their committed offsets. `streamctl admin
rebuild --from-bucket` does the same with no agent running; agents starting together rebuild it
once."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from streamhouse.ports.snapshots import REBUILD_SCHEMA_ID_LEAP
from streamhouse.testing.agent_process import AgentProcess
from tests.dr.world import DrWorld, consume, produce

TOPIC = "dr-rebuild"
GROUP = "dr-billing"
INTERVAL_MS = "600000"  # snapshots only at the first flush and at clean shutdowns
COMMITTED = 40
SCHEMA = json.dumps({"type": "record", "name": "Bill", "fields": [{"name": "n", "type": "long"}]})
LATER_SCHEMA = json.dumps({"type": "record", "name": "Note", "fields": []})


def _registry(agent: AgentProcess, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(agent.registry_url + path, data=data)
    request.add_header("Content-Type", "application/vnd.schemaregistry.v1+json")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def _history(world: DrWorld) -> tuple[list, list]:  # type: ignore[type-arg]
    """Round one is snapshotted (with the group's offsets) at a clean shutdown; round two is
    acknowledged (acks=all) after it, and the agent is then killed: only footers know it."""
    with world.start_agent("--snapshot-interval-ms", INTERVAL_MS) as agent:
        first = produce(agent.bootstrap, TOPIC, 90, "first")
        read = consume(agent.bootstrap, TOPIC, COMMITTED, group=GROUP, commit_after=COMMITTED)
        assert len(read) == COMMITTED
        assert _registry(agent, "/subjects/dr-value/versions", {"schema": SCHEMA}) == {"id": 1}
        agent.stop_cleanly()
    with world.start_agent("--snapshot-interval-ms", INTERVAL_MS) as agent:
        second = produce(agent.bootstrap, TOPIC, 60, "second")
        agent.kill()
    return first, second


def test_a_lost_metadata_store_comes_back_from_the_bucket(world: DrWorld) -> None:
    """Lost twice: rebuilt by `streamctl admin rebuild --from-bucket` with no agent running,
    then by two agents that start together on the new, empty store."""
    first, second = _history(world)
    everything = sorted(first + second)

    world.lose_metadata()
    done = world.streamctl("admin", "rebuild", "--from-bucket", "--output", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["snapshot_key"] and report["completed_here"]
    assert report["objects_new"] >= 1 and report["segments_added"] >= 1
    again = world.streamctl("admin", "rebuild", "--from-bucket")
    assert again.returncode == 1 and "in use" in again.stderr
    with world.start_agent("--no-rebuild-on-blank-metadata") as agent:
        assert consume(agent.bootstrap, TOPIC, len(everything)) == everything
        # the registry came back with the snapshot; ids given later leap past any lost ones
        assert json.loads(_registry(agent, "/schemas/ids/1")["schema"]) == json.loads(SCHEMA)
        assert _registry(agent, "/subjects") == ["dr-value"]
        later = _registry(agent, "/subjects/dr-later/versions", {"schema": LATER_SCHEMA})
        assert later["id"] > REBUILD_SCHEMA_ID_LEAP
        agent.stop_cleanly()

    world.lose_metadata()
    with ThreadPoolExecutor(2) as starting:
        started = list(starting.map(lambda name: world.start_agent(name=name), ["agent", "b"]))
    with started[0] as agent, started[1] as other:
        for each in (agent, other):
            assert consume(each.bootstrap, TOPIC, len(everything)) == everything
        resumed = consume(agent.bootstrap, TOPIC, len(everything) - COMMITTED, group=GROUP)
        committed_positions = {(r[0], r[1]) for r in everything} - {(r[0], r[1]) for r in resumed}
        assert len(committed_positions) == COMMITTED, "the group resumed where it committed"
        third = produce(other.bootstrap, TOPIC, 15, "third")
        last = max(r[1] for r in everything if r[0] == 0)
        assert min(r[1] for r in third if r[0] == 0) == last + 1
        other.stop_cleanly()
        agent.stop_cleanly()
    logs = [a.log_path.read_text() for a in started]
    assert sum("metadata rebuilt from the bucket" in log for log in logs) >= 1
    assert all("Traceback" not in log for log in logs)
