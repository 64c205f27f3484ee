"""The jobs and snapshots ports on every store: turns at cluster jobs in the store's time, and
the whole store dumped, restored into a blank store and a rebuild completed."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sim.metadata import SimMetadataStore
from streamhouse.errors import SnapshotIncompatible
from streamhouse.io.sql.store import SqlMetadataStore, open_sql_metadata
from streamhouse.io.sql.transactions import run_inline
from streamhouse.log.partition_txns import TxnBegan
from streamhouse.log.snapshot_format import (
    MetadataDump,
    Snapshot,
    TableDump,
    decode_snapshot,
    encode_snapshot,
)
from streamhouse.names import TopicPartition
from streamhouse.ports.leases import ObjectRecord
from streamhouse.ports.metadata import MetadataStore
from streamhouse.ports.schemas import GLOBAL, SchemaContent, SchemaReference
from streamhouse.ports.snapshots import (
    REBUILD_EPOCH_LEAP,
    REBUILD_GENERATION_LEAP,
    REBUILD_NODE_ID_LEAP,
    REBUILD_PRODUCER_ID_LEAP,
    REBUILD_SCHEMA_ID_LEAP,
    RebuildPlan,
    RebuiltPartition,
    StoreState,
)
from streamhouse.ports.tenancy import (
    DEFAULT_ORG,
    AclBinding,
    ApiKey,
    QuotaChange,
    ScramCredential,
)
from tests.unit.metadata.builders import (
    T0_MS,
    TP0,
    TP1,
    TTL_MS,
    StoreTime,
    committed,
    flush,
    orders_led_by_a,
    produced,
    run,
    segment,
)

INTERVAL_MS = 30_000


def test_a_job_is_granted_once_per_interval_of_store_time(
    store: MetadataStore, store_time: StoreTime
) -> None:
    assert run(store.claim_job("snapshot", "agent-a", INTERVAL_MS))
    assert not run(store.claim_job("snapshot", "agent-b", INTERVAL_MS))
    assert not run(store.claim_job("snapshot", "agent-a", INTERVAL_MS))
    assert run(store.claim_job("reconcile", "agent-b", INTERVAL_MS)), "jobs are independent"
    store_time.advance_ms(INTERVAL_MS + 1_000)
    assert run(store.claim_job("snapshot", "agent-b", INTERVAL_MS))
    assert not run(store.claim_job("snapshot", "agent-a", INTERVAL_MS))


def test_snapshot_numbers_only_grow(store: MetadataStore) -> None:
    numbers = [run(store.next_snapshot_seq()) for _ in range(3)]
    assert numbers == sorted(set(numbers))


def _used_store(store: MetadataStore) -> None:
    """Topic `orders` with a committed flush in each partition, an offset and a producer."""
    orders_led_by_a(store)
    commit = flush("k1", {TP0: 1, TP1: 1}, [(TP0, 0, 9), (TP1, 0, 4)])
    commit = type(commit)(
        obj=commit.obj,
        segments=commit.segments,
        epochs=commit.epochs,
        producers={TP0: [produced(7, 0, 0, 0, 10)]},
    )
    run(store.commit_flush(commit))
    run(store.allocate_producer_id())


def test_a_dump_restores_into_a_blank_store_as_it_was(
    store: MetadataStore, blank: SqlMetadataStore
) -> None:
    _used_store(store)
    dump = run(store.dump_metadata())
    assert "job_claims" not in dump.tables
    assert run(store.store_state()) is StoreState.IN_USE
    # through the bucket's format and back
    restored_dump = decode_snapshot(encode_snapshot(Snapshot(4, "agent-a", T0_MS, dump))).dump
    assert restored_dump == dump
    target = blank
    assert run(target.store_state()) is StoreState.BLANK
    assert run(target.begin_rebuild(restored_dump, "agent-b")) is StoreState.BLANK
    assert run(target.store_state()) is StoreState.REBUILD_PENDING
    assert run(target.begin_rebuild(restored_dump, "agent-c")) is StoreState.REBUILD_PENDING
    assert [s.last_offset for s in run(target.list_segments(TP0))] == [9]
    assert run(target.get_partition(TP1)).durable_end_offset == 5
    assert run(target.complete_rebuild(RebuildPlan(objects=[], partitions=[])))
    assert not run(target.complete_rebuild(RebuildPlan(objects=[], partitions=[])))
    assert run(target.store_state()) is StoreState.IN_USE
    moved = run(target.get_partition(TP0))
    assert moved.leader_epoch == 1 + REBUILD_EPOCH_LEAP and moved.leader_agent is None
    assert run(target.allocate_producer_id()) >= 1 + REBUILD_PRODUCER_ID_LEAP
    states = run(target.list_producer_states(TP0))
    assert [s.producer_id for s in states] == [7]


def test_a_store_in_use_is_never_overwritten(store: MetadataStore) -> None:
    _used_store(store)
    dump = run(store.dump_metadata())
    assert run(store.begin_rebuild(dump, "agent-b")) is StoreState.IN_USE
    assert not run(store.complete_rebuild(RebuildPlan(objects=[], partitions=[])))


def test_a_dump_of_a_newer_schema_is_refused(store: MetadataStore) -> None:
    dump = MetadataDump("9999", {"tables_from_the_future": TableDump(("a",), ((1,),))})
    with pytest.raises(SnapshotIncompatible, match="tables_from_the_future"):
        run(store.begin_rebuild(dump, "agent-b"))
    assert run(store.store_state()) is StoreState.BLANK


@pytest.fixture
def blank(
    request: pytest.FixtureRequest, backend: str, store_time: StoreTime, tmp_path: Path
) -> Iterator[SqlMetadataStore]:
    """A second store of the test's backend, blank: where a dump of `store` is restored."""
    if backend == "sim":
        assert store_time.virtual is not None
        opened: SqlMetadataStore = SimMetadataStore(clock=store_time.virtual)
        dropped = None
    elif backend == "sqlite":
        opened = open_sql_metadata(f"sqlite:///{tmp_path / 'rebuilt.db'}", store_clock=store_time)
        dropped = None
    else:
        server = request.getfixturevalue("postgres_server")
        dropped = f"rebuilt_{next(_rebuilt_numbers)}"
        opened = open_sql_metadata(server.create_database(dropped), store_clock=store_time)
    try:
        yield opened
    finally:
        run(opened.close())
        if dropped is not None:
            server.drop_database(dropped)


