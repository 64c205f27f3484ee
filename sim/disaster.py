"""The disaster-recovery nemesis (the dr profile): the metadata store wiped under the cluster.

`wipe_metadata` crashes every agent, as the loss of the database they share would leave
them (a crash each, recorded as one), replaces the store's contents with a blank, freshly
migrated database (`SimMetadataStore.wipe`: same clock, same faults), records the wipe
(`FAULT_METADATA_WIPE` on every agent) and then what the wipe does to each group's committed
offsets: they go back to the newest snapshot's in the bucket (none without one), recorded as
an `OffsetReset` by WIPE_CLIENT -- the only place a committed offset may go back to one
committed before without anybody asking. Then the agents restart, staggered by the
nemesis's `amount` (0: together, so two may find the same blank or half-rebuilt store): an
agent restarting on a blank store rebuilds it from the bucket before it serves.

Topics created and never snapshotted, and partitions no object holds, are not in the bucket:
the operator's runbook after a rebuild creates what is missing again (`recreate_topics`, as
the workload created them), from the first agent up on, until done.

The bucket's own nemeses: `plant_orphan` puts junk shaped like a flushed object (its key)
there, new or looking older than the reconciler's grace; `damage_objects` deletes or corrupts
an object segment rows name once the cluster heals (`ObjectDamaged`, with the offsets it
held). `DeleteWatch` records every delete under orgs/ with the rows that named the object
then, and `reconcile_at_the_end` runs the operator's (verifying) reconcile past the grace and
judges what is left (`check_orphans`, `check_damage_reported`).

`final_storage` reads, without faults, what the pointers checker judges at the end: every
segment row of the store and the bytes of every object a row names.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from sim.checkers.index import WIPE_CLIENT, Violation, place_of
from sim.checkers.storage import (
    OBJECTS_PREFIX,
    ObjectDeleted,
    StoredObjects,
    check_damage_reported,
    check_orphans,
)
from sim.cluster import DOWN, PAUSED, UP, SimAgent, SimCluster
from sim.history import (
    FAULT_METADATA_WIPE,
    FAULT_RESTART,
    CommittedOffsetRead,
    ObjectDamaged,
    OffsetCommitted,
    OffsetReset,
    OffsetSpan,
    TopicCreated,
)
from sim.metadata import SimMetadataStore
from sim.object_store import SimObjectStore
from sim.options import Nemesis
from streamhouse.engine.admin import AdminService
from streamhouse.engine.reconciler import Reconciler
from streamhouse.errors import CorruptObject, StreamHouseError, UnknownTopicOrPartition
from streamhouse.io.sql.schema import objects as object_rows
from streamhouse.io.sql.schema import segments
from streamhouse.log.ids import object_key
from streamhouse.log.snapshot_format import SNAPSHOT_PREFIX, decode_snapshot, seq_of_key
from streamhouse.names import TopicPartition
from streamhouse.ports.leases import SegmentRecord
from streamhouse.tenancy.names import DEFAULT_ORG

SEGMENT_PAGE_ROWS = 1_000
RUNBOOK_RETRY_MS = 100
RESTART_RETRY_MS = 100
BUCKET_WAIT_MS = 50
END_MARGIN_MS = 1_000  # past the grace, at the end, before the operator's reconcile
COMMITTED_OFFSETS_TABLE = "committed_offsets"
GroupPartition = tuple[str, str, int]  # (group, topic, partition)
JUNK_ORGS = (DEFAULT_ORG, "junk")  # planted orphans alternate between these orgs' prefixes


async def wipe_metadata(cluster: SimCluster, nemesis: Nemesis) -> None:
    """Every agent crashes, the store is wiped, and the agents restart (see the module)."""
    while not _bucket_holds_data(cluster.objects):
        # A store lost before anything reached the bucket is a new cluster to the agents (the
        # rebuild has nothing to start from; producer ids, epochs and generations start
        # over): the disaster recovery is for starts once the first object or snapshot is
        # there.
        await cluster.clock.sleep_ms(BUCKET_WAIT_MS)
    for agent in cluster.agents:
        if agent.state in (UP, PAUSED):
            agent.crash()
    snapshot_key, offsets = newest_snapshot_offsets(cluster.objects)
    cluster.metadata.wipe()
    cluster.fault(FAULT_METADATA_WIPE, "*", detail=f"snapshot {snapshot_key or 'none'}")
    now_us = cluster.now_us()
    for group, topic, partition in sorted(_group_partitions(cluster) | set(offsets)):
        offset = offsets.get((group, topic, partition), -1)
        cluster.history.append(OffsetReset(now_us, WIPE_CLIENT, group, topic, partition, offset))
    count = len(cluster.agents)
    order = [cluster.agents[(nemesis.agent - 1 + step) % count] for step in range(count)]
    await asyncio.gather(
        *(
            _restart(cluster, agent, nemesis.duration_ms + step * nemesis.amount)
            for step, agent in enumerate(order)
        ),
        _runbook(cluster, nemesis.duration_ms),
    )


async def _runbook(cluster: SimCluster, after_ms: int) -> None:
    """The operator, once the agents come back: the topics the bucket did not tell, again."""
    await cluster.clock.sleep_ms(after_ms)
    while not await recreate_topics(cluster):
        await cluster.clock.sleep_ms(RUNBOOK_RETRY_MS)


async def recreate_topics(cluster: SimCluster) -> bool:
    """Create every topic the workload created that the store lacks, and grow any with fewer
    partitions, through an agent that is up; False when no agent could do it yet."""
    wanted: dict[str, int] = {}
    for event in cluster.history.of_type(TopicCreated):
        wanted[event.topic] = max(event.partitions, wanted.get(event.topic, 0))
    for agent in cluster.agents:
        if agent.state != UP or agent.running is None:
            continue
        admin = agent.running.admin
        try:
            for name, count in sorted(wanted.items()):
                await cluster.spawn(agent.host, _ensure(admin, name, count), "runbook")
        except StreamHouseError as error:
            cluster.record_trace("runbook.failed", agent.host, type(error).__name__)
            continue
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the runbook itself is stopped
            cluster.record_trace("runbook.failed", agent.host, "agent crashed")
            continue
        return True
    return False


async def _ensure(admin: AdminService, name: str, count: int) -> None:
    try:
        topic = await admin.topic(name)
    except UnknownTopicOrPartition:
        await admin.create_topic(name, count)
        return
    if topic.partition_count < count:
        await admin.add_partitions(name, count)


async def _restart(cluster: SimCluster, agent: SimAgent, after_ms: int) -> None:
    """Restart `agent` `after_ms` from now, unless something else restarted it meanwhile;
    under faults its start (the rebuild first) may fail: then it is started again, as a
    process supervisor would, until it comes up (or the safety phase ends)."""
    await cluster.clock.sleep_ms(after_ms)
    while agent.state == DOWN:
        cluster.fault(FAULT_RESTART, agent.host)
        if not await agent.start():
            await cluster.clock.sleep_ms(RESTART_RETRY_MS)


def _bucket_holds_data(objects: SimObjectStore) -> bool:
    return any(key.startswith((OBJECTS_PREFIX, SNAPSHOT_PREFIX)) for key in objects.stored_keys())


def _group_partitions(cluster: SimCluster) -> set[GroupPartition]:
    """Every group partition whose committed offset the history names so far."""
    return {
        (event.group, event.topic, event.partition)
        for event in cluster.history
        if isinstance(event, OffsetCommitted | OffsetReset | CommittedOffsetRead)
    }


def newest_snapshot_offsets(
    objects: SimObjectStore,
) -> tuple[str | None, dict[GroupPartition, int]]:
    """The newest snapshot in the bucket that decodes (what a rebuild restores) and the
    committed offsets it holds; (None, {}) without one."""
    numbered = sorted(
        (
            (seq, key)
            for key in objects.stored_keys()
            if key.startswith(SNAPSHOT_PREFIX)
            if (seq := seq_of_key(key)) is not None
        ),
        reverse=True,
    )
    for _, key in numbered:
        data = objects.peek(key)
        if data is None:
            continue
        try:
            snapshot = decode_snapshot(data)
        except CorruptObject:
            continue
        table = snapshot.dump.tables.get(COMMITTED_OFFSETS_TABLE)
        if table is None:
            return key, {}
        column = {name: index for index, name in enumerate(table.columns)}
        offsets: dict[GroupPartition, int] = {}
        for row in table.rows:
            group, topic = row[column["group_id"]], row[column["topic"]]
            partition, offset = row[column["partition"]], row[column["offset"]]
            assert isinstance(group, str) and isinstance(topic, str), row
            assert isinstance(partition, int) and isinstance(offset, int), row
            offsets[(group, topic, partition)] = offset
        return key, offsets
    return None, {}


async def final_storage(
    metadata: SimMetadataStore, objects: SimObjectStore
) -> tuple[list[SegmentRecord], StoredObjects]:
    """Every segment row of the store (read without faults) and the stored bytes of every
    object a row names (None: no such object)."""
    store = metadata.unfaulted
    rows: list[SegmentRecord] = []
    for topic in await store.list_topics():
        for partition in range(topic.partition_count):
            tp = TopicPartition(topic.name, partition)
            from_offset = 0
            while page := await store.list_segments(tp, from_offset, SEGMENT_PAGE_ROWS):
                rows += page
                from_offset = page[-1].last_offset + 1
    stored = {row.object_key: objects.peek(row.object_key) for row in rows}
    return rows, stored


class DeleteWatch:
    """Records every object under orgs/ that leaves the bucket, and the segment rows that
    named it at that moment (`check_deletes` judges them)."""

    def __init__(self, cluster: SimCluster) -> None:
        self._cluster = cluster
        self.deletes: list[ObjectDeleted] = []
        cluster.objects.on_delete = self._deleted

    def _deleted(self, key: str, modified_ms: int) -> None:
        if not key.startswith(OBJECTS_PREFIX):
            return
        naming = select(segments).where(segments.c.object_key == key)
        with self._cluster.metadata.unfaulted.engine.connect() as conn:
            rows = conn.execute(naming).all()
            released_ms = conn.execute(
                select(object_rows.c.released_ms).where(object_rows.c.key == key)
            ).scalar()
        named_by = tuple(
            f"{place_of(row.topic, row.partition)} {row.base_offset}..{row.last_offset}"
            for row in rows
        )
        age_ms = self._cluster.clock.now_ms() - modified_ms  # the bucket's clock
        released_age_ms = None  # by the store's clock, as the reconciler judges it
        if released_ms is not None:
            released_age_ms = self._cluster.metadata.clock.now_ms() - int(released_ms)
        deleted = ObjectDeleted(self._cluster.now_us(), key, age_ms, named_by, released_age_ms)
        self.deletes.append(deleted)
        self._cluster.record_trace("object.deleted", key, len(named_by))


def plant_orphan(cluster: SimCluster, nemesis: Nemesis) -> None:
    """Junk shaped like a flushed object (its key, not its bytes) appears in the bucket,
    looking `nemesis.amount` ms old: the rebuild must pass over it, the reconciler delete it
    once past the grace, and never before. Every other one is under an org of its own: both
    walk every org's prefix."""
    now_ms = cluster.clock.now_ms()
    number = len([k for k in cluster.objects.stored_keys() if "/junk-" in k])
    org = JUNK_ORGS[number % len(JUNK_ORGS)]
    key = object_key(org, "junk", now_ms, number.to_bytes(10, "big"))
    cluster.objects.plant(key, b"not an object of ours " * (number + 1), now_ms - nemesis.amount)
    cluster.record_trace("object.planted", key, nemesis.amount)


