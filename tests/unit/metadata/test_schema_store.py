"""The schema registry's port: every adapter keeps schemas, subjects' versions, configs and
modes alike, and agents registering at once never share an id or a version."""

from __future__ import annotations

import pytest

from sim.metadata import MetadataFaults, SimMetadataStore
from sim.rng import SeededRng
from streamhouse.errors import MetadataUnavailable, MetadataUnknownOutcome
from streamhouse.io.sql.store import SqlMetadataStore
from streamhouse.ports.metadata import MetadataStore
from streamhouse.ports.schemas import (
    GLOBAL,
    SchemaContent,
    SchemaIdTaken,
    SchemaReference,
    SubjectChanged,
    SubjectVersion,
)
from tests.unit.metadata.builders import all_at_once, run


def content(name: str, *references: SchemaReference) -> SchemaContent:
    """An Avro record named `name`, fingerprinted by its name and references."""
    text = f'{{"type":"record","name":"{name}","fields":[]}}'
    named = ",".join(f"{r.name}@{r.subject}/{r.version}" for r in references)
    return SchemaContent("AVRO", text, references, None, None, f"fp-{name}-{named}")


def register(
    store: MetadataStore, subject: str, schema: SchemaContent, **imported: int
) -> SubjectVersion:
    """Register as the engine does: fenced on the latest version it read."""
    versions = run(store.subject_versions(subject, include_deleted=True))
    latest = versions[-1].version if versions else None
    return run(store.register_version(subject, schema, latest_version=latest, **imported))


def numbers(store: MetadataStore, subject: str, *, include_deleted: bool = False) -> list[int]:
    found = run(store.subject_versions(subject, include_deleted=include_deleted))
    return [v.version for v in found]


# ---------------------------------------------------------------- schemas and versions


def test_a_registered_schema_is_found_by_id_and_fingerprint(store: MetadataStore) -> None:
    schema = SchemaContent(
        "PROTOBUF",
        'syntax = "proto3"; message A {}',
        (SchemaReference("other.proto", "other-value", 2),),
        '{"properties":{"owner":"team-a"}}',
        '{"domainRules":[]}',
        "fp-proto",
    )
    assert run(store.schema(1)) is None
    assert run(store.schema_with_fingerprint("fp-proto")) is None
    added = run(store.register_version("orders-value", schema, latest_version=None))
    assert added == SubjectVersion("orders-value", 1, added.schema_id, deleted=False)
    stored = run(store.schema(added.schema_id))
    assert stored is not None and stored.content == schema
    assert run(store.schema_with_fingerprint("fp-proto")) == stored


def test_references_keep_their_order(store: MetadataStore) -> None:
    refs = (
        SchemaReference("z.Zed", "zed", 3),
        SchemaReference("a.Ay", "ay", 1),
        SchemaReference("m.Em", "em", 2),
    )
    added = register(store, "s", content("Ordered", *refs))
    stored = run(store.schema(added.schema_id))
    assert stored is not None and stored.content.references == refs


def test_versions_count_up_lowest_first(store: MetadataStore) -> None:
    ids = [register(store, "s", content(name)).schema_id for name in ("A", "B", "C")]
    assert len(set(ids)) == 3
    listed = run(store.subject_versions("s", include_deleted=False))
    assert [(v.version, v.schema_id) for v in listed] == list(zip([1, 2, 3], ids, strict=True))
    assert run(store.subject_versions("unknown", include_deleted=True)) == []


def test_new_ids_are_one_above_the_highest_ever_used(store: MetadataStore) -> None:
    first = register(store, "s", content("A")).schema_id
    second = register(store, "s", content("B")).schema_id
    assert second == first + 1
    register(store, "t", content("Imported"), schema_id=500, version=1)
    assert register(store, "s", content("C")).schema_id == 501


def test_the_same_content_has_one_id_across_subjects(store: MetadataStore) -> None:
    schema = content("Shared")
    first = register(store, "a-value", schema)
    second = register(store, "b-value", schema)
    assert second.schema_id == first.schema_id and second.version == 1
    both = run(store.schema_versions(first.schema_id, include_deleted=False))
    assert [(v.subject, v.version) for v in both] == [("a-value", 1), ("b-value", 1)]


def test_a_version_that_is_not_the_latest_read_is_refused(store: MetadataStore) -> None:
    run(store.register_version("s", content("A"), latest_version=None))
    with pytest.raises(SubjectChanged):
        run(store.register_version("s", content("B"), latest_version=None))
    run(store.register_version("s", content("B"), latest_version=1))
    with pytest.raises(SubjectChanged):
        run(store.register_version("s", content("C"), latest_version=1))
    with pytest.raises(SubjectChanged):
        run(store.register_version("s", content("C"), latest_version=3))
    assert numbers(store, "s") == [1, 2]
    assert run(store.schema_with_fingerprint(content("C").fingerprint)) is None