_rebuilt_numbers = itertools.count(1)


def test_a_rebuild_extends_partitions_and_creates_topics(
    store: MetadataStore, blank: SqlMetadataStore
) -> None:
    _used_store(store)
    dump = run(store.dump_metadata())
    assert run(blank.begin_rebuild(dump, "agent-b")) is StoreState.BLANK
    later = ObjectRecord("k2", "agent-a", "org-1", 200, T0_MS + 5)
    new_tp = TopicPartition("created-later", 2)
    plan = RebuildPlan(
        objects=[later],
        partitions=[
            RebuiltPartition(
                TP0,
                10,
                15,
                3,
                segments=[segment(TP0, 10, 14, "k2", 3)],
                producers=[produced(7, 0, 10, 10, 5)],
                txns=[TxnBegan(9, 12)],
            ),
            RebuiltPartition(new_tp, 40, 42, 6, segments=[segment(new_tp, 40, 41, "k2", 6)]),
        ],
        new_topics={"created-later": 3},
        now_ms=T0_MS + 10,
        producer_id_seen=REBUILD_PRODUCER_ID_LEAP * 3,
        snapshot_seq_seen=41,
    )
    assert run(blank.complete_rebuild(plan))
    tp0 = run(blank.get_partition(TP0))
    assert tp0.durable_end_offset == 15 and tp0.leader_epoch == 3 + REBUILD_EPOCH_LEAP
    assert [s.object_key for s in run(blank.list_segments(TP0))] == ["k1", "k2"]
    assert run(blank.list_open_txns(TP0)) == {9: 12}
    [state] = run(blank.list_producer_states(TP0))
    assert state.batches[-1].last_offset == 14
    topic = run(blank.get_topic("created-later"))
    assert topic is not None and topic.partition_count == 3
    grown = run(blank.get_partition(new_tp))
    assert (grown.log_start_offset, grown.durable_end_offset) == (40, 42)
    assert run(blank.get_partition(TopicPartition("created-later", 0))).durable_end_offset == 0
    assert run(blank.allocate_producer_id()) > REBUILD_PRODUCER_ID_LEAP * 3
    assert run(blank.next_snapshot_seq()) == 42
    assert run(blank.acquire_lease(TP0, "agent-b", TTL_MS)) is not None
    assert sorted(o.key for o in run(blank.list_objects())) == ["k1", "k2"]