async def reconcile_at_the_end(cluster: SimCluster) -> list[Violation]:
    """The operator's reconcile once everything healed and the grace passed (the agents'
    background runs, if any, had their turns meanwhile); then every object old enough is one
    a segment row names (`check_orphans`)."""
    settings = cluster.options.settings
    await cluster.clock.sleep_ms(settings.reconcile_grace_ms + END_MARGIN_MS)
    reconciler = Reconciler(settings, cluster.clock, cluster.objects, cluster.metadata)
    report = await cluster.spawn("operator", reconciler.run(verify=True), "reconcile")
    cluster.record_trace(
        "reconciled", report.listed, report.orphans_deleted, report.missing, report.corrupt
    )
    now_ms = cluster.clock.now_ms()
    rows, _ = await final_storage(cluster.metadata, cluster.objects)
    created = {o.key: o.created_ms for o in await cluster.metadata.unfaulted.list_objects()}
    listed = {
        key: cluster.objects.modified_ms(key) or 0
        for key in cluster.objects.stored_keys()
        if key.startswith(OBJECTS_PREFIX)
    }
    referenced = {row.object_key for row in rows}
    released = await _released_ages_ms(cluster)
    grace_ms = settings.reconcile_grace_ms
    found = check_orphans(listed, created, referenced, now_ms, grace_ms, released)
    damaged = [e.key for e in cluster.history.of_type(ObjectDamaged) if e.key in referenced]
    return found + check_damage_reported(damaged, [d.key for d in report.damaged])