def test_soft_deleted_versions_are_hidden_but_keep_their_numbers(store: MetadataStore) -> None:
    for name in ("A", "B", "C"):
        register(store, "s", content(name))
    run(store.soft_delete_versions("s", [2, 3]))
    run(store.soft_delete_versions("s", [3]))  # already deleted: stays so
    assert numbers(store, "s") == [1]
    everything = run(store.subject_versions("s", include_deleted=True))
    assert [(v.version, v.deleted) for v in everything] == [(1, False), (2, True), (3, True)]
    assert register(store, "s", content("D")).version == 4, "3 is soft-deleted, still taken"
    hidden = run(store.schema_with_fingerprint(content("B").fingerprint))
    assert hidden is not None
    assert run(store.schema_versions(hidden.schema_id, include_deleted=False)) == []
    assert run(store.schema_versions(hidden.schema_id, include_deleted=True)) == [
        SubjectVersion("s", 2, hidden.schema_id, deleted=True)
    ]


def test_subjects_are_listed_sorted_live_unless_asked(store: MetadataStore) -> None:
    for subject in ("c", "a", "b", "B-value", "a_b", "a-c"):
        register(store, subject, content(subject.upper()))
    register(store, "a", content("A2"))
    run(store.soft_delete_versions("b", [1]))
    run(store.soft_delete_versions("a", [1]))
    assert run(store.subjects(include_deleted=False)) == ["B-value", "a", "a-c", "a_b", "c"]
    assert run(store.subjects(include_deleted=True)) == ["B-value", "a", "a-c", "a_b", "b", "c"]
    run(store.remove_versions("b", [1]))
    assert run(store.subjects(include_deleted=True)) == ["B-value", "a", "a-c", "a_b", "c"]


def test_removing_the_highest_version_frees_its_number(store: MetadataStore) -> None:
    for name in ("A", "B", "C"):
        register(store, "s", content(name))
    run(store.soft_delete_versions("s", [2, 3]))
    run(store.remove_versions("s", [2]))
    assert numbers(store, "s", include_deleted=True) == [1, 3]
    assert register(store, "s", content("D")).version == 4, "2 was not the highest"
    run(store.soft_delete_versions("s", [4]))
    run(store.remove_versions("s", [4]))
    assert register(store, "s", content("E")).version == 4, "4 was the highest"


def test_a_subject_emptied_for_good_starts_again_at_one(store: MetadataStore) -> None:
    first = register(store, "s", content("A"))
    register(store, "s", content("B"))
    run(store.soft_delete_versions("s", [1, 2]))
    run(store.remove_versions("s", [1, 2]))
    assert numbers(store, "s", include_deleted=True) == []
    again = register(store, "s", content("A"))
    assert (again.version, again.schema_id) == (1, first.schema_id), "removed: same id back"
    stored = run(store.schema(first.schema_id))
    assert stored is not None and stored.content == content("A"), "schemas are never removed"


def test_ids_are_never_reused_after_removal(store: MetadataStore) -> None:
    first = register(store, "s", content("A"))
    run(store.remove_versions("s", [1]))
    assert register(store, "s", content("B")).schema_id == first.schema_id + 1


# ---------------------------------------------------------------- imports


def test_an_import_keeps_the_given_id_and_version(store: MetadataStore) -> None:
    imported = register(store, "s", content("A"), schema_id=42, version=7)
    assert imported == SubjectVersion("s", 7, 42, deleted=False)
    assert register(store, "s", content("B")).version == 8
    assert register(store, "t", content("A"), schema_id=42, version=1).schema_id == 42
    gap = run(store.register_version("s", content("C"), latest_version=8, version=3))
    assert gap.version == 3, "an import may fill a number never used"
    assert numbers(store, "s") == [3, 7, 8]


def test_an_import_of_a_taken_id_or_version_is_refused(store: MetadataStore) -> None:
    register(store, "s", content("A"), schema_id=10, version=1)
    with pytest.raises(SchemaIdTaken):  # the id is another content's
        register(store, "s", content("B"), schema_id=10, version=2)
    with pytest.raises(SchemaIdTaken):  # the content has another id already
        register(store, "t", content("A"), schema_id=11, version=1)
    with pytest.raises(SchemaIdTaken):  # the version exists
        run(store.register_version("s", content("C"), latest_version=1, version=1))
    run(store.soft_delete_versions("s", [1]))
    with pytest.raises(SchemaIdTaken):  # soft-deleted, still there
        run(store.register_version("s", content("C"), latest_version=1, version=1))
    assert numbers(store, "s", include_deleted=True) == [1]
    assert run(store.schema_with_fingerprint(content("B").fingerprint)) is None
    assert run(store.schema_with_fingerprint(content("C").fingerprint)) is None


# ---------------------------------------------------------------- references