def test_offsets_and_groups_come_back(store: MetadataStore, blank: SqlMetadataStore) -> None:
    _used_store(store)
    run(store.commit_offsets("billing", {TP0: committed(5)}))
    first = run(store.reserve_group_generations("billing", 10))
    dump = run(store.dump_metadata())
    assert run(blank.begin_rebuild(dump, "agent-b")) is StoreState.BLANK
    assert run(blank.complete_rebuild(RebuildPlan(objects=[], partitions=[])))
    assert run(blank.fetch_offsets("billing")) == {TP0: committed(5)}
    assert run(blank.reserve_group_generations("billing", 1)) >= first + 10 + 1


def _registry_in_use(store: MetadataStore) -> None:
    """Schemas on two subjects (one referring to the other), a version soft-deleted, one
    removed, an imported id, and configs and modes globally and per subject."""
    base = SchemaContent("AVRO", '"string"', (), None, None, "fp-base")
    user = SchemaContent(
        "JSON",
        '{"$ref":"base.json"}',
        (SchemaReference("base.json", "base-value", 1),),
        '{"properties":{"owner":"a"}}',
        '{"domainRules":[]}',
        "fp-user",
    )
    run(store.register_version("base-value", base, latest_version=None))
    run(store.register_version("user-value", user, latest_version=None))
    other = SchemaContent("PROTOBUF", "message M {}", (), None, None, "fp-other")
    run(store.register_version("user-value", other, latest_version=1, schema_id=77, version=2))
    gone = SchemaContent("AVRO", '"int"', (), None, None, "fp-gone")
    run(store.register_version("user-value", gone, latest_version=2))
    run(store.soft_delete_versions("user-value", [2, 3]))
    run(store.remove_versions("user-value", [3]))
    run(store.set_config(GLOBAL, '{"compatibilityLevel":"FULL"}'))
    run(store.set_config("user-value", '{"compatibilityLevel":"NONE"}'))
    run(store.set_mode(GLOBAL, "READWRITE"))
    run(store.set_mode("base-value", "READONLY"))


async def _registry_seen(store: MetadataStore) -> tuple[object, ...]:
    """Everything the registry's port can read back of `_registry_in_use`."""
    subjects = await store.subjects(include_deleted=True)
    versions = [await store.subject_versions(s, include_deleted=True) for s in subjects]
    ids = sorted({v.schema_id for found in versions for v in found})
    gone = await store.schema_with_fingerprint("fp-gone")
    schemas = [await store.schema(i) for i in ids]
    settings = [
        (await store.config(s), await store.mode(s)) for s in (GLOBAL, "base-value", "user-value")
    ]
    referencing = await store.referencing_schema_ids("base-value", 1)
    return subjects, versions, schemas, gone, settings, referencing


