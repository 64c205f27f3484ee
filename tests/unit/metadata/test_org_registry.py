"""The registry as each org sees it (engine/org_registry.py) over every metadata store: two
orgs' subjects of one name stay apart, ids, subjects, versions and configs of one org are
invisible to another, deletes stay in their org, references name the org's subjects, and the
broker's validation of an org's topic finds that org's subject."""

from __future__ import annotations

import json
import struct
from collections.abc import Awaitable

import pytest

from sim.clock import VirtualClock
from streamhouse.engine.org_registry import OrgRegistry
from streamhouse.engine.schema_registry import (
    INVALID_SUBJECT,
    SCHEMA_NOT_FOUND,
    SUBJECT_LEVEL_COMPATIBILITY_NOT_CONFIGURED,
    SUBJECT_NOT_FOUND,
    RegistryError,
    SchemaRegistry,
    SchemaRequest,
)
from streamhouse.engine.schema_validation import RecordSchemas
from streamhouse.io.sql.store import SqlMetadataStore
from streamhouse.kafka.records import Record
from streamhouse.ports.schemas import GLOBAL, SchemaReference
from streamhouse.tenancy.names import DEFAULT_ORG
from tests.unit.metadata.builders import run

SUBJECT = "orders-value"
ORDER = SchemaRequest(
    json.dumps({"type": "record", "name": "Order", "fields": [{"name": "id", "type": "long"}]})
)
ITEM = SchemaRequest(
    json.dumps({"type": "record", "name": "Item", "fields": [{"name": "sku", "type": "string"}]})
)


def _refused(call: Awaitable[object]) -> RegistryError:
    with pytest.raises(RegistryError) as refused:
        run(call)
    return refused.value


def _orgs(store: SqlMetadataStore) -> tuple[SchemaRegistry, OrgRegistry, OrgRegistry]:
    registry = SchemaRegistry(store)
    return registry, OrgRegistry(registry, "acme"), OrgRegistry(registry, "globex")


def test_two_orgs_register_one_subject_name_and_each_gets_its_own_versions(
    store: SqlMetadataStore,
) -> None:
    _, acme, globex = _orgs(store)
    acme_order = run(acme.register(SUBJECT, ORDER))
    globex_item = run(globex.register(SUBJECT, ITEM))
    assert (acme_order.subject, acme_order.version) == (SUBJECT, 1)
    assert (globex_item.subject, globex_item.version) == (SUBJECT, 1)
    assert acme_order.schema_id != globex_item.schema_id
    assert run(acme.version(SUBJECT, "latest", deleted=False)).schema_id == acme_order.schema_id
    assert run(globex.subjects(deleted=False, deleted_only=False)) == [SUBJECT]
    listed = run(acme.schemas(prefix="", deleted=False, latest_only=False))
    assert [(item.subject, item.schema_id) for item in listed] == [(SUBJECT, acme_order.schema_id)]


def test_an_org_cannot_read_another_org_s_ids_subjects_versions_or_config(
    store: SqlMetadataStore,
) -> None:
    _, acme, globex = _orgs(store)
    secret = run(acme.register("payments-value", ORDER))
    run(acme.set_config("payments-value", {"compatibility": "NONE"}))
    run(acme.set_config(GLOBAL, {"compatibility": "FULL"}))
    unknown = _refused(globex.schema_by_id(secret.schema_id))
    assert (unknown.error_code, unknown.message) == (  # as an id never issued
        SCHEMA_NOT_FOUND,
        f"Schema {secret.schema_id} not found",
    )
    assert _refused(globex.schema_versions(secret.schema_id, deleted=True)).error_code == (
        SCHEMA_NOT_FOUND
    )
    assert run(globex.subjects(deleted=True, deleted_only=False)) == []
    assert run(globex.schemas(prefix="", deleted=True, latest_only=False)) == []
    assert _refused(
        globex.versions("payments-value", deleted=True, deleted_only=False)
    ).error_code == (SUBJECT_NOT_FOUND)
    assert _refused(globex.config("payments-value")).error_code == (
        SUBJECT_LEVEL_COMPATIBILITY_NOT_CONFIGURED
    )
    assert run(globex.config(GLOBAL)) == {"compatibilityLevel": "BACKWARD"}  # its own global
    assert run(acme.config(GLOBAL)) == {"compatibilityLevel": "FULL"}
    assert run(acme.schema_by_id(secret.schema_id)).content.text