def test_referencing_schema_ids_name_who_refers_to_a_version(store: MetadataStore) -> None:
    base = register(store, "base", content("Base"))
    ref = SchemaReference("Base", "base", base.version)
    users = [register(store, subject, content(subject, ref)) for subject in ("u2", "u1")]
    register(store, "other", content("Other", SchemaReference("Base", "base", 2)))
    expected = sorted(user.schema_id for user in users)
    assert run(store.referencing_schema_ids("base", 1)) == expected
    assert run(store.referencing_schema_ids("base", 3)) == []
    assert run(store.referencing_schema_ids("u1", 1)) == []


# ---------------------------------------------------------------- configs and modes


def test_configs_are_kept_per_subject_and_globally(store: MetadataStore) -> None:
    assert run(store.config(GLOBAL)) is None
    run(store.set_config(GLOBAL, '{"compatibilityLevel":"BACKWARD"}'))
    run(store.set_config("s", '{"compatibilityLevel":"NONE"}'))
    run(store.set_config("s", '{"compatibilityLevel":"FULL"}'))
    assert run(store.config(GLOBAL)) == '{"compatibilityLevel":"BACKWARD"}'
    assert run(store.config("s")) == '{"compatibilityLevel":"FULL"}'
    run(store.set_config("s", None))
    run(store.set_config("never-set", None))
    assert run(store.config("s")) is None
    assert run(store.config(GLOBAL)) == '{"compatibilityLevel":"BACKWARD"}'


def test_modes_are_kept_per_subject_and_globally(store: MetadataStore) -> None:
    assert run(store.mode(GLOBAL)) is None
    run(store.set_mode(GLOBAL, "READWRITE"))
    run(store.set_mode("s", "IMPORT"))
    run(store.set_mode("s", "READONLY"))
    assert (run(store.mode(GLOBAL)), run(store.mode("s"))) == ("READWRITE", "READONLY")
    run(store.set_mode(GLOBAL, None))
    assert (run(store.mode(GLOBAL)), run(store.mode("s"))) == (None, "READONLY")


# ---------------------------------------------------------------- faults


def test_the_simulator_faults_registry_calls_like_any_other() -> None:
    store = SimMetadataStore(SeededRng(1), MetadataFaults(unavailable_rate=1.0))
    with pytest.raises(MetadataUnavailable):
        run(store.schema(1))
    with pytest.raises(MetadataUnavailable):
        run(store.set_mode(GLOBAL, "READONLY"))
    store.faults = MetadataFaults(unknown_outcome_rate=1.0)
    with pytest.raises(MetadataUnknownOutcome):  # applied, its outcome lost
        run(store.register_version("s", content("A"), latest_version=None))
    store.faults = MetadataFaults()
    assert numbers(store, "s") == [1]
    run(store.close())


# ---------------------------------------------------------------- agents at once

WORKERS = 8
ROUNDS = 4


def test_agents_registering_at_once_share_no_id_and_no_version(
    sql_store: SqlMetadataStore,
) -> None:
    """Each worker registers its own contents and contents every worker registers too, on its
    own subject and on shared ones, re-reading and retrying whenever the subject moved."""

    def worker(index: int) -> list[tuple[str, str]]:
        done = []
        for round_ in range(ROUNDS):
            for subject, name in (
                (f"own-{index}", f"Own{index}x{round_}"),
                ("shared", f"Shared{round_}"),
                (f"pair-{index % 2}", f"Own{index}x{round_}"),
            ):
                _register_retried(sql_store, subject, content(name))
                done.append((subject, name))
        return done

    registered = all_at_once([lambda index=index: worker(index) for index in range(WORKERS)])
    by_subject: dict[str, list[str]] = {}
    for subject, name in (pair for done in registered for pair in done):
        by_subject.setdefault(subject, []).append(name)
    ids: dict[str, int] = {}
    for subject, names in by_subject.items():
        versions = run(sql_store.subject_versions(subject, include_deleted=True))
        assert [v.version for v in versions] == list(range(1, len(names) + 1)), subject
        for found in versions:
            stored = run(sql_store.schema(found.schema_id))
            assert stored is not None
            assert ids.setdefault(stored.content.fingerprint, found.schema_id) == found.schema_id
        stored_names = sorted(_name_of(sql_store, v.schema_id) for v in versions)
        assert stored_names == sorted(names), subject
    assert len(set(ids.values())) == len(ids), "two contents share an id"
    assert sorted(ids.values()) == list(range(1, len(ids) + 1)), "ids are handed out in turn"


def _register_retried(store: SqlMetadataStore, subject: str, schema: SchemaContent) -> None:
    while True:
        try:
            register(store, subject, schema)
            return
        except SubjectChanged:
            continue


def _name_of(store: SqlMetadataStore, schema_id: int) -> str:
    stored = run(store.schema(schema_id))
    assert stored is not None
    return stored.content.text.split('"name":"')[1].split('"')[0]
