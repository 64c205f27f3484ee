"""The registry service's rules over every metadata store: ids, versions, deletes, modes, configs,
compatibility levels, racing agents, and the produce path's validation."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from streamhouse.engine.schema_registry import (
    INCOMPATIBLE_SCHEMA,
    OPERATION_NOT_PERMITTED,
    REFERENCE_EXISTS,
    SUBJECT_LEVEL_COMPATIBILITY_NOT_CONFIGURED,
    SUBJECT_NOT_FOUND,
    SUBJECT_NOT_SOFT_DELETED,
    SUBJECT_SOFT_DELETED,
    VERSION_NOT_FOUND,
    VERSION_NOT_SOFT_DELETED,
    VERSION_SOFT_DELETED,
    RegistryError,
    SchemaRegistry,
    SchemaRequest,
)
from streamhouse.engine.schema_validation import RecordSchemas
from streamhouse.io.sql.store import SqlMetadataStore
from streamhouse.kafka.records import Record
from streamhouse.ports.schemas import GLOBAL, SchemaReference
from tests.unit.metadata.builders import run

T = TypeVar("T")


def _record(name: str, *fields: tuple[str, Any]) -> SchemaRequest:
    listed = []
    for field_name, default in fields:
        field: dict[str, Any] = {"name": field_name, "type": "string"}
        if default is not None:
            field["default"] = default
        listed.append(field)
    return SchemaRequest(json.dumps({"type": "record", "name": name, "fields": listed}))


V1 = _record("User", ("name", None))
V2 = _record("User", ("name", None), ("email", ""))
BREAKING = _record("User", ("name", None), ("country", None))


def _refused(call: Awaitable[T]) -> int:
    with pytest.raises(RegistryError) as refused:
        run(call)
    return refused.value.error_code


def test_one_content_has_one_id_in_every_subject(store: SqlMetadataStore) -> None:
    registry = SchemaRegistry(store)
    first = run(registry.register("a-value", V1))
    assert (first.version, first.schema_id) == (1, 1)
    assert run(registry.register("a-value", V1)) == first  # idempotent
    spaced = SchemaRequest(json.dumps(json.loads(V1.schema), indent=3))
    other = run(registry.register("b-value", spaced))
    assert (other.version, other.schema_id) == (1, first.schema_id)
    second = run(registry.register("a-value", V2))
    assert (second.version, second.schema_id) == (2, 2)
    found = run(registry.lookup("a-value", spaced))
    assert (found.version, found.schema_id) == (1, 1)
    assert run(registry.versions("a-value", deleted=False, deleted_only=False)) == [1, 2]
    assert run(registry.subjects(deleted=False, deleted_only=False)) == ["a-value", "b-value"]


def test_versions_keep_counting_past_soft_deletes_and_restart_after_permanent_ones(
    store: SqlMetadataStore,
) -> None:
    registry = SchemaRegistry(store)
    run(registry.register("s", V1))
    assert run(registry.delete_version("s", "1", permanent=False)) == 1
    assert _refused(registry.delete_version("s", "1", permanent=False)) == VERSION_SOFT_DELETED
    assert _refused(registry.delete_version("s", "9", permanent=False)) == VERSION_NOT_FOUND
    again = run(registry.register("s", V1))  # the soft-deleted version keeps its number
    assert (again.version, again.schema_id) == (2, 1)
    assert _refused(registry.delete_version("s", "2", permanent=True)) == VERSION_NOT_SOFT_DELETED
    assert run(registry.delete_subject("s", permanent=False)) == [2]
    assert _refused(registry.delete_subject("s", permanent=False)) == SUBJECT_SOFT_DELETED
    assert run(registry.versions("s", deleted=True, deleted_only=False)) == [1, 2]
    assert run(registry.delete_subject("s", permanent=True)) == [1, 2]
    assert _refused(registry.versions("s", deleted=True, deleted_only=False)) == SUBJECT_NOT_FOUND
    reborn = run(registry.register("s", V1))
    assert (reborn.version, reborn.schema_id) == (1, 1)  # the id comes back with the content
    assert run(registry.schema_by_id(1)).content.text == reborn.content.text


def test_a_permanent_delete_needs_a_soft_one_first(store: SqlMetadataStore) -> None:
    registry = SchemaRegistry(store)
    run(registry.register("s", V1))
    assert _refused(registry.delete_subject("s", permanent=True)) == SUBJECT_NOT_SOFT_DELETED
    run(registry.delete_version("s", "latest", permanent=False))
    assert _refused(registry.version("s", "1", deleted=False)) == SUBJECT_NOT_FOUND
    assert run(registry.version("s", "1", deleted=True)).deleted
    assert _refused(registry.delete_version("s", "1", permanent=False)) == VERSION_SOFT_DELETED
    assert run(registry.delete_version("s", "1", permanent=True)) == 1
    assert _refused(registry.delete_version("s", "1", permanent=False)) == SUBJECT_NOT_FOUND


def test_a_referenced_version_cannot_be_deleted(store: SqlMetadataStore) -> None:
    registry = SchemaRegistry(store)
    run(registry.register("address", _record("Address", ("street", None))))
    referring = SchemaRequest(
        json.dumps(
            {"type": "record", "name": "Customer", "fields": [{"name": "home", "type": "Address"}]}
        ),
        references=(SchemaReference("Address", "address", 1),),
    )
    customer = run(registry.register("customer", referring))
    assert run(registry.referenced_by("address", "1")) == [customer.schema_id]
    assert _refused(registry.delete_subject("address", permanent=False)) == REFERENCE_EXISTS
    missing = SchemaRequest(referring.schema, references=(SchemaReference("Address", "nope", 1),))
    assert _refused(registry.register("customer", missing)) == 42201


def test_levels_and_the_version_a_check_looks_at(store: SqlMetadataStore) -> None:
    registry = SchemaRegistry(store)
    run(registry.register("s", V1))
    assert _refused(registry.register("s", BREAKING)) == INCOMPATIBLE_SCHEMA
    assert registry.stats.compatibility_refusals == 1
    verdict = run(registry.check("s", None, BREAKING))
    assert not verdict.is_compatible and verdict.messages
    assert all("version 1" in message for message in verdict.messages), verdict.messages
    assert run(registry.check("s", None, V2)).is_compatible
    assert run(registry.set_config("s", {"compatibility": "none"})) == {"compatibility": "NONE"}
    assert run(registry.config("s")) == {"compatibilityLevel": "NONE"}
    run(registry.register("s", BREAKING))
    assert run(registry.delete_config("s")) == {"compatibilityLevel": "NONE"}
    code = _refused(registry.config("s"))
    assert code == SUBJECT_LEVEL_COMPATIBILITY_NOT_CONFIGURED
    assert run(registry.config("s", default_to_global=True)) == {"compatibilityLevel": "BACKWARD"}
    run(registry.set_config(GLOBAL, {"compatibility": "FORWARD"}))
    assert run(registry.config(GLOBAL)) == {"compatibilityLevel": "FORWARD"}
    assert _refused(registry.set_config(GLOBAL, {"compatibility": "sideways"})) == 42203


def test_modes_guard_writes_and_import_names_ids(store: SqlMetadataStore) -> None:
    registry = SchemaRegistry(store)
    imported = SchemaRequest(V1.schema, schema_id=42, version=7)
    assert _refused(registry.register("s", imported)) == OPERATION_NOT_PERMITTED
    assert run(registry.set_mode(GLOBAL, "import")) == "IMPORT"
    placed = run(registry.register("s", imported))
    assert (placed.schema_id, placed.version) == (42, 7)
    assert run(registry.register("t", V2)).schema_id == 43  # ids continue past imported ones
    run(registry.set_mode(GLOBAL, "READWRITE"))
    assert _refused(registry.set_mode(GLOBAL, "IMPORT")) == OPERATION_NOT_PERMITTED
    run(registry.set_mode(GLOBAL, "IMPORT", force=True))
    run(registry.set_mode(GLOBAL, "READWRITE"))
    run(registry.set_mode("s", "READONLY"))
    assert _refused(registry.register("s", V2)) == OPERATION_NOT_PERMITTED
    assert _refused(registry.delete_subject("s", permanent=False)) == OPERATION_NOT_PERMITTED
    assert run(registry.delete_mode("s")) == "READONLY"
    assert _refused(registry.set_mode("s", "sometimes")) == 42204


def test_agents_registering_at_once_agree_on_ids_and_versions(store: SqlMetadataStore) -> None:
    registries = [SchemaRegistry(store) for _ in range(4)]
    requests = [_record("User", ("name", None), (f"f{i}", "")) for i in range(4)]

    async def everyone() -> list[Any]:
        calls = [r.register("race", req) for r, req in zip(registries, requests, strict=True)]
        calls += [r.register(f"own-{i}", requests[0]) for i, r in enumerate(registries)]
        return await asyncio.gather(*calls)

    added = run(everyone())
    assert sorted(a.version for a in added[:4]) == [1, 2, 3, 4]
    assert len({a.schema_id for a in added[:4]}) == 4
    assert {a.schema_id for a in added[4:]} == {added[0].schema_id}


def test_validation_refuses_unframed_and_unregistered_records(store: SqlMetadataStore) -> None:
    class Clock:
        def monotonic_ms(self) -> int:
            return 0

    registry = SchemaRegistry(store)
    good_id = run(registry.register("t-value", V1)).schema_id
    other_id = run(registry.register("u-value", SchemaRequest('"string"'))).schema_id
    schemas = RecordSchemas(registry, Clock())  # type: ignore[arg-type]

    def value(data: bytes | None) -> Record:
        return Record(offset_delta=0, timestamp_delta=0, key=None, value=data, headers=())

    framed = b"\x00" + struct.pack(">i", good_id) + b"\x06ada"
    records = [
        value(framed),
        value(b"plain"),
        value(None),
        value(b"\x00" + struct.pack(">i", other_id)),
    ]
    refused = run(schemas.refusals("t", records, keys=False, values=True))
    assert [index for index, _ in refused] == [1, 3]
    assert "no schema id" in refused[0][1] and f"schema id {other_id}" in refused[1][1]
    assert run(schemas.refusals("t", records, keys=True, values=False)) == []
    assert registry.stats.validation_refusals == 2
