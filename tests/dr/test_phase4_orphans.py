"""DR phase 4: orphan objects (an upload whose commit never came, the objects of a deleted
topic) are kept within the grace, deleted past it by `streamctl admin reconcile` (a dry run
first deletes nothing), and a second run changes nothing; the snapshots and the log stay."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from tests.dr.world import CLIENT_TIMEOUT_S, DrWorld, consume, produce

TOPIC = "dr-kept"
GONE = "dr-gone"
ORPHAN = "orgs/default/objects/20200101/agent-x-01orphan.obj"


def test_orphans_are_deleted_after_the_grace_and_reconcile_is_idempotent(
    world: DrWorld,
) -> None:
    with world.start_agent("--reconcile-interval-ms", "0") as agent:
        kept = produce(agent.bootstrap, TOPIC, 60, "kept")
        produce(agent.bootstrap, GONE, 30, "gone")
        admin = AdminClient({"bootstrap.servers": agent.bootstrap})
        admin.delete_topics([GONE])[GONE].result(CLIENT_TIMEOUT_S)
        agent.stop_cleanly()
    world.put(ORPHAN, b"an upload whose commit never came")
    objects_before = world.keys("orgs/")
    snapshots = world.keys("metadata/")
    assert snapshots, "the agent wrote snapshots"

    young = world.reconcile()  # the default grace: everything was written just now
    assert young["orphans_deleted"] == 0 and young["orphans_kept_in_grace"] >= 2
    dry = world.reconcile("--grace-ms", "0", "--dry-run")
    assert dry["orphans_deleted"] == young["orphans_kept_in_grace"]
    assert world.keys("orgs/") == objects_before

    done = world.reconcile("--grace-ms", "0")
    assert done["orphans_deleted"] == dry["orphans_deleted"]
    assert done["bytes_freed"] == dry["bytes_freed"] > 0
    after = world.keys("orgs/")
    assert ORPHAN not in after and len(after) == len(objects_before) - done["orphans_deleted"]
    assert len(after) == done["referenced"] and (done["missing"], done["corrupt"]) == (0, 0)
    assert world.keys("metadata/") == snapshots  # not the reconciler's

    again = world.reconcile("--grace-ms", "0", "--verify")
    assert (again["orphans_deleted"], again["orphans_kept_in_grace"]) == (0, 0)
    assert again["referenced"] == len(after) and again["blocks_verified"] >= len(after)
    assert world.keys("orgs/") == after

    with world.start_agent("--reconcile-interval-ms", "0") as agent:
        assert consume(agent.bootstrap, TOPIC, len(kept)) == kept
        agent.stop_cleanly()