def test_deleting_in_one_org_leaves_the_other_s_subject_and_an_id_shared_by_content(
    store: SqlMetadataStore,
) -> None:
    _, acme, globex = _orgs(store)
    ours = run(acme.register(SUBJECT, ORDER))
    theirs = run(globex.register(SUBJECT, ORDER))
    assert ours.schema_id == theirs.schema_id  # one content, one id
    assert run(acme.delete_subject(SUBJECT, permanent=False)) == [1]
    assert run(acme.delete_subject(SUBJECT, permanent=True)) == [1]
    assert run(globex.versions(SUBJECT, deleted=False, deleted_only=False)) == [1]
    versions = run(globex.schema_versions(theirs.schema_id, deleted=True))
    assert [(v.subject, v.version) for v in versions] == [(SUBJECT, 1)]
    assert _refused(acme.schema_by_id(ours.schema_id)).error_code == SCHEMA_NOT_FOUND


def test_a_soft_deleted_version_keeps_its_id_visible_to_its_org_only(
    store: SqlMetadataStore,
) -> None:
    _, acme, globex = _orgs(store)
    added = run(acme.register(SUBJECT, ORDER))
    run(acme.delete_subject(SUBJECT, permanent=False))
    assert run(acme.schema_by_id(added.schema_id)).schema_id == added.schema_id
    assert run(acme.subjects(deleted=False, deleted_only=True)) == [SUBJECT]
    assert run(globex.subjects(deleted=False, deleted_only=True)) == []
    assert _refused(globex.schema_by_id(added.schema_id)).error_code == SCHEMA_NOT_FOUND


def test_references_name_subjects_of_the_org(store: SqlMetadataStore) -> None:
    _, acme, globex = _orgs(store)
    run(acme.register("item", ITEM))
    basket = SchemaRequest(
        json.dumps(
            {"type": "record", "name": "Basket", "fields": [{"name": "item", "type": "Item"}]}
        ),
        references=(SchemaReference("Item", "item", 1),),
    )
    added = run(acme.register("basket-value", basket))
    assert added.content.references == (SchemaReference("Item", "item", 1),)
    shown = run(acme.schema_by_id(added.schema_id))
    assert shown.content.references == (SchemaReference("Item", "item", 1),)
    assert run(acme.referenced_by("item", "1")) == [added.schema_id]
    refused = _refused(globex.register("basket-value", basket))  # globex has no subject `item`
    assert "'item'" in refused.message and "acme" not in refused.message


def test_the_default_org_keeps_bare_names_and_refuses_foreign_looking_ones(
    store: SqlMetadataStore,
) -> None:
    registry, acme, _ = _orgs(store)
    default = OrgRegistry(registry, DEFAULT_ORG)
    run(default.register(SUBJECT, ORDER))
    run(acme.register(SUBJECT, ITEM))
    assert run(registry.subjects(deleted=False, deleted_only=False)) == [SUBJECT]
    assert run(default.subjects(deleted=False, deleted_only=False)) == [SUBJECT]
    refused = _refused(default.register("acme:orders-value", ORDER))
    assert refused.error_code == INVALID_SUBJECT and refused.status == 422
    assert "acme" in refused.message
    assert _refused(acme.register("", ORDER)).error_code == INVALID_SUBJECT


def test_broker_validation_of_an_org_s_topic_finds_the_org_s_subject(
    store: SqlMetadataStore,
) -> None:
    registry, acme, globex = _orgs(store)
    acme_id = run(acme.register(SUBJECT, ORDER)).schema_id
    globex_id = run(globex.register(SUBJECT, ITEM)).schema_id
    schemas = RecordSchemas(registry, VirtualClock())

    def framed(schema_id: int) -> Record:
        value = b"\x00" + struct.pack(">i", schema_id) + b"\x02"
        return Record(offset_delta=0, timestamp_delta=0, key=None, value=value, headers=())

    records = [framed(acme_id), framed(globex_id)]
    refused = run(schemas.refusals("acme:orders", records, keys=False, values=True))
    assert [index for index, _ in refused] == [1]
    assert f"subject '{SUBJECT}'" in refused[0][1]  # named as the org knows it
