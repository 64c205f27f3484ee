"""DR phase 2: segment rows deleted behind the agents' back (as retention will: the rows first,
the objects later) leave objects nothing refers to; the reconciler finds them, keeps them
within the grace and deletes them past it, keeps every object a row still names, and the
rest of the log reads back byte for byte."""

from __future__ import annotations

from tests.dr.world import DrWorld, consume, produce

KEPT = "dr-rows-kept"
LOST = "dr-rows-lost"


def test_objects_whose_rows_were_deleted_are_reconciled_away(world: DrWorld) -> None:
    with world.start_agent("--reconcile-interval-ms", "0") as agent:
        kept = produce(agent.bootstrap, KEPT, 60, "kept")
        produce(agent.bootstrap, LOST, 60, "lost")  # later flushes: objects of its own
        agent.stop_cleanly()
    before = world.keys("orgs/")
    clean = world.reconcile("--grace-ms", "0")
    assert clean["orphans_deleted"] == 0 and clean["referenced"] == len(before)

    world.sql(f"DELETE FROM segments WHERE topic = '{LOST}'")
    world.sql(f"UPDATE partitions SET log_start_offset = durable_end_offset WHERE topic = '{LOST}'")
    young = world.reconcile()
    assert young["orphans_deleted"] == 0 and young["orphans_kept_in_grace"] >= 1
    assert world.keys("orgs/") == before, "nothing goes within the grace"

    done = world.reconcile("--grace-ms", "0")
    assert done["orphans_deleted"] == young["orphans_kept_in_grace"]
    after = world.keys("orgs/")
    assert len(after) == len(before) - done["orphans_deleted"] == done["referenced"]
    assert (done["missing"], done["corrupt"]) == (0, 0)
    again = world.reconcile("--grace-ms", "0", "--verify")
    assert (again["orphans_deleted"], again["missing"], again["corrupt"]) == (0, 0, 0)
    assert world.keys("orgs/") == after

    with world.start_agent("--reconcile-interval-ms", "0") as agent:
        assert consume(agent.bootstrap, KEPT, len(kept)) == kept
        agent.stop_cleanly()