def test_the_schema_registry_comes_back_as_it_was(
    store: MetadataStore, blank: SqlMetadataStore
) -> None:
    _registry_in_use(store)
    assert run(store.store_state()) is StoreState.IN_USE, "a store with schemas is in use"
    dump = run(store.dump_metadata())
    dump = decode_snapshot(encode_snapshot(Snapshot(4, "agent-a", T0_MS, dump))).dump
    assert run(blank.begin_rebuild(dump, "agent-b")) is StoreState.BLANK
    assert run(blank.complete_rebuild(RebuildPlan(objects=[], partitions=[])))
    assert run(_registry_seen(blank)) == run(_registry_seen(store))
    versions = run(blank.subject_versions("user-value", include_deleted=True))
    assert [(v.version, v.deleted) for v in versions] == [(1, False), (2, True)]
    # an id registered after the snapshot may be in the bucket's records: never handed out again
    fresh = SchemaContent("AVRO", '"long"', (), None, None, "fp-fresh")
    added = run(blank.register_version("base-value", fresh, latest_version=1))
    assert added.schema_id > 77 + REBUILD_SCHEMA_ID_LEAP and added.version == 2
    again = run(blank.register_version("user-value", run(_content(blank, 1)), latest_version=2))
    assert again.schema_id == 1, "content the snapshot knew keeps its id"


async def _content(store: MetadataStore, schema_id: int) -> SchemaContent:
    stored = await store.schema(schema_id)
    assert stored is not None
    return stored.content


def test_a_snapshot_from_before_the_registry_restores(
    store: MetadataStore, blank: SqlMetadataStore
) -> None:
    """A snapshot taken at schema revision 0013 has no registry tables: it restores, and the
    registry starts above the leap."""
    _used_store(store)
    dump = run(store.dump_metadata())
    older = MetadataDump(
        "0013",
        {name: rows for name, rows in dump.tables.items() if not name.startswith("registry_")},
    )
    assert run(blank.begin_rebuild(older, "agent-b")) is StoreState.BLANK
    assert run(blank.complete_rebuild(RebuildPlan(objects=[], partitions=[])))
    assert run(blank.subjects(include_deleted=True)) == []
    schema = SchemaContent("AVRO", '"string"', (), None, None, "fp")
    added = run(blank.register_version("s", schema, latest_version=None))
    assert added.schema_id > REBUILD_SCHEMA_ID_LEAP


def test_a_store_rebuilt_without_a_snapshot_starts_schema_ids_above_the_leap(
    blank: SqlMetadataStore,
) -> None:
    assert run(blank.begin_rebuild(None, "agent-b")) is StoreState.BLANK
    assert run(blank.complete_rebuild(RebuildPlan(objects=[], partitions=[])))
    schema = SchemaContent("AVRO", '"string"', (), None, None, "fp")
    added = run(blank.register_version("s", schema, latest_version=None))
    assert added.schema_id > REBUILD_SCHEMA_ID_LEAP


def test_what_the_bucket_did_not_know_starts_above_the_rebuild(blank: SqlMetadataStore) -> None:
    """A topic or group missing from the snapshot and footers may have existed before the
    store was lost: created after a rebuild, it starts above every epoch and generation the
    rebuild knew, so clients can tell its log and generations from the lost ones."""
    assert run(blank.begin_rebuild(None, "agent-b")) is StoreState.BLANK
    assert run(blank.complete_rebuild(RebuildPlan(objects=[], partitions=[])))
    run(blank.create_topic("lost", 2, {}, T0_MS))
    first = run(blank.get_partition(TopicPartition("lost", 1))).leader_epoch
    assert first >= REBUILD_EPOCH_LEAP
    assert run(blank.reserve_group_generations("lost-group", 1)) >= REBUILD_GENERATION_LEAP
    # a second rebuild (the first one's store lost too) leaps above the first one's floor
    dump = run(blank.dump_metadata())
    again = SimMetadataStore()
    assert run(again.begin_rebuild(dump, "agent-c")) is StoreState.BLANK
    assert run(again.complete_rebuild(RebuildPlan(objects=[], partitions=[])))
    run(again.create_topic("lost-again", 1, {}, T0_MS))
    later = run(again.get_partition(TopicPartition("lost-again", 0))).leader_epoch
    assert later >= first + REBUILD_EPOCH_LEAP
    assert run(again.reserve_group_generations("other", 1)) >= 2 * REBUILD_GENERATION_LEAP


def test_a_store_never_rebuilt_starts_topics_and_groups_at_the_bottom(
    store: MetadataStore,
) -> None:
    run(store.create_topic("fresh", 1, {}, T0_MS))
    assert run(store.get_partition(TopicPartition("fresh", 0))).leader_epoch == 0
    assert run(store.reserve_group_generations("fresh-group", 1)) == 1