async def _released_ages_ms(cluster: SimCluster) -> dict[str, int]:
    """How long ago, by the store's clock, each object lost its last segment row (objects
    that never did are left out)."""
    released: dict[str, int] = {}
    after = ""
    while page := await cluster.metadata.unfaulted.list_object_refs(after, SEGMENT_PAGE_ROWS):
        for ref in page:
            if ref.released_age_ms is not None:
                released[ref.key] = ref.released_age_ms
        after = page[-1].key
    return released


def damage_objects(
    cluster: SimCluster, nemeses: tuple[Nemesis, ...], rows: list[SegmentRecord]
) -> None:
    """The object nemesis, once the cluster healed (after every wipe): for each, an object the
    segment rows (`rows`, read without faults) name is deleted or has a byte of one of its
    blocks flipped, and the offsets they name for it are recorded (`ObjectDamaged`): reads
    there must answer an error, the rest keep serving, the reconciler must report it."""
    for nemesis in nemeses:
        keys = sorted({row.object_key for row in rows if cluster.objects.peek(row.object_key)})
        if not keys:
            return
        key = keys[nemesis.duration_ms % len(keys)]  # its selector
        named = sorted(
            (row for row in rows if row.object_key == key),
            key=lambda row: (row.topic, row.partition, row.base_offset),
        )
        corrupt_at = None
        if nemesis.amount:
            corrupt_at = named[0].position + named[0].length // 2
        cluster.objects.damage(key, corrupt_at)
        how = "deleted" if corrupt_at is None else "corrupted"
        spans = tuple(
            OffsetSpan(row.topic, row.partition, row.base_offset, row.last_offset) for row in named
        )
        cluster.history.append(ObjectDamaged(cluster.now_us(), key, how, spans))
        cluster.record_trace("object.damaged", key, how, len(spans))