def test_agents_the_snapshot_did_not_know_get_node_ids_never_handed_out(
    store: MetadataStore, blank: SqlMetadataStore
) -> None:
    """An agent registered after the snapshot had a node id the rebuilt store cannot know:
    re-registering, it gets a new one above every id handed out, never another agent's; an
    agent the snapshot knew keeps its own."""
    _used_store(store)
    known = run(store.register_agent("agent-a", "host-a", 9092, T0_MS, TTL_MS))
    dump = run(store.dump_metadata())
    unknown = run(store.register_agent("agent-b", "host-b", 9092, T0_MS, TTL_MS))
    assert run(blank.begin_rebuild(dump, "agent-b")) is StoreState.BLANK
    assert run(blank.complete_rebuild(RebuildPlan(objects=[], partitions=[])))
    again = run(blank.register_agent("agent-c", "host-c", 9092, T0_MS, TTL_MS))
    assert again.node_id >= REBUILD_NODE_ID_LEAP > unknown.node_id
    assert run(blank.register_agent("agent-a", "host-a", 9092, T0_MS, TTL_MS)).node_id == (
        known.node_id
    )
    lost = SimMetadataStore()  # no snapshot at all: every node id is new
    assert run(lost.begin_rebuild(None, "agent-b")) is StoreState.BLANK
    assert run(lost.complete_rebuild(RebuildPlan(objects=[], partitions=[])))
    first = run(lost.register_agent("agent-a", "host-a", 9092, T0_MS, TTL_MS))
    assert first.node_id >= REBUILD_NODE_ID_LEAP


TENANCY_TABLES = ("orgs", "api_keys", "scram_credentials", "acls", "quotas")


def _tenancy_in_use(store: MetadataStore) -> None:
    """Two orgs besides `default`, keys (one revoked), SCRAM credentials of every byte, ACLs
    and quotas whose values no decimal spells exactly."""
    for org in ("acme", "globex"):
        run(store.create_org(org, T0_MS))
    run(store.add_key(ApiKey("SHK1", "acme", "admin", "hash-1", T0_MS)))
    run(store.add_key(ApiKey("SHK2", "globex", "member", "hash-2", T0_MS + 1)))
    run(store.add_key(ApiKey("SHK3", "acme", "member", "hash-3", T0_MS + 2)))
    run(store.revoke_key("SHK3", T0_MS + 3))
    for user, org in (("SHK1", "acme"), ("SHK2", "globex")):
        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            credential = ScramCredential(
                user, org, mechanism, bytes(range(256)), 8192, bytes(32), bytes([255] * 64)
            )
            run(store.set_scram_credential(credential))
    run(store.add_acls("acme", [AclBinding(2, "orders", 3, "User:SHK1", "*", 2, 3)]))
    run(store.add_acls(DEFAULT_ORG, [AclBinding(3, "billing", 4, "User:*", "*", 3, 2)]))
    changes = [
        QuotaChange((), "producer_byte_rate", 0.1),
        QuotaChange((("user", None),), "request_percentage", 1 / 3),
        QuotaChange((("client-id", "app"), ("user", "SHK1")), "consumer_byte_rate", 1e300),
    ]
    run(store.alter_quotas("acme", changes))


async def _tenancy_seen(store: MetadataStore) -> tuple[object, ...]:
    """Everything the tenancy port can read back."""
    orgs = await store.orgs()
    acls = [await store.acls(org.name) for org in orgs]
    quotas = [await store.quotas(org.name) for org in orgs]
    return orgs, await store.keys(), await store.scram_credentials(), acls, quotas


def test_tenancy_comes_back_as_it_was(store: MetadataStore, blank: SqlMetadataStore) -> None:
    _tenancy_in_use(store)
    assert run(store.store_state()) is StoreState.IN_USE, "orgs and keys alone: in use"
    dump = run(store.dump_metadata())
    assert all(dump.tables[name].rows for name in TENANCY_TABLES)
    dump = decode_snapshot(encode_snapshot(Snapshot(4, "agent-a", T0_MS, dump))).dump
    assert run(blank.begin_rebuild(dump, "agent-b")) is StoreState.BLANK, "over its seeded org"
    assert run(blank.complete_rebuild(RebuildPlan(objects=[], partitions=[])))
    assert run(_tenancy_seen(blank)) == run(_tenancy_seen(store))
    assert run(blank.dump_metadata()).tables["quotas"] == dump.tables["quotas"], "exact floats"
    assert run(blank.store_state()) is StoreState.IN_USE


def test_a_snapshot_from_before_tenancy_restores_with_the_default_org(
    store: MetadataStore, blank: SqlMetadataStore
) -> None:
    """A snapshot taken at schema revision 0014 has no tenancy tables: it restores, and the
    rebuilt store has the migrations' org `default`, ready for tenancy."""
    _used_store(store)
    dump = run(store.dump_metadata())
    older = MetadataDump(
        "0014", {name: rows for name, rows in dump.tables.items() if name not in TENANCY_TABLES}
    )
    assert run(blank.begin_rebuild(older, "agent-b")) is StoreState.BLANK
    assert run(blank.complete_rebuild(RebuildPlan(objects=[], partitions=[])))
    assert [org.name for org in run(blank.orgs())] == [DEFAULT_ORG]
    assert run(blank.keys()) == [] and run(blank.acls(DEFAULT_ORG)) == []
    run(blank.add_key(ApiKey("SHK1", DEFAULT_ORG, "admin", "hash", T0_MS)))
    assert [key.key_id for key in run(blank.keys())] == ["SHK1"]


def test_the_seeded_default_org_alone_leaves_a_store_blank(store: MetadataStore) -> None:
    assert [org.name for org in run(store.orgs())] == [DEFAULT_ORG]
    assert run(store.store_state()) is StoreState.BLANK
    assert run(store.create_org("acme", T0_MS))
    assert run(store.store_state()) is StoreState.IN_USE
    assert run(store.delete_org("acme"))
    assert run(store.store_state()) is StoreState.BLANK
    run(store.alter_quotas(DEFAULT_ORG, [QuotaChange((), "producer_byte_rate", 1.0)]))
    assert run(store.store_state()) is StoreState.IN_USE, "the default org's settings count"
    run(store.alter_quotas(DEFAULT_ORG, [QuotaChange((), "producer_byte_rate", None)]))
    run(store.add_acls(DEFAULT_ORG, [AclBinding(2, "orders", 3, "User:*", "*", 2, 3)]))
    assert run(store.store_state()) is StoreState.IN_USE
    assert run(store.begin_rebuild(None, "agent-b")) is StoreState.IN_USE


@pytest.fixture(params=["sqlite", "postgres"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """One real, blank database that several stores (agents) open."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"shared_{next(_rebuilt_numbers)}"
    yield server.create_database(name)
    server.drop_database(name)


def test_agents_beginning_a_rebuild_together_restore_it_once(
    store: MetadataStore, shared_url: str
) -> None:
    _used_store(store)
    dump = run(store.dump_metadata())
    agents = [open_sql_metadata(shared_url, run_blocking=run_inline) for _ in range(4)]
    try:
        together = threading.Barrier(len(agents))

        def begin(target: SqlMetadataStore) -> StoreState:
            together.wait()
            return run(target.begin_rebuild(dump, "agent"))

        with ThreadPoolExecutor(len(agents)) as pool:
            states = list(pool.map(begin, agents))
        assert states.count(StoreState.BLANK) == 1, states
        assert set(states) <= {StoreState.BLANK, StoreState.REBUILD_PENDING}
        assert [s.last_offset for s in run(agents[0].list_segments(TP0))] == [9]
        done = [run(a.complete_rebuild(RebuildPlan(objects=[], partitions=[]))) for a in agents]
        assert done == [True, False, False, False]
        late = run(agents[1].begin_rebuild(dump, "late"))
        assert late is StoreState.IN_USE
    finally:
        for agent in agents:
            run(agent.close())
